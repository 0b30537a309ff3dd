#!/usr/bin/env bash
# Packs what bench/device_check.sh needs on a machine that has a GPU but no Rust toolchain, no libtorch
# venv and no ../shared: the release binaries (stripped), a CIFAR-10 subset in the image-folder layout and
# the seed's CNN checkpoint, into .dev/ (git-ignored through .git/info/exclude). Small enough to travel
# with the working tree (the device tool's limit is 64 MiB in all).
#
#   bench/device_pack.sh [train-per-class] [test-per-class]     defaults: 400 100
#
# Then, on the device machine (commands run in the repository root, torch 2.11 in its python3):
#   bench/device_run.sh          (see that script)
set -euo pipefail
cd "$(dirname "$0")/.."
per_train="${1:-400}"
per_test="${2:-100}"
src=../shared/datasets/cifar10-jpeg
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo /.dev/ >>.git/info/exclude
scripts/cargo build --release -q -p decal-cli -p decal-train --bins --example train_speed
rm -rf .dev
mkdir -p .dev/bin .dev/cifar10-jpeg
strip -o .dev/bin/decal target/release/decal
strip -o .dev/bin/decal-full target/release/decal-full  # every command but `metrics` runs here
strip -o .dev/bin/train_speed target/release/examples/train_speed
for split in train test; do
  n=$per_train
  [ "$split" = test ] && n=$per_test
  for class_dir in "$src/$split"/*/; do
    class=$(basename "$class_dir")
    mkdir -p ".dev/cifar10-jpeg/$split/$class"
    # the first n files of each class, in name order
    find "$class_dir" -maxdepth 1 -name '*.jpg' | sort | awk -v n="$n" 'NR <= n' | xargs cp -t ".dev/cifar10-jpeg/$split/$class"
  done
done
cp ../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt .dev/
du -sh .dev
