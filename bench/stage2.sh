#!/usr/bin/env bash
# Stage-2 benchmark: cached features vs the exact (seed) mode that passes augmented images through the
# frozen body every epoch. Same backbone (the seed's CIFAR-10 CNN, imported), same head (TST Z=128), same
# seed and epochs; prints the wall time of each stage-2 run, their ratio, and both test results.
#
#   bench/stage2.sh [EPOCHS] [DEVICE]      (defaults: 10 epochs, cpu)
#
# Needs: runs/seed-cnn-cifar10 (see configs/experiments/cifar10-seed-cnn-cpu.toml for the import command)
# and ../shared/datasets/cifar10-jpeg. Writes into runs/bench-stage2/ (recreated).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-10}"
DEVICE="${2:-cpu}"
DECAL="${DECAL:-target/release/decal}"
OUT=runs/bench-stage2
rm -rf "$OUT"
mkdir -p "$OUT"
for MODE in cached exact; do
  cat > "$OUT/$MODE.toml" <<TOML
name = "bench-stage2-$MODE"
seeds = [0]
[data]
dataset = "cifar10"
dir = "$PWD/../shared/datasets/cifar10-jpeg"
[backbone]
checkpoint = "$PWD/runs/seed-cnn-cifar10"
[features]
mode = "$MODE"
[[heads]]
name = "TST"
kind = "tst"
latent_dim = 128
epochs = $EPOCHS
[eval]
bootstrap = 0
train_nll = false
save_predictions = false
TOML
  "$DECAL" run "$OUT/$MODE.toml" --out "$OUT/$MODE" --device "$DEVICE" --threads 1 > "$OUT/$MODE.table.md" 2> "$OUT/$MODE.log"
done
secs() { grep -o 'stage 2: TST seed 0: best epoch .* in [0-9.]*s' "$1" | grep -o '[0-9.]*s$' | tr -d s; }
CACHED=$(secs "$OUT/cached.log")
EXACT=$(secs "$OUT/exact.log")
echo "stage 2, TST Z=128, $EPOCHS epochs on 40,000 CIFAR-10 training images, device $DEVICE"
echo "  cached features: ${CACHED}s (plus a one-off extraction: $(grep -o 'features train: .*' "$OUT/cached.log"))"
echo "  exact mode:      ${EXACT}s"
awk -v a="$EXACT" -v b="$CACHED" 'BEGIN { printf "  ratio exact / cached: %.1fx\n", a / b }'
for MODE in cached exact; do
  echo "--- $MODE"
  grep -E '^\| (Method|Baseline|TST)' "$OUT/$MODE.table.md"
  grep -o 'best epoch [0-9]* of [0-9]* (val NLL [0-9.]*)' "$OUT/$MODE.log"
done
