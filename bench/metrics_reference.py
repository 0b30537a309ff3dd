"""numpy reference for bench/metrics.sh: the paper-profile metrics of decal metrics, vectorised over the whole
arrays (float32 softmax as torch does it, torchmetrics binning with float32 torch.linspace edges, sklearn-1.1.3
clipped NLL, Brier/K). Usage: metrics_reference.py LOGITS.npy LABELS.npy OUT.json
"""
import json
import sys

import numpy as np

z = np.load(sys.argv[1])  # float32 [N, K]
y = np.load(sys.argv[2])
n, k = z.shape
m = z.max(axis=1, keepdims=True)
e = np.exp(z - m)  # float32
p = e / e.sum(axis=1, keepdims=True, dtype=np.float32)
del e
pred = p.argmax(axis=1)
conf = p[np.arange(n), pred].astype(np.float64)
correct = (pred == y).astype(np.float64)
M = 10
step = np.float32(1.0) / np.float32(M)
edges = np.array([np.float32(np.float64(step) * i) if i < (M + 1) // 2 else np.float32(1.0 - np.float64(step) * (M - i)) for i in range(M + 1)], dtype=np.float64)
idx = np.searchsorted(edges, conf, side="right") - 1  # [lo, hi) plus an extra bin for conf == 1.0
cnt = np.bincount(idx, minlength=M + 1).astype(np.float64)
sc = np.bincount(idx, weights=conf, minlength=M + 1)
sa = np.bincount(idx, weights=correct, minlength=M + 1)
nz = cnt > 0
gap = np.abs(sa[nz] / cnt[nz] - sc[nz] / cnt[nz])
ece = float(np.sum(cnt[nz] / n * gap))
mce = float(gap.max())
pc = np.clip(p.astype(np.float64), 1e-15, 1 - 1e-15)
pc /= pc.sum(axis=1, keepdims=True)
nll = float(-np.mean(np.log(pc[np.arange(n), y])))
del pc
onehot_p = p.astype(np.float64)
onehot_p[np.arange(n), y] -= 1.0
brier_div_k = float(np.mean(onehot_p ** 2))
json.dump({"accuracy": float(correct.mean()), "ece": ece, "mce": mce, "nll": nll, "brier_div_k": brier_div_k}, open(sys.argv[3], "w"))
