#!/usr/bin/env bash
# Throughput and peak memory of `decal metrics` on 10 million predictions x 10 classes, with a numpy reference
# computing the same paper-profile quantities on the same file in the same run (ratios are quotable).
#
#   bench/metrics.sh [rows] [classes]          (defaults: 10000000 10)
#
# Generates float32 logits and int64 labels into $TMPDIR (default /tmp; ~400 MB for the defaults), then runs
#   1. decal metrics --profile paper --no-ece-em   (streaming: memory independent of N)
#   2. decal metrics --profile default             (also equal-mass ECE: keeps one confidence per row)
#   3. bench/metrics_reference.py                  (numpy, whole arrays in memory; paper definitions)
# each under /usr/bin/time -v, and prints wall and CPU time (total and per million predictions) and peak RSS.
# On a shared machine compare CPU seconds: wall time then mostly measures the other processes.
# Uses the torch-2.11 Python that scripts/env.sh installs (it has numpy), or $DECAL_PYTHON. Not run by tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
classes="${2:-10}"
tmp="${TMPDIR:-/tmp}/decal-bench-metrics"
mkdir -p "$tmp"
. scripts/env.sh
PY="${DECAL_PYTHON:-$(dirname "$(command -v python)")/python}"
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
measure() {
  local name="$1"; shift
  local log="$tmp/$name.time"
  /usr/bin/time -v "$@" > "$tmp/$name.out" 2> "$log"
  local wall rss user sys
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  user=$(awk -F': ' '/User time/ {print $2}' "$log")
  sys=$(awk -F': ' '/System time/ {print $2}' "$log")
  "$PY" - "$name" "$wall" "$rss" "$rows" "$user" "$sys" <<'PYEOF'
import sys
name, wall, rss, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cpu = float(sys.argv[5]) + float(sys.argv[6])
parts = [float(p) for p in wall.split(":")]
secs = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) > 2 else 0)
m = rows / 1e6
print(f"| {name} | {secs:.2f} s | {secs / m:.3f} s | {cpu:.2f} s | {cpu / m:.3f} s | {rss / 1024:.0f} MiB |")
PYEOF
}
echo "rows = $rows, classes = $classes, threads = $(nproc), file = $logits ($(du -h "$logits" | cut -f1))"
echo
echo "| run | wall | wall per million | CPU (user+sys) | CPU per million | peak RSS |"
echo "|---|---|---|---|---|---|"
measure decal-paper-streaming "$bin" metrics --logits "$logits" --labels "$labels" --profile paper --no-ece-em --json "$tmp/decal-paper.json"
measure decal-default "$bin" metrics --logits "$logits" --labels "$labels" --profile default --json "$tmp/decal-default.json"
measure numpy-reference "$PY" bench/metrics_reference.py "$logits" "$labels" "$tmp/numpy.json"
echo
"$PY" - "$tmp/decal-paper.json" "$tmp/numpy.json" <<'PYEOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ["accuracy", "ece", "mce", "nll", "brier_div_k"]:
    print(f"{k:12s} decal {a[k]:.10f}   numpy {b[k]:.10f}   |diff| {abs(a[k] - b[k]):.2e}")
PYEOF
