"""Shared test helpers: run the real CLI in-process (CliRunner) or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

XFBENCH = str(Path(sys.executable).parent / "xfbench")


def fast_policy(warmup_max_s: float = 0.1):
    """A timer policy for tests that exercise wiring, not the machine: tiny windows, short caps."""
    from xfbench.profilers.timer import TimerPolicy

    return TimerPolicy(
        target_ci_rel=0.05, max_time_s=0.05, min_samples=6, min_window_s=0.002, warmup_min_s=0.01,
        warmup_max_s=warmup_max_s,
    )


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own calibration cache, out of the user's home: no test depends on
    another's cache (or on the order tests run in)."""
    monkeypatch.setenv("XFBENCH_CACHE_DIR", str(tmp_path / "xfbench-cache"))
    monkeypatch.setenv("XFBENCH_HISTORY_DB", str(tmp_path / "xfbench-history.sqlite"))  # never the user's


def assert_no_torch(args: list[str]) -> None:
    """Run the app with `args` in a fresh interpreter; fail if it exits non-zero or imports torch."""
    code = (
        "import sys\n"
        "from xfbench.cli.main import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('NO_TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "NO_TORCH" in out.stdout


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed console script in a fresh process."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [XFBENCH, *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )
