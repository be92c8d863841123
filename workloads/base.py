"""The contracts between workloads and the runner: Case (what to measure) and Step (one call)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..reports.schema import case_id

# A test-only, real slowdown: with XFBENCH_PLANT_SLOWDOWN=0.1 every Step.run() busy-waits, after
# its call returns, for 10% of the time that call took, so the step truly takes 1.1x as long (the
# timer, not an edited number, sees it). It exists to show that `xfbench compare` catches a
# known regression (tests/test_compare_cli.py, the planted slowdown); records say it ran
# (info['planted_slowdown']). On CUDA the call returns before the kernels finish, so it slows the
# host only: a CPU mechanism.
PLANT_ENV = "XFBENCH_PLANT_SLOWDOWN"


def planted_slowdown() -> float:
    """The planted slowdown fraction from the environment (0: none); ValueError if malformed."""
    text = os.environ.get(PLANT_ENV, "").strip()
    if not text:
        return 0.0
    value = float(text)
    if not 0.0 <= value <= 10.0:
        raise ValueError(f"{PLANT_ENV}={text}: give a fraction between 0 and 10")
    return value


class SkipCase(Exception):
    """Raised by a workload's prepare() when a case cannot run here (reason in the message)."""


@dataclass(frozen=True)
class Case:
    """Frozen, hashable description of one measurement.

    Args:
        workload: registry name of the workload ('attention').
        label: groups cases into one table (e.g. 'attention fwd float32 causal=False').
        variant: one series within the table (e.g. the implementation 'sdpa').
        size: the swept value (e.g. seq_len); larger sizes of a series are skipped after OOM.
        size_name: display name of the swept value ('N').
        param_items: all parameters as sorted (name, value) pairs (hashable); they define the id.
        device: the resolved device string ('cpu', 'cuda:0').
    """

    workload: str
    label: str
    variant: str
    size: int
    size_name: str
    param_items: tuple[tuple[str, Any], ...]
    device: str

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as a dict (a copy: the Case stays frozen)."""
        return dict(self.param_items)

    @property
    def id(self) -> str:
        return case_id(self.workload, self.params, self.device)

    @property
    def series(self) -> tuple[str, str, str]:
        """Cases of one series differ only in size."""
        return (self.workload, self.label, self.variant)

    @property
    def name(self) -> str:
        return f"{self.label} · {self.variant} · {self.size_name}={self.size}"


def make_params(**kw: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kw.items()))


@dataclass
class Step:
    """One iteration of a workload, ready to run.

    Args:
        fn: called as fn(*inputs) by run(); its result is dropped.
        inputs: tensors for one call; rotate() makes copies to cycle through.
        flops: analytic FLOPs of one call in the named convention (info['flop_convention']);
            FLOP/s and MFU divide this.
        tokens: tokens processed by one call.
        working_set_bytes: bytes one call must read at least (inputs, weights), for the
            cache policy and the cache-residency flag.
        bytes_moved: ideal memory traffic of one call (each input read once, each output
            written once), for arithmetic intensity and bandwidth floors; None if unknown.
        work_flops: analytic FLOPs the implementation actually dispatches (dense GEMM shapes
            as executed: recomputation, masked blocks computed or skipped), the quantity
            torch's FlopCounterMode is compared with (info['work_flop_convention']); None
            when it equals `flops`.
        traffic: what kind of traffic bytes_moved is, so its floor divides by the bandwidth
            of the same kind: 'read' (read-dominated, e.g. decode reading weights and KV
            cache) or 'read_write' (reads and writes, against copy bandwidth).
        info: which code path runs (backend, dtype, ...), stored in the record.
        teardown: optional cleanup.
    """

    fn: Callable[..., Any]
    inputs: tuple[Any, ...]
    flops: float
    tokens: int
    working_set_bytes: int
    bytes_moved: float | None = None
    work_flops: float | None = None
    traffic: str = "read_write"
    info: dict[str, Any] = field(default_factory=dict)
    teardown: Callable[[], None] | None = None
    _sets: list[tuple[Any, ...]] = field(default_factory=list, repr=False)
    _i: int = 0
    _slowdown: float = field(default_factory=planted_slowdown, repr=False)

    def __post_init__(self) -> None:
        if self._slowdown:
            self.info["planted_slowdown"] = self._slowdown

    def run(self) -> None:
        if self._sets:
            inputs = self._sets[self._i]
            self._i = (self._i + 1) % len(self._sets)
        else:
            inputs = self.inputs
        if not self._slowdown:
            self.fn(*inputs)
            return
        t0 = time.perf_counter()
        self.fn(*inputs)
        end = time.perf_counter() + self._slowdown * (time.perf_counter() - t0)
        while time.perf_counter() < end:  # busy: the core stays taken, as slower code would keep it
            pass

    def rotate(self, n: int) -> None:
        """Cycle through n distinct input sets (copies of the first) on successive calls."""

        def copy(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.detach().clone().requires_grad_(x.requires_grad)
            return x

        self._sets = [self.inputs] + [tuple(copy(x) for x in self.inputs) for _ in range(n - 1)]
        self._i = 0

    def close(self) -> None:
        if self.teardown is not None:
            self.teardown()
        self._sets = []
        self.inputs = ()
