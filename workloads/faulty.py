"""A test-only workload whose cases fail on purpose: segfault, abort, hang, exit, raise, hog, or run.

It exists to show that --isolate turns a crashing, aborting, hanging or killed case into that
case's record while the sweep goes on (tests/test_isolate.py, tests/test_interrupts.py). No
command offers it: tests build its cases (`cases(FaultyConfig([...]), device)`) and run them
through the library (`run_plan(..., opts=RunOptions(isolate=True, ...))`), as `xfbench
parallel --fault` is the test-only way to break a rank. Without isolation a fault takes the
sweep's own process down, which is what isolation is for.

Each fault fires in the step's first call, inside the timer's warm-up, as a real bug would.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass, field

import torch

from .base import Case, Step, make_params

NAME = "faulty"
LABEL = "faulty (test-only)"
# ok: a tiny in-place add; segfault: reads address 0 (SIGSEGV); abort: os.abort() (SIGABRT);
# hang: sleeps forever; exit: os._exit(EXIT_CODE), as native code calling exit() would;
# raise: a Python exception (an error record even in-process); hog: touches `hog_bytes` of
# memory, then SIGKILLs itself, as the kernel's OOM killer would.
KINDS = ("ok", "segfault", "abort", "hang", "exit", "raise", "hog")
EXIT_CODE = 5
# A page is touched per this many bytes (Linux's page size on x86 and most arm64).
PAGE_BYTES = 4096


@dataclass
class FaultyConfig:
    """Cases in this order, one per kind (size = its position, so every case has its own id)."""

    kinds: list[str] = field(default_factory=lambda: ["ok"])
    elements: int = 1024  # of the float32 tensor `ok` adds to
    hog_bytes: int = 64 * 2**20  # what `hog` touches before it kills itself


def cases(cfg: FaultyConfig, device: torch.device) -> list[Case]:
    bad = [k for k in cfg.kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown fault kind(s) {', '.join(bad)} (one of {', '.join(KINDS)})")
    return [
        Case(NAME, LABEL, kind, i + 1, "case",  # its 1-based place: sizes are > 0 (schema.Record)
             make_params(kind=kind, index=i, elements=cfg.elements, hog_bytes=cfg.hog_bytes, dtype="float32"),
             str(device))
        for i, kind in enumerate(cfg.kinds)
    ]


def _hog(n: int) -> None:
    buf = bytearray(n)
    buf[::PAGE_BYTES] = b"\x01" * len(range(0, n, PAGE_BYTES))  # resident, not only mapped
    os.kill(os.getpid(), signal.SIGKILL)


def _fault(kind: str, hog_bytes: int):
    def fire(x: torch.Tensor) -> None:
        if kind == "segfault":
            ctypes.string_at(0)
        elif kind == "abort":
            os.abort()
        elif kind == "hang":
            while True:
                time.sleep(3600)
        elif kind == "exit":
            os._exit(EXIT_CODE)
        elif kind == "raise":
            raise RuntimeError("injected failure (faulty workload)")
        elif kind == "hog":
            _hog(hog_bytes)
        x.add_(1.0)

    return fire


def prepare(case: Case, device: torch.device) -> Step:
    p = case.params
    x = torch.zeros(p["elements"], dtype=torch.float32, device=device)
    nbytes = x.numel() * x.element_size()
    return Step(
        fn=_fault(p["kind"], p["hog_bytes"]), inputs=(x,), flops=float(x.numel()), tokens=1,
        working_set_bytes=nbytes, bytes_moved=2.0 * nbytes,
        info={"dtype": "float32", "fault": p["kind"], "flop_convention": "one add per element (test-only)"},
    )
