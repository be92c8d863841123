"""The Makefile's torch install on a fresh machine: the CPU pin, then PyTorch's CPU index, never a CUDA build.

Runs the real `$(VENV)/.torch` target with a fake venv python that records each pip call and
fails the first few (no network, no real install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PIN = "torch==2.13.0+cpu"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# `python -c ...` answers the torch version once a pip call succeeded (or FAKE_TORCH is set);
# `python -m pip ...` logs PIP_CONFIG_FILE and its arguments, and fails the first FAKE_FAILS calls.
FAKE_PYTHON = """#!/bin/sh
state=$(dirname "$0")/..
if [ "$1" = "-c" ]; then
  if [ -n "${FAKE_TORCH:-}" ]; then echo "$FAKE_TORCH"; exit 0; fi
  if [ -f "$state/torch-installed" ]; then echo "2.13.0+cpu"; exit 0; fi
  exit 1
fi
echo "PIP_CONFIG_FILE=${PIP_CONFIG_FILE:-} $*" >> "$state/pip-calls"
if [ "$(wc -l < "$state/pip-calls")" -le "${FAKE_FAILS:-0}" ]; then exit 1; fi
touch "$state/torch-installed"
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The repository's Makefile, as if run from a shell (not from inside `make test`)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PIP_CONFIG_FILE")}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True, text=True, env={**clean, **env}, timeout=60,
    )


def make_torch(tmp_path: Path, **fake_env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `make $(VENV)/.torch` with a fake venv in tmp_path; returns the result and the pip calls."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    res = make("-s", f"VENV={venv}", f"{venv}/.torch", **fake_env)
    calls = venv / "pip-calls"
    return res, calls.read_text().splitlines() if calls.exists() else []


def test_an_installed_torch_is_kept(tmp_path):
    res, calls = make_torch(tmp_path, FAKE_TORCH="2.11.0+cu130")
    assert res.returncode == 0, res.stderr
    assert calls == []
    assert res.stdout == "torch: keeping torch 2.11.0+cu130, already installed in this environment\n"
    assert (tmp_path / "venv" / ".torch").exists()


def test_the_pin_through_the_configured_indexes_comes_first(tmp_path):
    res, calls = make_torch(tmp_path)
    assert res.returncode == 0, res.stderr
    assert calls == [f"PIP_CONFIG_FILE= -m pip install -q {PIN}"]
    assert res.stdout == f"torch: installed torch 2.13.0+cpu ({PIN}) through pip's configured indexes\n"


def test_without_a_local_wheel_the_pin_comes_from_the_cpu_index_alone(tmp_path):
    res, calls = make_torch(tmp_path, FAKE_FAILS="1")
    assert res.returncode == 0, res.stderr
    # Only the CPU index: no configuration file, no PIP_* variable can add an index or a wheel folder.
    assert calls[1] == f"PIP_CONFIG_FILE=/dev/null -m pip --isolated install -q --index-url {CPU_INDEX} {PIN}"
    assert len(calls) == 2
    assert res.stdout.splitlines() == [
        f"torch: {PIN} is not available through pip's configured indexes; trying PyTorch's CPU index {CPU_INDEX}",
        f"torch: installed torch 2.13.0+cpu ({PIN}) from PyTorch's CPU index {CPU_INDEX}",
    ]
    assert (tmp_path / "venv" / ".torch").exists()


def test_without_the_pin_on_the_cpu_index_the_newest_torch_there(tmp_path):
    res, calls = make_torch(tmp_path, FAKE_FAILS="2")
    assert res.returncode == 0, res.stderr
    assert calls[2] == f"PIP_CONFIG_FILE=/dev/null -m pip --isolated install -q --index-url {CPU_INDEX} torch"
    assert res.stdout.splitlines()[1:] == [
        f"torch: {PIN} is not on PyTorch's CPU index either; trying the newest torch there",
        f"torch: installed torch 2.13.0+cpu, the newest on PyTorch's CPU index {CPU_INDEX}",
    ]


def test_no_torch_anywhere_stops_make_with_one_hint(tmp_path):
    res, calls = make_torch(tmp_path, FAKE_FAILS="3")
    assert res.returncode != 0
    assert len(calls) == 3
    assert "could not install a CPU build of torch" in res.stderr
    assert "TORCH_CPU=torch==<version>+cpu" in res.stderr
    assert not (tmp_path / "venv" / ".torch").exists()


def test_dry_runs_show_the_install_steps_in_order(tmp_path):
    venv = tmp_path / "fresh"
    out = make("-n", f"VENV={venv}", "demo").stdout.splitlines()
    assert out[:5] == [
        f"python3 -m venv {venv}",
        f'sh .ci/install_torch.sh {venv}/bin/python "{PIN}" {CPU_INDEX}',
        f"touch {venv}/.torch",
        f"{venv}/bin/python -m pip install -q -e .",
        f"touch {venv}/.installed",
    ]
    test = make("-n", f"VENV={venv}", "test").stdout.splitlines()
    assert test[-1] == f"{venv}/bin/python -m pytest -q"
    assert f"{venv}/bin/python -m pip install -q -e '.[dev]'" in test
