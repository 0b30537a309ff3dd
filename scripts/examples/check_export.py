"""Loads a head exported by `decal heads` into PyTorch (only torch needed) and compares its test
probabilities with the ones decal wrote, for every seed and the calibrated and uncalibrated rows.

    python scripts/examples/check_export.py runs/heads-seed-cnn-tst runs/seed-cnn-features/test_features.npy \
        [runs/seed-cnn-features/test_labels.npy]

With the labels it also prints each row's accuracy and NLL computed from PyTorch's probabilities next to
decal's (for sampled V-TST rows the two differ only by Monte-Carlo noise: PyTorch draws its own ε).
"""

import ast
import json
import os
import struct
import sys

import torch


def load_npy(path):
    """A float32/int64 C-order .npy as a tensor (enough for the files decal and extract_features.py write)."""
    data = open(path, "rb").read()
    major = data[6]
    (n,), start = (struct.unpack("<H", data[8:10]), 10) if major == 1 else (struct.unpack("<I", data[8:12]), 12)
    header = ast.literal_eval(data[start : start + n].decode("latin1"))
    dtype = {"<f4": torch.float32, "<i8": torch.int64, "<f8": torch.float64}[header["descr"]]
    assert not header["fortran_order"]
    return torch.frombuffer(bytearray(data[start + n :]), dtype=dtype).reshape(header["shape"])


def main(run, features, labels=None):
    sys.path.insert(0, os.path.join(run, "head"))
    from model import load

    info = json.load(open(os.path.join(run, "head", "heads.json")))
    x = load_npy(features)
    y = load_npy(labels) if labels else None
    name = info["head"]["name"]
    for entry in info["seeds"]:
        s = entry["seed"]
        head = load(os.path.join(run, "head", f"seed-{s}", "model.safetensors"))
        rows = {}
        if head.kind == "vtst":
            for m in info["head"]["eval_samples"]:
                rule = "mean" if m == 0 else f"m={m}"
                row = f"{name} mean" if m == 0 else f"{name} m={m}"
                rows[row] = (m, 1.0)
                if rule in head.temperatures:
                    rows[f"TS + {row}"] = (m, head.temperatures[rule])
        else:
            rows[name] = (0, 1.0)
            if head.temperature is not None:
                rows[f"TS + {name}"] = (0, head.temperature)
        for row, (m, t) in rows.items():
            d = "".join(c.lower() if c.isalnum() else "-" for c in row.replace("=", "").replace(".", ""))
            d = "-".join(p for p in d.split("-") if p)
            ref = load_npy(os.path.join(run, "predictions", f"{d}-seed{s}", "test_probs.npy"))
            p = head.predict_proba(x, num_samples=m, seed=s, temperature=t).float()
            how = "exact" if m == 0 else f"{m} samples, torch's own draws: agreement in distribution"
            print(f"seed {s} {row:24s} T={t:.4f}  max |p_torch - p_decal| = {(p - ref).abs().max():.2e}"
                  f"  mean = {(p - ref).abs().mean():.2e}  argmax agreement {(p.argmax(1) == ref.argmax(1)).float().mean():.4f}  ({how})")
            if y is not None:
                stats = lambda q: ((q.argmax(1) == y).float().mean().item(), -torch.log(q.double()[torch.arange(len(y)), y]).mean().item())
                (a_t, n_t), (a_d, n_d) = stats(p), stats(ref)
                print(f"    accuracy torch {a_t:.4f} decal {a_d:.4f}   NLL torch {n_t:.4f} decal {n_d:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
