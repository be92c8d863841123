"""Environment capture, gathered in one function (the header of every results file)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
import torch

from .contention import load_average, usable_cores
from .nvml import nvml_status


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_governor() -> str | None:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_info(cwd: str | Path = ".") -> dict[str, Any]:
    """Top-level folder, commit and dirty flag of the git checkout that holds `cwd` (None values if none)."""
    cwd = Path(cwd)
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return {"toplevel": None, "commit": None, "dirty": None}
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return {"toplevel": _git(cwd, "rev-parse", "--show-toplevel"), "commit": commit,
            "dirty": bool(status) if status is not None else None}


def provenance(cwd: str | Path = ".") -> dict[str, dict[str, Any]]:
    """Who measured, for the results header: xfbench itself and the directory it ran in.

    xfbench's commit is that of its own source folder, and only when that folder is the top
    of a checkout (an editable install of the xfbench repository); an installed package
    inside some other repository must not borrow that repository's commit.
    """
    from .. import __version__

    source = Path(__file__).resolve().parents[1]
    own = git_info(source)
    mine = own["toplevel"] is not None and Path(own["toplevel"]).resolve() == source
    workdir = git_info(cwd)
    return {
        "xfbench": {
            "version": __version__, "source": str(source),
            "commit": own["commit"] if mine else None, "dirty": own["dirty"] if mine else None,
        },
        "workdir": {"path": str(Path(cwd).resolve()), "commit": workdir["commit"], "dirty": workdir["dirty"]},
    }


def cuda_devices() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(
            {
                "index": i,
                "name": p.name,
                "total_memory_bytes": int(p.total_memory),
                "compute_capability": f"{p.major}.{p.minor}",
                "multiprocessors": p.multi_processor_count,
                "l2_cache_bytes": int(getattr(p, "L2_cache_size", 0)) or None,
                "uuid": str(getattr(p, "uuid", "")) or None,
            }
        )
    return out


def collect_environment(calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that can change a measurement: software, hardware, threads, NVML.

    `calibration` is the summary of the peaks a sweep is measured against (None: none used).
    """
    vm = psutil.virtual_memory()
    load = load_average()
    nvml = nvml_status()
    devices = cuda_devices()
    nccl = None
    if torch.cuda.is_available() and hasattr(torch.cuda, "nccl"):
        try:
            nccl = ".".join(map(str, torch.cuda.nccl.version()))
        except (RuntimeError, AttributeError):
            nccl = None
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "nccl": nccl,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": devices,
        "device_uuids": [d["uuid"] for d in devices] or [d["uuid"] for d in nvml.devices],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu_model": cpu_model(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_affinity": usable_cores(),
        "cpu_governor": cpu_governor(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "ram_bytes": vm.total,
        "load_avg": list(load) if load else None,
        "driver_version": nvml.driver_version,
        "nvml": asdict(nvml),
        "calibration": calibration,
    }
