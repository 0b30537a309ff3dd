#!/usr/bin/env bash
# Packs what bench/gpu_wrn_study.sh needs on a GPU machine without ../shared (a stripped decal and the
# datasets it reads) into one gzip'd tar split into pieces .s1/part.* ... .sN/part.* of at most LIMIT MB
# (default 38: the device tool sends at most 64 MiB per call, counted in disk blocks, the repository's ~22 MB
# included). Each piece travels in its own call; a warm machine keeps the earlier ones (git-ignored paths not
# named in a call stay there), and bench/gpu_wrn_study.sh joins and unpacks them.
#
#   bench/gpu_stage.sh [limit-MB]
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${1:-38}"
grep -qx '/.s\[0-9\]\*/' .git/info/exclude 2>/dev/null || echo '/.s[0-9]*/' >>.git/info/exclude
rm -rf .s[0-9]* .stage-tmp
mkdir -p .stage-tmp/bin
scripts/cargo build --release -q -p decal-cli
strip -o .stage-tmp/bin/decal target/release/decal
strip -o .stage-tmp/bin/decal-full target/release/decal-full
tar czf - -C .stage-tmp bin -C "$(cd ../shared && pwd)" datasets/cifar10-jpeg datasets/corruption-assets \
  datasets/mnist/t10k-images-idx3-ubyte.gz datasets/mnist/t10k-labels-idx1-ubyte.gz \
  datasets/tiny-imagenet-200/wnids.txt datasets/tiny-imagenet-200/val \
  | split -b "${limit}M" -d -a 2 - .stage-tmp/part.
i=0
for p in .stage-tmp/part.*; do
  i=$(( i + 1 ))
  mkdir -p ".s$i"
  mv "$p" ".s$i/"
done
rm -rf .stage-tmp
du -s --apparent-size -B1M .s[0-9]*
