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
# decodes JPEGs every epoch), so the ratio is a lower bound. Not run by tests; writes runs/bench-protocol/.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-10}"
EPOCHS="${2:-40}"
REF_EPOCHS="${3:-1}"
THREADS="${4:-2}"
DECAL="${DECAL:-target/release/decal}"
OUT=runs/bench-protocol
[ -d runs/seed-cnn-cifar10 ] || { echo "needs runs/seed-cnn-cifar10 (decal import, see configs/experiments/cifar10-seed-cnn-cpu.toml)" >&2; exit 2; }
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
[backbone]
checkpoint = "$PWD/runs/seed-cnn-cifar10"
[features]
mode = "augmented"
views = 10
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
python bench/reference/stage2_seed_loop.py cnn "$THREADS" "$REF_EPOCHS" > "$OUT/reference.json"
echo "load after reference: $(cut -d' ' -f1-3 /proc/loadavg)"
python - "$OUT/reference.json" "$decal_s" "$SEEDS" "$EPOCHS" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
decal_s, seeds, epochs = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
seed_s = seeds * epochs * (ref["tst_epoch_s"] + ref["vtst_epoch_s"]) + seeds * 2 * ref["eval_s"]
print(f"decal (A = 10 views, batched seeds, evaluation, report): {decal_s:.0f} s")
print(f"seed loop (PyTorch {ref['torch']}, {ref['threads']} threads; measured {ref['epochs_measured']} epoch(s) per head: "
      f"TST {ref['tst_epoch_s']:.1f} s, V-TST {ref['vtst_epoch_s']:.1f} s, evaluation {ref['eval_s']:.1f} s), "
      f"extrapolated to {seeds} seeds x 2 heads x {epochs} epochs: {seed_s:.0f} s ({seed_s / 3600:.2f} h)")
print(f"ratio seed loop / decal: {seed_s / decal_s:.1f}x")
PY
grep -E "^\| (Method|TST|V-TST m=10|TS \+ TST|TS \+ V-TST m=10) " "$OUT/table.md" || true
