#!/usr/bin/env bash
# Throughput and peak memory of `decal metrics` on 10 million predictions x 10 classes, against two references
# computing the same paper-profile quantities on the same file in the same run (so the ratios are quotable):
#
#   bench/metrics.sh [rows] [classes] [repeats]      (defaults: 10000000 10 3)
#
# Generates float32 logits and int64 labels into $TMPDIR (default /tmp; ~400 MB for the defaults), then, for
# each repeat, runs under /usr/bin/time -v (the file sits in the page cache after the first read):
#   decal         decal metrics --profile paper --no-ece-em   (memory-mapped, all cores, memory flat in N)
#   numpy         bench/metrics_reference.py numpy-chunked    (memory-mapped, chunks of 1M rows, float64 softmax,
#                                                              bincount bins: what a user would write)
#   torchmetrics  bench/metrics_reference.py torchmetrics     (float32 softmax + torchmetrics 1.1.2, whole arrays)
# and prints rows/s and peak RSS per run, best and median over the repeats, the ratios decal / numpy and
# decal / torchmetrics, the load average before and after, and how far the references' numbers are from
# decal's. Also one `decal metrics --profile default` run (equal-mass ECE keeps one confidence per row).
# Runs at normal priority (no nice). On a shared machine the absolute rows/s mostly measure the other
# processes; the same-run ratios are what to compare.
#
# Python: the torch venv that scripts/env.sh installs (numpy, torch); torchmetrics 1.1.2 is pip-installed once
# into a bench-only target directory ($DECAL_CACHE/bench-tm-1.1.2) and put on PYTHONPATH. Not run by tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
classes="${2:-10}"
repeats="${3:-3}"
tmp="${TMPDIR:-/tmp}/decal-bench-metrics"
mkdir -p "$tmp"
. scripts/env.sh
PY="${DECAL_PYTHON:-$(dirname "$(command -v python)")/python}"
TM_DIR="${DECAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/decal}/bench-tm-1.1.2"
if ! PYTHONPATH="$TM_DIR" "$PY" -c 'import torchmetrics' 2>/dev/null; then
  echo "bench: installing torchmetrics 1.1.2 into $TM_DIR (bench only)" >&2
  "$PY" -m pip install --quiet --target "$TM_DIR" torchmetrics==1.1.2 lightning-utilities==0.9.0 packaging --no-deps
fi
scripts/cargo build --release -q -p decal-cli
bin=target/release/decal
"$PY" - "$tmp" "$rows" "$classes" <<'PYEOF'
import sys, os, numpy as np
d, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = f"{d}/logits_{n}x{k}.npy"
if not os.path.exists(path):
    rng = np.random.default_rng(0)
    z = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
    y = np.empty(n, dtype=np.int64)
    step = 1_000_000
    for i in range(0, n, step):
        m = min(step, n - i)
        block = rng.standard_normal((m, k), dtype=np.float32) * 3.0
        block[::4] *= 8.0  # over-confident rows: many float32 confidences of exactly 1.0
        z[i:i + m] = block
        noisy = rng.random(m) < 0.2
        y[i:i + m] = np.where(noisy, rng.integers(0, k, m), block.argmax(1))
    z.flush()
    np.save(f"{d}/labels_{n}.npy", y)
PYEOF
logits="$tmp/logits_${rows}x${classes}.npy"
labels="$tmp/labels_${rows}.npy"
results="$tmp/runs.tsv"
: > "$results"
# measure NAME CMD...: one run under /usr/bin/time -v; appends "name wall_s rss_kib cpu_s" to runs.tsv.
measure() {
  local name="$1"; shift
  local log="$tmp/$name.time"
  if ! /usr/bin/time -v "$@" > "$tmp/$name.out" 2> "$log"; then
    echo "bench: $name failed:" >&2
    tail -5 "$log" >&2
    exit 1
  fi
  awk -F': ' -v name="$name" '
    /Elapsed \(wall clock\)/ { n = split($2, t, ":"); wall = t[n] + 60 * t[n-1] + (n > 2 ? 3600 * t[n-2] : 0) }
    /Maximum resident set size/ { rss = $2 }
    /User time/ { user = $2 }
    /System time/ { sys = $2 }
    END { printf "%s\t%.3f\t%d\t%.2f\n", name, wall, rss, user + sys }' "$log" >> "$results"
}
cat "$logits" "$labels" > /dev/null  # into the page cache for every contender alike
echo "rows = $rows, classes = $classes, cores = $(nproc), repeats = $repeats, file = $logits ($(du -h "$logits" | cut -f1))"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$repeats"); do
  rm -f "$tmp/decal-paper.json" "$tmp/decal-default.json"  # decal never overwrites a result silently
  measure decal "$bin" metrics --logits "$logits" --labels "$labels" --profile paper --no-ece-em \
    --json "$tmp/decal-paper.json"
  measure numpy "$PY" bench/metrics_reference.py numpy-chunked "$logits" "$labels" "$tmp/numpy.json"
  measure torchmetrics env PYTHONPATH="$TM_DIR" "$PY" bench/metrics_reference.py torchmetrics \
    "$logits" "$labels" "$tmp/torchmetrics.json"
done
measure decal-default "$bin" metrics --logits "$logits" --labels "$labels" --profile default \
  --json "$tmp/decal-default.json"
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$PY" - "$results" "$rows" "$tmp" <<'PYEOF'
import json, statistics, sys
path, rows, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = {}
for line in open(path):
    name, wall, rss, cpu = line.split("\t")
    runs.setdefault(name, []).append((float(wall), int(rss), float(cpu)))
def rate(wall):
    return rows / wall / 1e6
print("| run | rows/s (M), each repeat | best | median | CPU s (best run) | peak RSS |")
print("|---|---|---|---|---|---|")
best, med = {}, {}
for name, rs in runs.items():
    rates = [rate(w) for w, _, _ in rs]
    best[name], med[name] = max(rates), statistics.median(rates)
    b = max(rs, key=lambda r: rate(r[0]))
    rss = max(r[1] for r in rs) / 1024
    print(f"| {name} | {', '.join(f'{x:.2f}' for x in rates)} | {best[name]:.2f} | {med[name]:.2f} | {b[2]:.2f} | {rss:.0f} MiB |")
print()
for ref in ["numpy", "torchmetrics"]:
    if ref in best:
        print(f"decal / {ref}: {best['decal'] / best[ref]:.2f}x (best), {med['decal'] / med[ref]:.2f}x (median)")
print()
a = json.load(open(f"{tmp}/decal-paper.json"))
def val(d, k):
    v = d[k]
    return float("inf") if v == "inf" else float(v)
for ref in ["numpy", "torchmetrics"]:
    b = json.load(open(f"{tmp}/{ref}.json"))
    nll_decal = a["nll"] if b["nll_kind"].startswith("sklearn") else a["alternatives"]["nll_exact"]
    diffs = ", ".join(f"{k} {abs(val(a, k) - b[k]):.1e}" for k in ["accuracy", "ece", "mce", "brier_div_k"])
    print(f"|decal - {ref}|: {diffs}, nll ({b['nll_kind']}) {abs(float(nll_decal) - b['nll']):.1e}")
print("(torchmetrics accumulates its bin sums in float32, so over 10M rows its ECE drifts by ~1e-3; numpy is float64)")
PYEOF
