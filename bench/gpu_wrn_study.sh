#!/usr/bin/env bash
# Issue #10, item 5: the WRN-28-10 CIFAR-10 study on one GPU, as it was run on an H200 (bench results in
# docs/results/wrn28-10-cifar10-ce-gpu/). Three decal commands, exactly as a user types them:
#   1. decal train   configs/stage1/gpu-wrn28-10-cifar10-ce-short.toml   (GPU, bf16), while
#   2. decal data corrupt (CPU, the 19 x 5 generated corruptions of the test set) runs beside it, then
#   3. decal run     configs/experiments/gpu/wrn28-10-cifar10-ce-study.toml --device cuda
# Needs ../shared/datasets/{cifar10-jpeg,tiny-imagenet-200,mnist,corruption-assets} and a decal binary
# (DECAL_BIN, default target/release/decal). On the device machine (no Rust, no ../shared) the binary and the
# data travel in pieces (.s1/part.00 ... .sN/part.*, one call each, see bench/gpu_stage.sh) and are unpacked here first.
# Copies the results (no weights, features or predictions) to $OUT when set, else runs/gpu-wrn-study-out.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu-wrn-study-out}"
mkdir -p "$out" runs/wrn
if [ ! -d ../shared/datasets/cifar10-jpeg ] && compgen -G ".s[0-9]*/part.*" >/dev/null; then
  mkdir -p ../shared
  cat .s[0-9]*/part.* | tar xzf - -C ../shared || exit 1
  export DECAL_BIN=../shared/bin/decal
  du -sh ../shared/datasets/*
fi
if python3 -c 'import torch' 2>/dev/null; then
  torch_lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
decal="${DECAL_BIN:-target/release/decal}"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp "corruptions (CPU) and WRN-28-10 training (GPU) start"
"$decal" data corrupt --dataset cifar10 --data-dir ../shared/datasets/cifar10-jpeg --out runs/cifar10-c-gen \
  >runs/corrupt.log 2>&1 &
cpid=$!
"$decal" train --config configs/stage1/gpu-wrn28-10-cifar10-ce-short.toml --out runs/wrn >runs/wrn/gpu-train.log 2>&1
trc=$?
stamp "training: rc $trc"; grep -E '^epoch [0-9]+ done|^done' runs/wrn/gpu-train.log
train_dir=runs/wrn/gpu-wrn28-10-cifar10-ce-short
tar czf "$out/train.tgz" runs/wrn/gpu-train.log "$train_dir"/*.json "$train_dir"/*.csv "$train_dir"/*.toml 2>/dev/null
wait $cpid
crc=$?
stamp "corruptions: rc $crc"; tail -n 2 runs/corrupt.log
[ $trc = 0 ] && [ $crc = 0 ] || exit 1

# DECAL_DEADLINE_S: stop the study this many seconds after the start (the device tool's call limit), so what
# finished still comes back; re-running the same command resumes it (finished units are reused).
left=$(( ${DECAL_DEADLINE_S:-100000} - ($(date +%s) - t0) ))
timeout "$left" "$decal" run configs/experiments/gpu/wrn28-10-cifar10-ce-study.toml --device cuda >runs/gpu-study.log 2>&1
src=$?
stamp "study: rc $src"
tail -n 30 runs/gpu-study.log
study=runs/wrn28-10-cifar10-ce-gpu-study
tar czf "$out/study.tgz" --exclude='*.npy' --exclude='*.safetensors' --exclude='*.pt' --exclude=units \
  --exclude=predictions --exclude=report runs/gpu-study.log runs/corrupt.log "$study" 2>/dev/null
tar czf "$out/report.tgz" "$study/report" 2>/dev/null
# the unit logs (timings) without their data
find "$study/units" -name '*.json' -size -200k 2>/dev/null | tar czf "$out/units.tgz" -T - 2>/dev/null
ls -la "$out"
exit $src
