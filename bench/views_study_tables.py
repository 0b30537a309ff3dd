"""Tables of the views study (bench/views_study.sh, docs/stage2-views.md) from the runs' own metrics.csv.

    python3 bench/views_study_tables.py runs/views-study        (standard library only)

For each backbone, head and stage-2 mode: test accuracy, ECE (default profile: 15 equal-width bins) and NLL,
mean ± sample standard deviation (ddof = 1) over the seeds, n = the seeds found; and whether the mode's mean
lies within the exact mode's mean ± 2 sample sd (the study's criterion, "yes"/"no" per column). Also checks
that every mode of one backbone evaluated the same Baseline (the same backbone, test images and profile).
"""
import csv
import statistics
import os
import sys
from collections import defaultdict

root = sys.argv[1]
BACKBONES = [("seed-cnn", "seed CNN (imported)"), ("cnn", "CNN trained here (5,000 images)")]
MODES = [("exact", "exact"), ("a1", "A = 1"), ("a4", "A = 4"), ("a10", "A = 10"), ("a40", "A = 40"),
         ("unaugmented", "un-augmented")]
METHODS = ["TST", "V-TST m=1", "V-TST m=10"]
METRICS = [("accuracy", "Acc (%)", 100, 2), ("ece", "ECE (%)", 100, 2), ("nll", "NLL", 1, 4)]


def stats(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


missing = []
for key, label in BACKBONES:
    cells = {}
    baselines = {}
    for mode, _ in MODES:
        path = os.path.join(root, f"{key}-{mode}", "metrics.csv")
        if not os.path.exists(path):
            missing.append(path)
            continue
        by = defaultdict(list)
        for r in csv.DictReader(open(path)):
            if r["split"] != "test" or r["metric"] not in {m for m, *_ in METRICS}:
                continue
            if r["method"] == "Baseline":
                baselines.setdefault(r["metric"], set()).add(r["value"])
            elif r["method"] in METHODS:
                by[(r["method"], r["metric"])].append(float(r["value"]))
        cells[mode] = by
    if not cells:
        continue
    same = all(len(v) == 1 for v in baselines.values())
    base = {m: float(next(iter(v))) for m, v in baselines.items()}
    print(f"### {label}\n")
    print("Baseline (the backbone itself): " + ", ".join(
        f"{name} {base[m] * scale:.{d}f}" for m, name, scale, d in METRICS if m in base)
        + ("" if same else "  **(the modes disagree on the Baseline: not comparable)**") + "\n")
    print("| method | stage-2 features | n | Acc (%) | ECE (%) | NLL | within exact ± 2 sd (acc / ECE / NLL) |")
    print("|---|---|---|---|---|---|---|")
    for method in METHODS:
        exact = cells.get("exact", {})
        for mode, mode_label in MODES:
            by = cells.get(mode)
            if by is None or not by.get((method, "accuracy")):
                continue
            cols, verdicts = [], []
            n = len(by[(method, "accuracy")])
            for m, _, scale, d in METRICS:
                mean, sd = stats(by[(method, m)])
                cols.append(f"{mean * scale:.{d}f} ± {sd * scale:.{d}f}")
                ref = exact.get((method, m))
                if mode != "exact" and ref and len(ref) > 1:
                    em, es = stats(ref)
                    verdicts.append("yes" if abs(mean - em) <= 2 * es else "no")
            verdict = " / ".join(verdicts) if verdicts else "–"
            print(f"| {method} | {mode_label} | {n} | " + " | ".join(cols) + f" | {verdict} |")
    print()
if missing:
    print("missing runs: " + ", ".join(missing))
