"""Reports come from the results file alone: reports/ imports neither torch nor workloads/ nor profilers/."""

import subprocess
import sys

# Imports every module of xfbench.reports in this fresh interpreter, then lists what should not be there.
CODE = """
import importlib, pkgutil, sys
import xfbench.reports as reports
names = [m.name for m in pkgutil.walk_packages(reports.__path__, "xfbench.reports.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules
             if m.split(".")[0] == "torch" or m.startswith(("xfbench.workloads", "xfbench.profilers")))
print(len(names), bad)
"""


def test_every_reports_module_imports_without_torch_workloads_or_profilers():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, bad = out.stdout.split(" ", 1)
    assert int(count) >= 14, out.stdout  # the walk found the package's modules (14 when this was written)
    assert bad.strip() == "[]", f"imported by xfbench.reports: {bad}"
