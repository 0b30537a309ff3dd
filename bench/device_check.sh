#!/usr/bin/env bash
# The checks that need a GPU, as one prepared script for a machine that has one (decal has not run on
# CUDA yet; see README "Mixed precision and GPUs"). Never run by tests or CI.
#
#   bench/device_check.sh [device] [cifar10-dir] [out-dir]
#       device       cuda (default), cuda:<i>, or cpu (a dry run of this script: fp16 is skipped)
#       cifar10-dir  CIFAR-10 in any layout decal reads [../shared/datasets/cifar10-jpeg]
#       out-dir      where runs and the summary go [runs/device-check]
#
# 1. Reproducibility: the seed CNN trained twice with the same seed on the device (fp32) must give
#    bit-identical weights (cuDNN deterministic, CUBLAS_WORKSPACE_CONFIG set by decal).
# 2. Mixed precision on real data: the same run in bf16 (and fp16 with loss scaling on CUDA): finite,
#    accuracy well above chance, close to fp32.
# 3. Device vs CPU: the seed's own CNN checkpoint evaluated on the device and on the CPU: logits agree to
#    float32 rounding, metrics equal to the printed digits.
# 4. Throughput: training / inference images/s of the CNN and WRN-16-4 in fp32 / bf16 (/ fp16).
# Prints PASS/FAIL per check and writes <out-dir>/summary.txt; exit status 1 if any check failed.
#
# DECAL_BIN_DIR: a folder holding prebuilt `decal` and `train_speed` (bench/device_pack.sh); then nothing is
# built and the libtorch venv is not needed (LD_LIBRARY_PATH must reach libtorch: bench/device_run.sh).
# DECAL_SEED_CKPT: the seed's CNN checkpoint [../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt].
set -uo pipefail
cd "$(dirname "$0")/.."
device="${1:-cuda}"
data="${2:-../shared/datasets/cifar10-jpeg}"
out="${3:-runs/device-check}"
if [ -n "${DECAL_BIN_DIR:-}" ]; then
  decal="$DECAL_BIN_DIR/decal"
  train_speed="$DECAL_BIN_DIR/train_speed"
  PY="${DECAL_TORCH_PYTHON:-python3}"
else
  . scripts/env.sh
  PY="${DECAL_TORCH_PYTHON:-$(dirname "$(command -v python)")/python}"
  scripts/cargo build --release -q -p decal-cli -p decal-train --bins --example train_speed || exit 1
  decal=target/release/decal
  train_speed=target/release/examples/train_speed
fi
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
fail=0
say() { echo "$*" | tee -a "$summary"; }
check() { if [ "$1" = 0 ]; then say "PASS $2"; else say "FAIL $2"; fail=1; fi; }

precisions="fp32 bf16"
case "$device" in cuda*) precisions="fp32 bf16 fp16" ;; esac
limit=(--limit-train 10000 --limit-val 2000)
[ "$device" = cpu ] && limit=(--limit-train 2000 --limit-val 500)

train() { # name precision
  "$decal" train --model cnn --dataset cifar10 --data-dir "$data" --epochs 3 --lr 1e-3 --seed 5 \
    "${limit[@]}" --device "$device" --precision "$2" --name "$1" --out "$out" --force >"$out/$1.log" 2>&1
}

# 1. Reproducibility.
train repro-a fp32 && train repro-b fp32
st=$?
if [ $st = 0 ]; then
  # decal writes safetensors deterministically: equal weights <=> equal bytes.
  cmp "$out/repro-a/last/model.safetensors" "$out/repro-b/last/model.safetensors"
  st=$?
fi
check $st "same config + seed on $device gives bit-identical weights (log: $out/repro-a.log)"

# 2. Mixed precision.
for p in $precisions; do
  [ "$p" = fp32 ] && continue
  train "mp-$p" "$p"
  st=$?
  if [ $st = 0 ]; then
    "$PY" - "$out/repro-a/summary.json" "$out/mp-$p/summary.json" "$p" <<'PYEOF'
import json, math, sys
ref, mp, p = json.load(open(sys.argv[1]))["best"], json.load(open(sys.argv[2]))["best"], sys.argv[3]
print(f"{p}: val accuracy {mp['val_accuracy']:.4f} (fp32 {ref['val_accuracy']:.4f}), "
      f"val NLL {mp['val_nll']:.4f} (fp32 {ref['val_nll']:.4f})")
ok = math.isfinite(mp["val_nll"]) and mp["val_accuracy"] > 0.2 and abs(mp["val_accuracy"] - ref["val_accuracy"]) < 0.05
sys.exit(0 if ok else 1)
PYEOF
    st=$?
  fi
  check $st "$p trains on $device: finite, accuracy over twice chance, within 5 points of fp32 (log: $out/mp-$p.log)"
done

# 3. Device vs CPU evaluation of the seed's CNN.
ckpt="${DECAL_SEED_CKPT:-../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt}"
if [ -f "$ckpt" ]; then
  "$decal" import --from "$ckpt" --arch cnn --num-classes 10 --dataset cifar10 --out "$out/seed-cnn" --force \
    >"$out/import.log" 2>&1
  st=$?
  for d in cpu "$device"; do
    [ $st = 0 ] || break
    "$decal" eval --checkpoint "$out/seed-cnn" --data-dir "$data" --device "$d" --profile paper \
      --json "$out/eval-$d.json" --save-logits "$out/logits-$d.npy" --force >"$out/eval-$d.log" 2>&1
    st=$?
  done
  if [ $st = 0 ]; then
    "$PY" - "$out/logits-cpu.npy" "$out/logits-$device.npy" "$out/eval-cpu.json" "$out/eval-$device.json" <<'PYEOF'
import json, sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
diff = float(np.abs(a - b).max())
ja, jb = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
keys = [k for k in ("accuracy", "ece", "nll", "brier") if k in ja]
print(f"max |logit difference| device vs CPU: {diff:.3g}; " +
      ", ".join(f"{k} {ja[k]:.6f} / {jb[k]:.6f}" for k in keys))
sys.exit(0 if diff < 1e-3 and all(abs(ja[k] - jb[k]) < 1e-4 for k in keys) else 1)
PYEOF
    st=$?
  fi
  check $st "seed CNN on $device matches the CPU (logits, paper-profile metrics)"
else
  say "SKIP device-vs-CPU evaluation: $ckpt not found"
fi

# 4. Throughput.
dev_arg=cpu
case "$device" in cuda*) dev_arg=cuda ;; esac
specs=("cnn 40 40" "wrn-16-4 20 40")
# WRN-28-10 (the paper's backbone) only on a GPU: it times the catalogue configs' stage 1 there.
[ "$dev_arg" = cuda ] && specs+=("wrn-28-10 20 40")
for spec in "${specs[@]}"; do
  set -- $spec
  for p in $precisions; do
    "$train_speed" "$1" 128 2 "$2" "$3" "$dev_arg" "$p" | tee -a "$summary"
  done
done

say "summary: $summary"
exit $fail
