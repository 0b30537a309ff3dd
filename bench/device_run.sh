#!/usr/bin/env bash
# Runs bench/device_check.sh on a GPU machine from what bench/device_pack.sh packed into .dev/ (no build
# there), then the quickstart on the GPU; copies the summary and logs to $OUT (the device tool's folder)
# when it is set. libtorch comes from that machine's own torch (same pinned version, CUDA build).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/device-run}"
mkdir -p "$out"
torch_lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
export DECAL_BIN_DIR=.dev/bin DECAL_SEED_CKPT=.dev/seed-cnn-cifar10-seed1.ckpt DECAL_TORCH_PYTHON=python3
start=$(date +%s)
bench/device_check.sh "${1:-cuda}" .dev/cifar10-jpeg runs/device-check
rc=$?
echo "device_check: rc $rc in $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout 200 .dev/bin/decal quickstart --device "${1:-cuda}" --out runs/quickstart-gpu --force >runs/quickstart-gpu.log 2>&1
qrc=$?
echo "quickstart on ${1:-cuda}: rc $qrc in $(( $(date +%s) - start )) s"
tail -n 40 runs/quickstart-gpu.log
tar czf "$out/device-check.tgz" runs/device-check/*.log runs/device-check/summary.txt runs/device-check/*.json \
  runs/device-check/*/summary.json runs/quickstart-gpu.log runs/quickstart-gpu/*.md runs/quickstart-gpu/*.json 2>/dev/null
cp runs/device-check/summary.txt "$out/" 2>/dev/null
exit $(( rc | qrc ))
