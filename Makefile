# Two-command set-up: `make demo` and `make test` (each installs first).
# torch: the package itself only declares torch>=2.4, so a venv that already has a torch (a GPU
# machine's CUDA build) keeps it. Otherwise .ci/install_torch.sh installs a CPU build: the pin
# through pip's configured indexes (a local CPU wheel), else from PyTorch's CPU index alone (the
# pin, else the newest torch there), and prints which one it used. The "+cpu" local version and
# the CPU index hold CPU wheels only: never a multi-GB CUDA build on a CPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_OUT ?= runs/demo

.PHONY: install install-dev browser demo test lint bench clean gpu-wheels

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	sh .ci/install_torch.sh $(PY) "$(TORCH_CPU)" $(TORCH_CPU_INDEX)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Debian's chromium for the HTML report's browser test (Playwright drives it; it cannot download one here)
browser:
	sh .ci/install_browser.sh

demo: install
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/xfbench env
	$(VENV)/bin/xfbench run quick --device cpu --out $(DEMO_OUT)
	@echo "open the report: $(DEMO_OUT)/report.html"

test: install-dev browser
	$(PY) -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/startup.py
	$(PY) bench/fidelity.py
	$(PY) bench/report_speed.py

clean:
	rm -rf $(VENV) build dist *.egg-info runs .pytest_cache

# For a lent GPU machine (no network there): wheels of what its image lacks, for Python 3.12.
# typing_extensions goes to .whl/spare: the image keeps its own unless pydantic needs a newer one.
# Then run `bash bench/gpu_run.sh` there with .whl carried (see bench/gpu_run.sh).
GPU_WHEELS ?= pydantic platformdirs
gpu-wheels:
	rm -rf .whl
	$(PIP) download -q --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl $(GPU_WHEELS)
	mkdir -p .whl/spare && find .whl -maxdepth 1 -name "typing_extensions-*.whl" -exec mv {} .whl/spare/ \;
	ls -R .whl
