"""Tables of the interrupted WRN-28-10 GPU study (issue #10, item 5) from its finished units' records.

The study (configs/experiments/gpu/wrn28-10-cifar10-ce-study.toml, run by bench/gpu_wrn_study.sh on an H200)
stopped in the shift sweep when this project's GPU time ran out, so its report unit never ran. Every number
here is one of decal's own records (units/<id>/eval.json and ood.json, the same tidy records that go to a
run's metrics.csv); this script only collects them and groups them with ../study_tables.py:
mean ± standard error (ddof = 1, / sqrt(n)) over seeds.

    python3 make_tables.py <study run dir> [CSV]   (standard library only; prints the README's table)
Also writes metrics.csv (every record of the finished eval and ood units) beside this script, or to CSV.
"""
import csv, glob, json, os, runpy, sys

run = sys.argv[1]
records = []
for kind in ("eval", "ood"):
    for path in sorted(glob.glob(os.path.join(run, "units", "*", f"{kind}.json"))):
        doc = json.load(open(path))
        records += doc["records"] + doc.get("records_paper", [])
here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "metrics.csv")
cols = ["run", "method", "seed", "dataset", "split", "corruption", "severity", "metric", "value", "definition"]
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in sorted(records, key=lambda r: (r["method"], str(r["seed"]), r["dataset"], r["split"], r["metric"])):
        w.writerow(r)

# The table itself: the same grouping as a finished study's metrics.csv gets (docs/results/study_tables.py).
sys.argv = [os.path.join(here, "..", "study_tables.py"), out]
runpy.run_path(sys.argv[0], run_name="__main__")
