"""The environment dict (profilers.env.collect_environment) as a format-neutral table."""

from __future__ import annotations

from typing import Any

from .tables import Cell, Table
from .units import fmt_bytes


def environment_table(env: dict[str, Any]) -> Table:
    nv = env.get("nvml") or {}
    rows = [
        ("host", env.get("hostname")),
        ("os", env.get("os")),
        ("python", env.get("python")),
        ("torch", env.get("torch")),
        ("CUDA / cuDNN / NCCL", f"{env.get('cuda')} / {env.get('cudnn')} / {env.get('nccl')}"),
        ("CPU", env.get("cpu_model")),
        (
            "cores (physical / logical / usable)",
            f"{env.get('cpu_cores_physical')} / {env.get('cpu_cores_logical')} / {env.get('cpu_affinity')}",
        ),
        ("torch threads (intra / inter-op)", f"{env.get('torch_threads')} / {env.get('torch_interop_threads')}"),
        ("CPU governor", env.get("cpu_governor") or "not readable"),
        ("RAM", fmt_bytes(env.get("ram_bytes"))),
    ]
    devices = env.get("cuda_devices") or []
    if not devices:
        rows.append(("CUDA devices", "none"))
    for d in devices:
        rows.append(
            (
                f"cuda:{d['index']}",
                f"{d['name']} · {fmt_bytes(d['total_memory_bytes'])} · cc {d['compute_capability']}"
                f" · {d['multiprocessors']} SMs · L2 {fmt_bytes(d.get('l2_cache_bytes'))}"
                + (f" · {d['uuid']}" if d.get("uuid") else ""),
            )
        )
    rows.append(
        (
            "NVML",
            f"usable (driver {nv.get('driver_version')}, {nv.get('device_count')} devices)"
            if nv.get("usable")
            else f"not usable: {nv.get('reason')}",
        )
    )
    if env.get("load_avg"):
        rows.append(("load average (1 / 5 / 15 min)", " / ".join(f"{x:.2f}" for x in env["load_avg"])))
    cal = env.get("calibration")
    if cal:
        rows.append(("calibration", cal.get("path") or cal.get("source")))
    def commit(where: dict) -> str:
        c = where.get("commit")
        return f"{c}{' (dirty)' if where.get('dirty') else ''}" if c else "not a git checkout"

    own = env.get("xfbench")
    if own:
        rows.append(("xfbench", f"{own.get('version')} · {own.get('source')} · {commit(own)}"))
    workdir = env.get("workdir")
    if workdir:
        rows.append(("working directory", f"{workdir.get('path')} · {commit(workdir)}"))
    return Table("environment", ["what", "value"], [[Cell(k), Cell(str(v))] for k, v in rows])
