#!/usr/bin/env bash
# The one command for a lent GPU machine (no network; its Python environment may be read-only).
# Here: `make gpu-wheels`. There, from the repository root with `.whl` carried:
#   bash bench/gpu_run.sh [gpu_check options]
# No `pip install -e`: this checkout goes on PYTHONPATH under the name `xfbench` (the repository
# root is the package, see pyproject's package-dir), and the wheels of what the image lacks are
# installed into a temp dir beside it, keeping the image's typing_extensions. Caches go to that
# temp dir too. Logs land in $OUT. gpu_check runs under a GPU_CHECK_TIMEOUT_S limit (400 s; its
# own estimate is ~5 min), then bench/fidelity.py under FIDELITY_TIMEOUT_S (50 s): with the kill
# grace, under 8 minutes in all.
set -uo pipefail
OUT=${OUT:-/tmp/xfbench-out}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT  # the symlink goes, not the checkout: rm does not follow it
mkdir "$tmp/path" && ln -s "$PWD" "$tmp/path/xfbench"
export PYTHONPATH="$tmp/path:$tmp/site${PYTHONPATH:+:$PYTHONPATH}"

unpack() {  # wheels into $tmp/site, offline, ignoring any pip configuration of the image
  PIP_CONFIG_FILE=/dev/null python3 -m pip --isolated install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$tmp/site" "$@"
}
if compgen -G ".whl/*.whl" >/dev/null; then
  unpack .whl/*.whl || exit 1
fi
# pydantic may need a newer typing_extensions than the image has: only then use the spare one.
if ! python3 -c "import pydantic" 2>/dev/null && compgen -G ".whl/spare/typing_extensions-*.whl" >/dev/null; then
  echo "gpu_run: the image's typing_extensions is too old for pydantic; using .whl/spare's"
  unpack .whl/spare/typing_extensions-*.whl || exit 1
fi

c=$tmp/cache
export XFBENCH_CACHE_DIR=$c/xfbench XDG_CACHE_HOME=$c CUDA_CACHE_PATH=$c/nv TORCHINDUCTOR_CACHE_DIR=$c/inductor \
  TRITON_CACHE_DIR=$c/triton PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv | tee "$OUT/nvidia-smi.txt"
limit=${GPU_CHECK_TIMEOUT_S:-400}
timeout -k 10 "$limit" python3 bench/gpu_check.py "$@" 2>&1 | tee "$OUT/gpu_check.log"
check=${PIPESTATUS[0]}
[ "$check" = 124 ] && echo "gpu_run: gpu_check stopped at its $limit s limit" | tee -a "$OUT/gpu_check.log"
[ "$check" = 2 ] && exit 2  # an import failed: fidelity would fail the same way
timeout -k 10 "${FIDELITY_TIMEOUT_S:-50}" python3 bench/fidelity.py --device cuda --rounds 2 --min-run-time 0.5 \
  --max-time 1 2>&1 | tee "$OUT/fidelity_cuda.log"
exit "$check"
