"""Markdown tables of a finished study from its tidy metrics.csv (standard library only).

    python3 docs/results/study_tables.py <metrics.csv> [--shift]

Prints (1) the main table in the paper's layout — test accuracy, ECE (default and paper profiles), MCE, NLL,
Brier, and OOD AUROC / FPR95 with the maximum-softmax score per OOD set — and, with --shift, (2) the shift
columns (pooled over all cells of the sweep, the seed's SHIFT aggregation; pooled over the seed's 13 CIFAR-10-C
corruptions; the mean of the per-cell ECEs) and (3) ECE per severity (mean over corruptions). Every cell is
the mean ± standard error (sample sd / sqrt(n)) over the stage-2 seeds, or the single value of a
single-seed row; n is the number of seeds. Numbers are decal's own records; this script only groups them.
"""
import csv, math, statistics, sys
from collections import defaultdict

path = sys.argv[1]
shift = "--shift" in sys.argv[2:]
rows = list(csv.DictReader(open(path)))

cells = defaultdict(list)  # (method, column) -> values over seeds
for r in rows:
    if r["value"] in ("", "null", "None"):
        continue
    split, metric, corr, sev = r["split"], r["metric"], r["corruption"], r["severity"]
    key = None
    if split == "test" and metric in ("accuracy", "ece", "ece_paper", "mce", "nll", "brier"):
        key = metric
    elif split == "ood" and metric in ("auroc", "fpr95") and "score: maximum softmax" in r["definition"]:
        key = f"{metric} {r['dataset']}"
    elif split == "shift" and not corr and not sev and metric in (
            "accuracy", "ece", "nll", "accuracy_seed13", "ece_seed13", "mean_cell_ece"):
        key = f"shift {metric}"
    elif split == "shift" and not corr and sev and metric in ("ece", "accuracy"):
        key = f"shift {metric} s{sev}"
    if key:
        cells[(r["method"], key)].append(float(r["value"]))

order = ["Baseline", "TS", "TS (seed LBFGS)", "VS", "Isotonic", "TST", "TS + TST", "TS (seed LBFGS) + TST", "V-TST m=1",
         "TS + V-TST m=1", "TS (seed LBFGS) + V-TST m=1",
         "V-TST m=10", "TS + V-TST m=10"]
methods = sorted({m for m, _ in cells}, key=lambda m: (order.index(m) if m in order else 99, m))


def fmt(vals, scale):
    digits = 2 if scale == 100 else 4
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0] * scale:.{digits}f}"
    se = statistics.stdev(vals) / math.sqrt(len(vals))
    return f"{statistics.fmean(vals) * scale:.{digits}f} ± {se * scale:.{digits}f}"


def table(columns):
    if not columns or not any(cells[(m, c[0])] for m in methods for c in columns):
        return
    print("| Method | n | " + " | ".join(c[1] for c in columns) + " |")
    print("|:---|---:|" + "---:|" * len(columns))
    for m in methods:
        n = max(len(cells[(m, c[0])]) for c in columns)
        if n:
            print(f"| {m} | {n} | " + " | ".join(fmt(cells[(m, c[0])], c[2]) for c in columns) + " |")
    print()


# Each OOD set (the pooled score over all sets is in metrics.csv, not in the table).
ood_sets = sorted({k.split(" ", 1)[1] for _, k in cells if k.startswith("auroc ")} - {"pooled"},
                  key=lambda d: (d != "tinyimagenet", d))
names = {"tinyimagenet": "Tiny ImageNet", "mnist": "MNIST"}
table([("accuracy", "Acc (%)", 100), ("ece", "ECE (%)", 100), ("ece_paper", "ECE paper (%)", 100),
       ("mce", "MCE (%)", 100), ("nll", "NLL", 1), ("brier", "Brier", 1)]
      + [(f"auroc {d}", f"AUROC {names.get(d, d)}", 1) for d in ood_sets]
      + [(f"fpr95 {d}", f"FPR95 {names.get(d, d)}", 1) for d in ood_sets])
if shift:
    table([("shift accuracy", "SHIFT acc (%)", 100), ("shift ece", "SHIFT ECE (%)", 100),
           ("shift nll", "SHIFT NLL", 1), ("shift accuracy_seed13", "acc, seed's 13 (%)", 100),
           ("shift ece_seed13", "ECE, seed's 13 (%)", 100), ("shift mean_cell_ece", "mean cell ECE (%)", 100)])
    sevs = sorted({k.rsplit(" s", 1)[1] for _, k in cells if k.startswith("shift ece s")}, key=int)
    table([(f"shift ece s{s}", f"ECE sev {s} (%)", 100) for s in sevs])
