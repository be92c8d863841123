"""Collective bandwidth: all-reduce (and FSDP's all-gather, reduce-scatter) over message sizes.

Bandwidth follows the nccl-tests convention (docs/PERFORMANCE.md of NVIDIA/nccl-tests):
algbw = message bytes / time; busbw = algbw · factor, the factor making busbw comparable
with the hardware's link bandwidth whatever the world size n:
all-reduce 2(n-1)/n, all-gather and reduce-scatter (n-1)/n. The message is the full
buffer: the all-reduce's tensor, the all-gather's output, the reduce-scatter's input.

On gloo the figures show that the collective works on this machine, not what NCCL would do
on GPUs (gloo's reduce-scatter is built from an all-reduce), and the record says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .base import Case, Step, make_params

NAME = "collective"
OPS = ("all_reduce", "all_gather", "reduce_scatter")
ELEMENT = torch.float32
KIB = 1024
# 1 KiB ... 256 MiB in steps of 4x: 10 sizes.
DEFAULT_SIZES = [KIB * 4**i for i in range(10)]
MESSAGE_DEFINITION = (
    "message bytes = the full buffer: the all-reduce's tensor, the all-gather's output, the reduce-scatter's input"
)
BUSBW_FACTORS = {"all_reduce": "2(n-1)/n", "all_gather": "(n-1)/n", "reduce_scatter": "(n-1)/n"}
GLOO_NOTE = (
    "gloo: shows that the collective works here, not what NCCL would do on GPUs "
    "(gloo builds reduce-scatter from an all-reduce)"
)


@dataclass
class CollectiveConfig:
    ops: list[str] = field(default_factory=lambda: ["all_reduce"])
    sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SIZES))  # message bytes
    world_sizes: list[int] = field(default_factory=lambda: [2])


def busbw_factor(op: str, n: int) -> float:
    if op == "all_reduce":
        return 2 * (n - 1) / n
    return (n - 1) / n


def cases(cfg: CollectiveConfig, device: torch.device) -> list[Case]:
    backend = "nccl" if device.type == "cuda" else "gloo"
    out = []
    for op in cfg.ops:
        if op not in OPS:
            raise ValueError(f"unknown collective '{op}' (choose from {', '.join(OPS)})")
    for n in sorted(set(cfg.world_sizes)):
        for op in cfg.ops:
            for size in sorted(set(cfg.sizes)):
                elems = max(n, size // ELEMENT.itemsize // n * n)  # divisible by n (gather/scatter chunks)
                nbytes = elems * ELEMENT.itemsize
                params = make_params(op=op, message_bytes=nbytes, world_size=n, backend=backend, dtype="float32")
                out.append(Case(NAME, f"collectives · {backend} · float32 · {n} ranks", op, nbytes,
                                "message bytes", params, str(device)))
    return out


def launch_group(case: Case) -> tuple:
    """Cases run in one launch: every size of a world size (a launch per size would cost more
    than the sizes' measurements)."""
    p = case.params
    return (NAME, p["world_size"], p["backend"])


def _api(new: str, old: str):
    """torch 2.13 renamed the tensor collectives (*_single) and deprecated the old names."""
    return getattr(dist, new, None) or getattr(dist, old)


def prepare_rank(case: Case, device: torch.device, rank: int) -> Step:
    p = case.params
    op, nbytes, n = p["op"], p["message_bytes"], p["world_size"]
    elems = nbytes // ELEMENT.itemsize
    # Zeros: an in-place sum of zeros stays zero however often it repeats (no overflow to inf).
    if op == "all_reduce":
        buf = torch.zeros(elems, dtype=ELEMENT, device=device)
        fn, args = dist.all_reduce, (buf,)
    elif op == "all_gather":
        inp = torch.zeros(elems // n, dtype=ELEMENT, device=device)
        outp = torch.empty(elems, dtype=ELEMENT, device=device)
        fn, args = _api("all_gather_single", "all_gather_into_tensor"), (outp, inp)
    elif op == "reduce_scatter":
        inp = torch.zeros(elems, dtype=ELEMENT, device=device)
        outp = torch.empty(elems // n, dtype=ELEMENT, device=device)
        fn, args = _api("reduce_scatter_single", "reduce_scatter_tensor"), (outp, inp)
    else:
        raise ValueError(f"unknown collective '{op}'")
    info = {
        "op": op, "call": f"torch.distributed.{getattr(fn, '__name__', op)}", "message_bytes": nbytes,
        "busbw_factor": BUSBW_FACTORS[op],
        "bandwidth_convention": "nccl-tests: algbw = bytes / time, busbw = algbw · factor",
        "message_definition": MESSAGE_DEFINITION,
        "backend": p["backend"],
    }
    if p["backend"] == "gloo":
        info["backend_note"] = GLOO_NOTE
    return Step(fn=fn, inputs=args, flops=0.0, tokens=0, working_set_bytes=nbytes, bytes_moved=float(nbytes),
                info=info)


def bandwidth_metrics(op: str, nbytes: int, n: int, time_s: float) -> dict[str, float | None]:
    algbw = nbytes / time_s if time_s > 0 else None
    return {
        "message_bytes": nbytes,
        "algbw_bytes_per_s": algbw,
        "busbw_bytes_per_s": algbw * busbw_factor(op, n) if algbw is not None else None,
    }


def finish(case: Case, m, extras: dict) -> None:
    p = case.params
    m.metrics.update(bandwidth_metrics(p["op"], p["message_bytes"], p["world_size"], m.time.median_s))
    m.metrics.update(tokens_per_call=None, tokens_per_s=None, flops_per_call=None, flop_per_s=None)
    m.metrics["world_size"] = p["world_size"]


def prepare(case: Case, device: torch.device) -> Step:
    from .base import SkipCase

    raise SkipCase("a collective runs as the ranks of a job (xfbench parallel), not in one process")
