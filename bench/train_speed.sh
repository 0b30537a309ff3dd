#!/usr/bin/env bash
# Stage-1 training / inference throughput, decal vs PyTorch, same models, batch size and thread count.
#
#   bench/train_speed.sh [threads] [batch]        (defaults: 2 threads, batch 128)
#
# decal: crates/decal-train/examples/train_speed.rs (decal_models presets, decal's Adam, tch/libtorch 2.11);
# PyTorch: bench/reference/train_speed.py with the torch 2.11 that scripts/env.sh installs (same libtorch).
# Random inputs: data loading is excluded on both sides. Prints one JSON line per measurement and a
# table of decal/PyTorch ratios (> 1 means decal is faster). Not run by tests or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
batch="${2:-128}"
. scripts/env.sh
PY="${DECAL_TORCH_PYTHON:-$(dirname "$(command -v python)")/python}"
scripts/cargo build --release -q -p decal-train --example train_speed
bin=target/release/examples/train_speed
out="$(mktemp)"
for spec in "cnn 40 40" "wrn-16-4 6 10"; do
  set -- $spec
  "$bin" "$1" "$batch" "$threads" "$2" "$3" | tee -a "$out"
  "$PY" bench/reference/train_speed.py "$1" "$batch" "$threads" "$2" "$3" | tee -a "$out"
done
"$PY" - "$out" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n| model | batch | threads | decal train img/s | torch train img/s | ratio | decal infer img/s | torch infer img/s | ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for m in dict.fromkeys(r["model"] for r in rows):
    d = next(r for r in rows if r["model"] == m and r["impl"] == "decal")
    t = next(r for r in rows if r["model"] == m and r["impl"] != "decal")
    print(f"| {m} | {d['batch']} | {d['threads']} | {d['train_images_per_sec']:.0f} | {t['train_images_per_sec']:.0f} | "
          f"{d['train_images_per_sec']/t['train_images_per_sec']:.2f} | {d['infer_images_per_sec']:.0f} | "
          f"{t['infer_images_per_sec']:.0f} | {d['infer_images_per_sec']/t['infer_images_per_sec']:.2f} |")
PYEOF
rm -f "$out"
