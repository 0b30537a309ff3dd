"""Reference values for decal-report's seed aggregation (mean, sample std with ddof=1, SE = std/sqrt(n)).

Run with any Python that has numpy:  python make_golden.py > aggregation.json
The values are what numpy computes; decal-report's tests compare against them (relative 1e-12).
"""
import json

import numpy as np

cases = {
    # Five TST-like accuracies (fractions).
    "tst_accuracy": [0.9254, 0.9256, 0.9255, 0.9253, 0.9257],
    # Two values: the smallest n with a spread.
    "two": [0.0334, 0.0338],
    # Identical values: std must be exactly 0.
    "constant": [0.25, 0.25, 0.25],
    # A large offset with small noise: a one-pass sum of squares would lose digits here.
    "offset": [1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.3, 1e9 + 0.4],
    # Ten ECE values with a wide spread, as in the seed's MCE columns.
    "ten": [0.2468, 0.1900, 0.3101, 0.2250, 0.2999, 0.1720, 0.2805, 0.2601, 0.2333, 0.2500],
}
out = {}
for name, values in cases.items():
    v = np.asarray(values, dtype=np.float64)
    std = float(np.std(v, ddof=1))
    out[name] = {
        "values": values,
        "mean": float(np.mean(v)),
        "std": std,
        "se": std / float(np.sqrt(len(v))),
    }
print(json.dumps(out, indent=2))
