#!/usr/bin/env bash
# Data-path throughput (decal-data): CIFAR-10 JPEG ImageFolder decode, CIFAR binary read, and augmented
# transform epochs. Run from the repository root on a quiet machine:  bench/data.sh [path/to/shared/datasets]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/datasets}"
exec scripts/cargo run --release -q -p decal-data --example data_bench -- "$DATA"
