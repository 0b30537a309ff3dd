"""Tables of the interrupted WRN-28-10 GPU study (issue #10, item 5) from its finished units' records.

The study (configs/experiments/gpu/wrn28-10-cifar10-ce-study.toml, run by bench/gpu_wrn_study.sh on an H200)
stopped in the shift sweep when this project's GPU time ran out, so its report unit never ran. Every number
here is one of decal's own records (units/<id>/eval.json and ood.json, the same tidy records that go to a
run's metrics.csv); this script only groups them: mean ± standard error (ddof = 1, / sqrt(n)) over seeds.

    python3 make_tables.py <study run dir> [CSV]   (standard library only; prints the README's table)
Also writes metrics.csv (every record of the finished eval and ood units) beside this script, or to CSV.
"""
import csv, glob, json, math, os, statistics, sys
from collections import defaultdict

run = sys.argv[1]
records = []
for kind in ("eval", "ood"):
    for path in sorted(glob.glob(os.path.join(run, "units", "*", f"{kind}.json"))):
        doc = json.load(open(path))
        records += doc["records"] + doc.get("records_paper", [])
here = os.path.dirname(os.path.abspath(__file__))
cols = ["run", "method", "seed", "dataset", "split", "corruption", "severity", "metric", "value", "definition"]
with open(sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "metrics.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in sorted(records, key=lambda r: (r["method"], str(r["seed"]), r["dataset"], r["split"], r["metric"])):
        w.writerow(r)

cells = defaultdict(list)  # (method, column) -> values over seeds
for r in records:
    key = None
    if r["split"] == "test" and r["metric"] in ("accuracy", "ece", "ece_paper", "mce", "nll", "brier"):
        key = r["metric"]
    elif r["split"] == "ood" and r["metric"] in ("auroc", "fpr95") and "score: maximum softmax" in r["definition"]:
        key = f'{r["metric"]} {r["dataset"]}'
    if key and r["value"] is not None:
        cells[(r["method"], key)].append(float(r["value"]))

columns = [("accuracy", "Acc (%)", 100), ("ece", "ECE (%)", 100), ("ece_paper", "ECE paper (%)", 100),
           ("mce", "MCE (%)", 100), ("nll", "NLL", 1), ("brier", "Brier", 1),
           ("auroc tinyimagenet", "AUROC Tiny ImageNet", 1), ("auroc mnist", "AUROC MNIST", 1),
           ("fpr95 tinyimagenet", "FPR95 Tiny ImageNet", 1), ("fpr95 mnist", "FPR95 MNIST", 1)]
order = ["Baseline", "TS", "TS (seed LBFGS)", "VS", "Isotonic", "TST", "TS + TST", "V-TST m=1", "TS + V-TST m=1",
         "V-TST m=10", "TS + V-TST m=10"]
methods = sorted({m for m, _ in cells}, key=lambda m: (order.index(m) if m in order else 99, m))

def fmt(vals, scale):
    digits = 2 if scale == 100 else 4
    if len(vals) == 1:
        return f"{vals[0] * scale:.{digits}f}"
    mean = statistics.fmean(vals)
    se = statistics.stdev(vals) / math.sqrt(len(vals))
    return f"{mean * scale:.{digits}f} ± {se * scale:.{digits}f}"

print("| Method | n | " + " | ".join(c[1] for c in columns) + " |")
print("|:---|---:|" + "---:|" * len(columns))
for m in methods:
    n = max(len(cells[(m, c[0])]) for c in columns)
    print(f"| {m} | {n} | " + " | ".join(fmt(cells[(m, c[0])], c[2]) if cells[(m, c[0])] else "–" for c in columns) + " |")
