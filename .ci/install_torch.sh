#!/bin/sh
# Install a CPU build of torch into a virtual environment, unless it already has a torch
# (a GPU machine's own CUDA build is kept). Called by the Makefile:
#   sh .ci/install_torch.sh PYTHON PIN CPU_INDEX    e.g. .venv/bin/python torch==2.13.0+cpu URL
# Tries in order, and says which one it used:
#   1. PIN through pip's configured indexes and wheel folders (a local CPU wheel, if any);
#   2. PIN from PyTorch's CPU index alone;
#   3. the newest torch on PyTorch's CPU index alone.
# Never a CUDA build: the "+cpu" local version matches only CPU wheels, and the CPU index holds
# nothing else. Steps 2 and 3 ignore pip's configuration files and PIP_* variables
# (PIP_CONFIG_FILE=/dev/null, --isolated), so no extra index or wheel folder can offer another torch.
set -u
py=$1 pin=$2 index=$3

installed() { "$py" -c "import torch; print(torch.__version__)" 2>/dev/null; }
from_cpu_index() { PIP_CONFIG_FILE=/dev/null "$py" -m pip --isolated install -q --index-url "$index" "$1"; }

if v=$(installed); then
  echo "torch: keeping torch $v, already installed in this environment"
  exit 0
fi
if "$py" -m pip install -q "$pin"; then
  echo "torch: installed torch $(installed) ($pin) through pip's configured indexes"
  exit 0
fi
echo "torch: $pin is not available through pip's configured indexes; trying PyTorch's CPU index $index"
if from_cpu_index "$pin"; then
  echo "torch: installed torch $(installed) ($pin) from PyTorch's CPU index $index"
  exit 0
fi
echo "torch: $pin is not on PyTorch's CPU index either; trying the newest torch there"
if from_cpu_index torch; then
  echo "torch: installed torch $(installed), the newest on PyTorch's CPU index $index"
  exit 0
fi
echo "torch: could not install a CPU build of torch (pip's errors are above); install one into" \
  "$(dirname "$(dirname "$py")") yourself, or rerun make with TORCH_CPU=torch==<version>+cpu" >&2
exit 1
