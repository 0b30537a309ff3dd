"""Golden values for the `paper` profile on float64 probabilities (issue 13, part 6).

torchmetrics 1.1.2 casts confidences to float32 (`confidences.float()`) before bucketizing them on float32
`torch.linspace` edges, and the seed's probabilities are float32 anyway; so a float64 confidence of exactly
0.3 (below the float32 edge 0.3f = 0.30000001192...) lands in bin [0.3, 0.4) there, not in [0.2, 0.3).
The fixture puts float64 confidences on the decimal values whose float32 rounding crosses an edge, with
alternating correctness so that the two binnings give clearly different ECEs.

  PYTHONPATH=<dir with torchmetrics==1.1.2, lightning-utilities==0.9.0, packaging> \
      ~/.cache/decal/torch-2.11.0/bin/python make_golden_rounding.py

writes rounding_probs.npy (float64 [N, 4]), rounding_labels.npy (int64 [N]) and golden_rounding.json.
"""
import json

import numpy as np
import torch
import torchmetrics
from torchmetrics.functional.classification import multiclass_calibration_error

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
assert torchmetrics.__version__ == "1.1.2", torchmetrics.__version__

k = 4
edges32 = torch.linspace(0, 1, 11, dtype=torch.float).double().numpy()
crossing = []
for i in range(3, 100):  # confidences 0.03 .. 0.99 in steps of 0.01 (>= 0.25 keeps them the row maximum)
    c = i / 100
    if c < 0.26:
        continue
    b64 = np.searchsorted(edges32, c, side="right") - 1
    b32 = np.searchsorted(edges32, float(np.float32(c)), side="right") - 1
    if b64 != b32:
        crossing.append(c)
assert crossing, "no float64 decimal confidence crosses a float32 edge"
rows, labels = [], []
rng = np.random.default_rng(13)
for rep in range(3):
    for j, c in enumerate(crossing):
        rest = (1.0 - c) / (k - 1)
        rows.append([c, rest, rest, 1.0 - c - 2 * rest])
        labels.append(0 if (j + rep) % 2 == 0 else 1)  # alternate correct / wrong
# Plus ordinary rows, so the fixture is not only edges.
for _ in range(40):
    p = rng.dirichlet(np.ones(k) * 0.7)
    rows.append(list(p))
    labels.append(int(rng.integers(0, k)))
probs = np.array(rows, dtype=np.float64)
y = np.array(labels, dtype=np.int64)
np.save(f"{HERE}/rounding_probs.npy", probs)
np.save(f"{HERE}/rounding_labels.npy", y)
t = torch.from_numpy(probs)  # float64, as a user's saved probabilities would be
ty = torch.from_numpy(y)
out = {
    "torch": torch.__version__,
    "torchmetrics": torchmetrics.__version__,
    "crossing_confidences": crossing,
    "tm_ece_10": float(multiclass_calibration_error(t, ty, num_classes=k, n_bins=10, norm="l1")),
    "tm_mce_10": float(multiclass_calibration_error(t, ty, num_classes=k, n_bins=10, norm="max")),
    "tm_ece_10_float32_input": float(
        multiclass_calibration_error(t.float(), ty, num_classes=k, n_bins=10, norm="l1")
    ),
}
# The binning without the float32 cast (what decal's paper profile did before): float64 confidences on the
# same float32 edges.
conf = probs.max(1)
correct = (probs.argmax(1) == y).astype(np.float64)
idx = np.searchsorted(edges32, conf, side="right") - 1
ece = 0.0
for b in range(11):
    m = idx == b
    if m.any():
        ece += m.sum() / len(y) * abs(correct[m].mean() - conf[m].mean())
out["ece_10_float64_binning"] = float(ece)
json.dump(out, open(f"{HERE}/golden_rounding.json", "w"), indent=1)
print(json.dumps(out, indent=1))
