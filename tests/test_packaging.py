"""Packaging: the four code folders install as xfbench.* subpackages and nothing generic leaks."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_holds_only_the_xfbench_package(tmp_path):
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    out = subprocess.run([*cmd, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("xfbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"xfbench"}
    for sub in ("cli", "profilers", "workloads", "reports"):
        assert f"xfbench/{sub}/__init__.py" in names
    assert "xfbench/__init__.py" in names
    # the report's template and the figures' style ship as package data
    assert "xfbench/reports/xfbench.mplstyle" in names
    assert any(n.startswith("xfbench/reports/templates/") and n.endswith(".j2") for n in names)
    assert not any(n.startswith(("xfbench/tests/", "xfbench/bench/")) for n in names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "xfbench = xfbench.cli.main:main" in entry


def test_no_generic_top_level_modules_importable(tmp_path):
    code = (
        "import importlib.util as u\n"
        "import xfbench.cli, xfbench.reports, xfbench.workloads, xfbench.profilers\n"
        "print([m for m in ('cli', 'reports', 'workloads', 'profilers', 'tests') if u.find_spec(m)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
