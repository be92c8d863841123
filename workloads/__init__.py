"""What runs: workloads (one module each), their analytic formulas, and the runner loop.

WORKLOADS maps a workload name to its module; a module exposes `NAME`, `cases(config,
device)` and `prepare(case, device) -> Step`. Adding a workload is one file and one line.
Modules import torch, so they are imported lazily by `get_workload`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

WORKLOADS = {
    "attention": "xfbench.workloads.attention",
    "model": "xfbench.workloads.model",
    "parallel": "xfbench.workloads.parallel",
    "collective": "xfbench.workloads.collectives",
    "faulty": "xfbench.workloads.faulty",  # test-only (its cases fail on purpose); no command offers it
}


def get_workload(name: str) -> ModuleType:
    return importlib.import_module(WORKLOADS[name])
