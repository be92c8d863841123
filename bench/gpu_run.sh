#!/usr/bin/env bash
# Run on a lent GPU machine, from the repository root, with `.whl` carried (make gpu-wheels):
# installs what the image lacks and xfbench itself (offline, over the image's CUDA torch), then
# runs every GPU check and keeps the logs under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/xfbench-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
export XFBENCH_CACHE_DIR=/tmp/xfbench-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv | tee "$OUT/nvidia-smi.txt"
python3 bench/gpu_check.py "$@" 2>&1 | tee "$OUT/gpu_check.log"
python3 bench/fidelity.py --device cuda --rounds 2 2>&1 | tee "$OUT/fidelity_cuda.log"
