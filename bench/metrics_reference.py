"""References for bench/metrics.sh: the same headline metrics as `decal metrics --profile paper`, computed by

  numpy-chunked  a ~15-line chunked numpy script: memory-mapped .npy, float64 softmax per chunk of 1M rows,
                 bincount over the 10 torchmetrics bins (float32 edges, extra bin for confidence == 1.0),
                 exact NLL from logits; flat memory. The fair "what a user would write" baseline.
  torchmetrics   torch 2.11 float32 softmax on the whole array + torchmetrics 1.1.2
                 MulticlassCalibrationError / MulticlassAccuracy (what the seed runs), sklearn-style clipped NLL
                 and Brier/K in torch; whole arrays in memory.

Usage: metrics_reference.py MODE LOGITS.npy LABELS.npy OUT.json
Writes {"accuracy", "ece", "mce", "nll", "nll_kind", "brier_div_k"} (fractions; nll in nats).
"""
import json
import sys

import numpy as np


def numpy_chunked(logits, labels):
    z_all = np.load(logits, mmap_mode="r")
    y_all = np.load(labels, mmap_mode="r")
    n, k = z_all.shape
    edges = np.linspace(0, 1, 11, dtype=np.float32).astype(np.float64)  # == torch.linspace float32 for M = 10
    cnt, sconf, sacc = np.zeros(12), np.zeros(12), np.zeros(12)
    nll = brier = hits = 0.0
    for i in range(0, n, 1_000_000):
        z = np.asarray(z_all[i:i + 1_000_000], dtype=np.float64)
        y = np.asarray(y_all[i:i + 1_000_000])
        r = np.arange(len(y))
        m = z.max(1)
        e = np.exp(z - m[:, None])
        s = e.sum(1)
        p = e / s[:, None]
        pred = p.argmax(1)
        conf = p[r, pred]
        correct = (pred == y).astype(np.float64)
        idx = np.searchsorted(edges, conf, side="right") - 1  # [lo, hi) + extra bin for conf == 1.0
        cnt += np.bincount(idx, minlength=12)
        sconf += np.bincount(idx, weights=conf, minlength=12)
        sacc += np.bincount(idx, weights=correct, minlength=12)
        nll += float(np.sum(np.log(s) + m - z[r, y]))
        p[r, y] -= 1.0
        brier += float(np.sum(p * p))
        hits += correct.sum()
    nz = cnt > 0
    gap = np.abs(sacc[nz] / cnt[nz] - sconf[nz] / cnt[nz])
    return {"accuracy": hits / n, "ece": float(np.sum(cnt[nz] / n * gap)), "mce": float(gap.max()),
            "nll": nll / n, "nll_kind": "exact (float64 log-softmax)", "brier_div_k": brier / n / k}


def torchmetrics_ref(logits, labels):
    import torch
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

    z = torch.from_numpy(np.load(logits))
    y = torch.from_numpy(np.load(labels))
    k = z.shape[1]
    p = torch.softmax(z, dim=1)  # float32, as the seed
    ece = multiclass_calibration_error(p, y, num_classes=k, n_bins=10, norm="l1")
    mce = multiclass_calibration_error(p, y, num_classes=k, n_bins=10, norm="max")
    acc = multiclass_accuracy(p, y, num_classes=k, average="micro")
    pc = p.double().clamp(1e-15, 1 - 1e-15)
    pc /= pc.sum(1, keepdim=True)
    nll = -pc.gather(1, y[:, None]).log().mean()
    del pc
    onehot = torch.nn.functional.one_hot(y, k).to(p.dtype)
    brier_div_k = ((p.double() - onehot) ** 2).mean()
    return {"accuracy": float(acc), "ece": float(ece), "mce": float(mce), "nll": float(nll),
            "nll_kind": "sklearn-clipped (float32 softmax)", "brier_div_k": float(brier_div_k)}


if __name__ == "__main__":
    mode, logits, labels, out = sys.argv[1:5]
    result = {"numpy-chunked": numpy_chunked, "torchmetrics": torchmetrics_ref}[mode](logits, labels)
    json.dump(result, open(out, "w"))
