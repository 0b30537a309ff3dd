#!/usr/bin/env bash
# The seed's full stage-2 protocol on one backbone (issue #9): SEEDS seeds × (TST + V-TST), Z = 128, 40 epochs,
# CIFAR-10 40k / 10k, evaluation included — decal's default (A = 10 augmented views extracted once, heads on
# the cached views, every seed's head batched) against the seed's own loop (every epoch's augmented images
# through the body), on the same machine with the same threads, reported as a ratio.
#
#   bench/stage2_protocol.sh [SEEDS] [EPOCHS] [REF_EPOCHS] [THREADS]     (defaults: 10 40 1 2)
#
# decal: `decal run` on the imported seed CNN (runs/seed-cnn-cifar10; see configs/experiments/
# cifar10-seed-cnn-cpu.toml for the import command) and the CIFAR-10 JPEG copy, timed end to end (views,
# heads, temperature fits, evaluation, report). The seed's loop: bench/reference/stage2_seed_loop.py in
# PyTorch 2.11 (the venv of scripts/env.sh) runs REF_EPOCHS epochs of one seed per head (body and head cost
# per epoch do not depend on the seed or the epoch), and the total is extrapolated as
#   SEEDS × EPOCHS × (TST epoch + V-TST epoch) + SEEDS × 2 × evaluation pass.
# The reference is the loop's best case (images decoded once and kept in memory; the seed's DataLoader
# decodes JPEGs every epoch), so the ratio is a lower bound. Not run by tests; writes runs/bench-protocol/
# (runs/bench-protocol-<BODY>-<PRECISION>-<N> when any of the variables below is set).
#
# Environment:
#   BODY=cnn (default; the imported seed CNN) | wrn-16-4 (the WRN-16-4 trained here with cross-entropy,
#        checkpoints/cpu-wrn16-4-cifar10-ce-full/best, committed; configs/stage1/cpu-wrn16-4-cifar10-ce-full.toml)
#   VIEWS_PRECISION=fp32 (default) | bf16: [features] views_precision of decal's view cache
#   N=TRAIN,VAL,TEST: both sides on the first TRAIN training / VAL validation images and TEST evenly spaced
#        test images ([data] limit_train / limit_val / limit_test; the reference script's sizes): every
#        cost of both sides is linear in the image counts, so the ratio carries over to the full split
#        while decal's fixed costs (start-up, plan, loading) weigh more, which lowers it
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-10}"
EPOCHS="${2:-40}"
REF_EPOCHS="${3:-1}"
THREADS="${4:-2}"
DECAL="${DECAL:-target/release/decal}"
BODY="${BODY:-cnn}"
VIEWS_PRECISION="${VIEWS_PRECISION:-fp32}"
N="${N:-}"
case "$BODY" in
  cnn) CHECKPOINT=runs/seed-cnn-cifar10
       HINT="decal import, see configs/experiments/cifar10-seed-cnn-cpu.toml" ;;
  wrn-16-4) CHECKPOINT=checkpoints/cpu-wrn16-4-cifar10-ce-full/best
       HINT="decal train --config configs/stage1/cpu-wrn16-4-cifar10-ce-full.toml --out runs/wrn" ;;
  *) echo "BODY must be cnn or wrn-16-4, not $BODY" >&2; exit 2 ;;
esac
if [ "$BODY" = cnn ] && [ "$VIEWS_PRECISION" = fp32 ] && [ -z "$N" ]; then
  OUT=runs/bench-protocol
else
  OUT="runs/bench-protocol-$BODY-$VIEWS_PRECISION-${N:-full}"
  OUT="${OUT//,/-}"
fi
LIMITS=""
REF_SIZES=""
if [ -n "$N" ]; then
  IFS=, read -r NT NV NE <<< "$N"
  LIMITS="limit_train = $NT
limit_val = $NV
limit_test = $NE"
  REF_SIZES="$NT $NV $NE"
fi
[ -e "$CHECKPOINT" ] || { echo "needs $CHECKPOINT ($HINT)" >&2; exit 2; }
. scripts/env.sh
scripts/cargo build --release -q -p decal-cli
rm -rf "$OUT"
mkdir -p "$OUT"
seeds=$(seq -s, 0 $((SEEDS - 1)))
cat > "$OUT/protocol.toml" <<TOML
name = "bench-protocol"
seeds = [$seeds]
temperature_scaling = true
[data]
dataset = "cifar10"
dir = "$PWD/../shared/datasets/cifar10-jpeg"
$LIMITS
[backbone]
checkpoint = "$PWD/$CHECKPOINT"
[features]
mode = "augmented"
views = 10
views_precision = "$VIEWS_PRECISION"
[[heads]]
name = "TST"
kind = "tst"
latent_dim = 128
epochs = $EPOCHS
[[heads]]
name = "V-TST"
kind = "vtst"
latent_dim = 128
epochs = $EPOCHS
eval_samples = [1, 10]
[eval]
bootstrap = 0
TOML
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
"$DECAL" run "$OUT/protocol.toml" --out "$OUT/run" --threads "$THREADS" --head-threads "$THREADS" > "$OUT/table.md" 2> "$OUT/run.log"
decal_s=$(echo "$(date +%s.%N) - $start" | bc -l)
echo "load after decal: $(cut -d' ' -f1-3 /proc/loadavg)"
python bench/reference/stage2_seed_loop.py "$BODY" "$THREADS" "$REF_EPOCHS" $REF_SIZES > "$OUT/reference.json"
echo "load after reference: $(cut -d' ' -f1-3 /proc/loadavg)"
python - "$OUT/reference.json" "$decal_s" "$SEEDS" "$EPOCHS" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
decal_s, seeds, epochs = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
seed_s = seeds * epochs * (ref["tst_epoch_s"] + ref["vtst_epoch_s"]) + seeds * 2 * ref["eval_s"]
print(f"body {ref['preset']}, {ref['train']} / {ref['val']} / {ref['test']} training / validation / test images")
print(f"decal (A = 10 views, batched seeds, evaluation, report): {decal_s:.0f} s")
print(f"seed loop (PyTorch {ref['torch']}, {ref['threads']} threads; measured {ref['epochs_measured']} epoch(s) per head: "
      f"TST {ref['tst_epoch_s']:.1f} s, V-TST {ref['vtst_epoch_s']:.1f} s, evaluation {ref['eval_s']:.1f} s), "
      f"extrapolated to {seeds} seeds x 2 heads x {epochs} epochs: {seed_s:.0f} s ({seed_s / 3600:.2f} h)")
print(f"ratio seed loop / decal: {seed_s / decal_s:.1f}x")
PY
grep -E "views: done|head/(tst|v-tst)/seed-0: done|features (val|test)" "$OUT/run.log" | sed 's/^/  decal: /' || true
grep -E "^\| (Method|TST|V-TST m=10|TS \+ TST|TS \+ V-TST m=10) " "$OUT/table.md" || true
