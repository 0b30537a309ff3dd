"""Exact-mode stage 2 against the study's augmented views, from the two runs' tidy metrics.csv (standard
library only).

    python3 docs/results/exact_vs_views.py <study metrics.csv> <exact metrics.csv>

For every head row of the exact run (one stage-2 seed), prints the exact run's value, the views study's value
for the same seed, and the views study's mean ± sample sd over its seeds, for test accuracy, ECE (default and
paper profiles), NLL, Brier and OOD AUROC (maximum softmax score); the last column of each metric is
(exact − views mean) / views sd, the distance in seed-to-seed standard deviations. Numbers are decal's own
records; this script only groups them.
"""
import csv, statistics, sys
from collections import defaultdict


def load(path):
    cells = defaultdict(dict)  # (method, column) -> {seed: value}
    for r in csv.DictReader(open(path)):
        if r["value"] in ("", "null", "None") or not r["seed"]:
            continue
        split, metric = r["split"], r["metric"]
        key = None
        if split == "test" and metric in ("accuracy", "ece", "ece_paper", "nll", "brier"):
            key = metric
        elif split == "ood" and metric == "auroc" and "score: maximum softmax" in r["definition"]:
            key = f"auroc {r['dataset']}"
        if key:
            cells[(r["method"], key)][int(r["seed"])] = float(r["value"])
    return cells


views, exact = load(sys.argv[1]), load(sys.argv[2])
columns = ["accuracy", "ece", "ece_paper", "nll", "brier", "auroc tinyimagenet", "auroc mnist"]
label = {"accuracy": "Acc (%)", "ece": "ECE (%)", "ece_paper": "ECE paper (%)", "nll": "NLL", "brier": "Brier",
         "auroc tinyimagenet": "AUROC Tiny ImageNet", "auroc mnist": "AUROC MNIST"}
pct = {"accuracy", "ece", "ece_paper"}
order = ["TST", "TS + TST", "V-TST m=1", "TS + V-TST m=1", "V-TST m=10", "TS + V-TST m=10"]
methods = sorted({m for m, _ in exact}, key=lambda m: (order.index(m) if m in order else 99, m))


def fmt(v, c):
    return f"{100 * v:.2f}" if c in pct else f"{v:.4f}"


print("| Method | seed | " + " | ".join(f"{label[c]} exact / views / views mean ± sd (n) / Δ in sd" for c in columns) + " |")
print("|:---|---:|" + "---:|" * len(columns))
for m in methods:
    for seed in sorted(exact[(m, "accuracy")]):
        cells = []
        for c in columns:
            e = exact.get((m, c), {}).get(seed)
            v = views.get((m, c), {})
            if e is None or not v:
                cells.append("–")
                continue
            vals = list(v.values())
            mean, sd = statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else float("nan"))
            same = fmt(v[seed], c) if seed in v else "–"
            scale = 100 if c in pct else 1
            d = (e - mean) / sd if sd > 0 else float("nan")
            cells.append(f"{fmt(e, c)} / {same} / {scale * mean:.{2 if c in pct else 4}f} ± {scale * sd:.{2 if c in pct else 4}f} ({len(vals)}) / {d:+.1f}")
        print(f"| {m} | {seed} | " + " | ".join(cells) + " |")
