#!/usr/bin/env bash
# The views study of docs/stage2-views.md (issue #9): on two backbones (the imported seed CNN; the seed's CNN
# trained here), TST and V-TST (m = 1, 10) over 5 seeds with stage 2 in exact mode (the seed's loop) and on
# A = 1, 4, 10, 40 cached augmented views and on un-augmented features; then the tables (mean ± sample sd over
# the seeds, and whether each mode's mean lies within the exact mode's mean ± 2 sd).
#
#   bench/views_study.sh            (from a clean state about 30 min on 2 idle cores; resumable: re-run it)
#
# Writes runs/views-study/<config>/ (one `decal run` per config of configs/experiments/study-views/) and
# runs/views-study/tables.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DECAL="${DECAL:-target/release/decal}"
. scripts/env.sh
scripts/cargo build --release -q -p decal-cli
if [ ! -e runs/seed-cnn-cifar10/model.safetensors ]; then
  "$DECAL" import --from ../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt --arch cnn --num-classes 10 \
    --dataset cifar10 --out runs/seed-cnn-cifar10
fi
mkdir -p runs/views-study
if [ ! -e runs/views-study/views-study-cnn-5k/best ]; then
  if [ -d runs/views-study/views-study-cnn-5k ]; then
    "$DECAL" train --resume runs/views-study/views-study-cnn-5k 2>> runs/views-study/train-cnn.log
  else
    "$DECAL" train --config configs/stage1/views-study-cnn-5k.toml --out runs/views-study \
      2> runs/views-study/train-cnn.log
  fi
fi
for backbone in seed-cnn cnn; do
  for mode in exact a1 a4 a10 a40 unaugmented; do
    name="$backbone-$mode"
    start=$(date +%s.%N)
    "$DECAL" run "configs/experiments/study-views/$name.toml" --out "runs/views-study/$name" \
      > "runs/views-study/$name.md" 2> "runs/views-study/$name.log"
    printf '%s: %.0f s\n' "$name" "$(echo "$(date +%s.%N) - $start" | bc -l)"
  done
done
python3 bench/views_study_tables.py runs/views-study | tee runs/views-study/tables.md
