# Two-command set-up: `make demo` and `make test` (each installs first).
# torch is pinned to a CPU build here: the package itself only declares torch>=2.4, so a
# GPU machine keeps its own CUDA build. The "+cpu" local version can only match a CPU
# wheel, so this never pulls a multi-GB CUDA build onto a CPU machine. Where no local
# CPU wheel is found, point pip at PyTorch's CPU index, e.g. PIP_EXTRA_INDEX_URL.
PYTHON ?= python3
VENV ?= .venv
TORCH_CPU ?= torch==2.13.0+cpu
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_OUT ?= runs/demo

.PHONY: install install-dev demo test lint bench clean gpu-wheels

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_CPU)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/xfbench env
	$(VENV)/bin/xfbench attention --seq-lens 256:2048:x2 --impl naive,sdpa,lstm --device cpu --max-time 2 --out $(DEMO_OUT)

test: install-dev
	$(PY) -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/startup.py
	$(PY) bench/fidelity.py

clean:
	rm -rf $(VENV) build dist *.egg-info runs .pytest_cache

# For a lent GPU machine (no network there): wheels of what its image lacks, for Python 3.12.
# Then run `bash bench/gpu_run.sh` there with .whl carried (see bench/gpu_run.sh).
GPU_WHEELS ?= pydantic platformdirs
gpu-wheels:
	rm -rf .whl
	$(PIP) download -q --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl $(GPU_WHEELS)
	rm -f .whl/typing_extensions-*.whl  # the GPU image has its own
	ls .whl
