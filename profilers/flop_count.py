"""FLOP counting cross-check: run one step under torch's FlopCounterMode, outside timing.

Analytic formulas stay the primary number (DESIGN.md); this counts the GEMMs, convolutions
and attention kernels the step actually dispatched, so a wrong formula (or a wrong N)
shows up as a ratio far from 1. Knows no workload: it needs only `step.run()`.

torch's counter has no formula for the CPU flash-attention kernel
(aten._scaled_dot_product_flash_attention_for_cpu and its backward), so those are
registered here with torch's own SDPA formulas: forward 2 GEMMs (QKᵀ, AV), backward 5
(the scores are recomputed). Like torch's CUDA formulas, they ignore a causal mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils import flop_counter as fc

# counted / analytic outside this band is reported: below, the formula counts work the
# step does not do; above, the step does work the formula leaves out (recomputation in
# attention backward, causal masks the counter cannot see, ...).
RATIO_LOW = 0.95
RATIO_HIGH = 1.25


def _cpu_flash_fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def custom_mapping() -> dict:
    """Formulas for ops torch's FlopCounterMode does not know (only those this torch has)."""
    aten = torch.ops.aten
    mapping = {}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", _cpu_flash_fwd),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_flash_bwd),
    ):
        op = getattr(aten, name, None)
        if op is not None and op not in fc.flop_registry:
            mapping[op] = formula
    return mapping


@dataclass(frozen=True)
class FlopCount:
    """What one counted call did. Unpacks as (total, per_module).

    Args:
        total: FLOPs of the whole call.
        per_module: (module path, FLOPs) rows, 'Global' first, then module paths sorted
            (parents before children); a module's FLOPs include its children's. torch's
            ModuleTracker books a backward pass to a module only when its outputs get
            gradients, so a root that computes its own loss shows forward FLOPs only;
            'Global' always holds everything.
        per_op: FLOPs by aten op over the whole call.
    """

    total: int
    per_module: list[tuple[str, int]]
    per_op: dict[str, int] = field(default_factory=dict)

    def __iter__(self) -> Iterator:
        return iter((self.total, self.per_module))


def count_flops(step, depth: int = 4) -> FlopCount:
    """Run `step.run()` once under FlopCounterMode and return what it counted.

    Args:
        step: anything with run() (a workloads Step); it runs one extra time here.
        depth: deepest module path kept in per_module ('GPT.transformer.h.0' is depth 4).
    """
    with fc.FlopCounterMode(display=False, depth=depth, custom_mapping=custom_mapping()) as counter:
        step.run()
    counts = counter.get_flop_counts()
    per_module = [
        (name, int(sum(ops.values())))
        for name, ops in sorted(counts.items(), key=lambda kv: (kv[0] != "Global", kv[0]))
        if name == "Global" or name.count(".") + 1 <= depth
    ]
    per_op = {str(op): int(v) for op, v in counts.get("Global", {}).items()}
    return FlopCount(int(counter.get_total_flops()), per_module, per_op)


def counted_over_analytic(counted: float, analytic: float) -> float | None:
    """The cross-check ratio; None when either side is missing or zero (nothing countable:
    a CUDA-graph replay dispatches no ops the counter can see)."""
    if not counted or not analytic:
        return None
    return counted / analytic


def check_ratio(ratio: float | None) -> str | None:
    """A one-line warning when the ratio lies outside RATIO_LOW..RATIO_HIGH, else None."""
    if ratio is None:
        return "FLOP count unavailable (no countable ops ran)"
    if ratio < RATIO_LOW or ratio > RATIO_HIGH:
        return (
            f"counted/analytic FLOPs = {ratio:.3f}, outside {RATIO_LOW}..{RATIO_HIGH}: "
            "check the analytic formula and its convention"
        )
    return None
