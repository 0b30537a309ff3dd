"""Seed-by-seed differences between two `decal run`s of the same config but one setting (a shortcut
against the faithful computation), from their metrics.csv.

    python3 bench/paired_diff.py <run A> <run B> [method ...]      (standard library only)

For every method (default: TST, V-TST m=1, V-TST m=10) and test metric (accuracy, ECE and NLL of the
default profile): n paired seeds, the mean and the largest |B - A| over the seeds, and run A's seed-to-seed
sample sd (ddof = 1) for scale. Prints a Markdown table.
"""
import csv
import statistics
import os
import sys
from collections import defaultdict


def load(run):
    out = {}
    for r in csv.DictReader(open(os.path.join(run, "metrics.csv"))):
        if r["split"] == "test" and r["seed"] != "" and r["metric"] in ("accuracy", "ece", "nll"):
            out[(r["method"], r["metric"], r["seed"])] = float(r["value"])
    return out


a, b = load(sys.argv[1]), load(sys.argv[2])
methods = sys.argv[3:] or ["TST", "V-TST m=1", "V-TST m=10"]
diffs, base = defaultdict(list), defaultdict(list)
for (method, metric, seed), va in a.items():
    if (method, metric, seed) in b:
        diffs[(method, metric)].append(b[(method, metric, seed)] - va)
        base[(method, metric)].append(va)
print("| method | metric | n | mean B − A | max abs(B − A) | A's seed sd |")
print("|---|---|---|---|---|---|")
for method in methods:
    for metric, scale in (("accuracy", 100), ("ece", 100), ("nll", 1)):
        d, v = diffs.get((method, metric)), base.get((method, metric))
        if not d:
            continue
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        unit = " (pp)" if scale == 100 else ""
        print(f"| {method} | {metric}{unit} | {len(d)} | {sum(d) / len(d) * scale:+.4f} | "
              f"{max(map(abs, d)) * scale:.4f} | {sd * scale:.4f} |")
