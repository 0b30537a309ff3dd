#!/usr/bin/env bash
# Stage-1 training / inference throughput, decal vs PyTorch, same models, batch size and thread count.
#
#   bench/train_speed.sh [threads] [batch] [precisions]   (defaults: 2 threads, batch 128, "fp32 bf16")
#
# Each precision is measured on both sides (bf16 = autocast of the forward passes, decal's
# `--precision bf16`); the table adds each model's bf16/fp32 speed-up.
#
# decal: crates/decal-train/examples/train_speed.rs (decal_models presets, decal's Adam, tch/libtorch 2.11);
# PyTorch: bench/reference/train_speed.py with the torch 2.11 that scripts/env.sh installs (same libtorch).
# Random inputs: data loading is excluded on both sides. Prints one JSON line per measurement and a
# table of decal/PyTorch ratios (> 1 means decal is faster). Not run by tests or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
batch="${2:-128}"
precisions="${3:-fp32 bf16}"
. scripts/env.sh
PY="${DECAL_TORCH_PYTHON:-$(dirname "$(command -v python)")/python}"
scripts/cargo build --release -q -p decal-train --example train_speed
bin=target/release/examples/train_speed
out="$(mktemp)"
for spec in "cnn 40 40" "wrn-16-4 6 10"; do
  set -- $spec
  for p in $precisions; do
    "$bin" "$1" "$batch" "$threads" "$2" "$3" cpu "$p" | tee -a "$out"
    "$PY" bench/reference/train_speed.py "$1" "$batch" "$threads" "$2" "$3" "$p" | tee -a "$out"
  done
done
"$PY" - "$out" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n| model | precision | batch | threads | decal train img/s | torch train img/s | ratio | decal infer img/s | torch infer img/s | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m in dict.fromkeys(r["model"] for r in rows):
    for p in dict.fromkeys(r["precision"] for r in rows):
        d = next(r for r in rows if r["model"] == m and r["precision"] == p and r["impl"] == "decal")
        t = next(r for r in rows if r["model"] == m and r["precision"] == p and r["impl"] != "decal")
        print(f"| {m} | {p} | {d['batch']} | {d['threads']} | {d['train_images_per_sec']:.0f} | {t['train_images_per_sec']:.0f} | "
              f"{d['train_images_per_sec']/t['train_images_per_sec']:.2f} | {d['infer_images_per_sec']:.0f} | "
              f"{t['infer_images_per_sec']:.0f} | {d['infer_images_per_sec']/t['infer_images_per_sec']:.2f} |")
decal = {(r["model"], r["precision"]): r for r in rows if r["impl"] == "decal"}
for m in dict.fromkeys(r["model"] for r in rows):
    if (m, "fp32") in decal and (m, "bf16") in decal:
        a, b = decal[(m, "fp32")], decal[(m, "bf16")]
        print(f"decal {m}: bf16/fp32 train {b['train_images_per_sec']/a['train_images_per_sec']:.2f}x, "
              f"inference {b['infer_images_per_sec']/a['infer_images_per_sec']:.2f}x")
PYEOF
rm -f "$out"
