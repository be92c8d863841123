"""FLOP counting cross-check: run one step under torch's FlopCounterMode, outside timing.

Analytic formulas stay the primary number (DESIGN.md). This counts the GEMMs and attention
kernels one call actually dispatched and compares them with the step's *work* FLOPs (what
its implementation executes: recomputation, masked blocks computed or skipped), not with
the convention FLOPs that FLOP/s and MFU use, so a wrong formula (or a wrong N) shows up
as a ratio outside ±5%. Knows no workload: it needs only `step.run()` and the FLOP fields.

torch's own formulas count every fused SDPA kernel as the full N² square ("We aren't
accounting for causal attention here", torch/utils/flop_counter.py) and have none for
the CPU flash kernel or the fused RNN kernels. custom_mapping() registers formulas for
those ops (FlopCounterMode lets them override torch's registry):
  * fused SDPA (CPU flash; CUDA flash, efficient, cuDNN), forward and backward: torch's
    sdpa_flop_count / sdpa_backward_flop_count (2 GEMMs forward, 5 backward: the scores
    are recomputed), halved when the call's is_causal is set, because these kernels skip
    the blocks above the diagonal. The math backend and hand-written attention run plain
    bmm, which torch counts densely (a causal mask is applied after the full GEMM).
  * LSTM kernels (CPU oneDNN mkldnn_rnn_layer, CUDA _cudnn_rnn) and their backward:
    2 FLOPs per multiply-add of every 2-D weight (input, recurrent, projection) with every
    token; backward twice that (input and weight gradients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import flop_counter as fc

# counted / work outside this band is a mismatch. Both sides count the same GEMMs, so they
# agree to well under 1% on a correct formula (biases and LayerNorm are not GEMM work on
# either side); ±5% leaves room for small terms a formula rounds away and nothing more.
RATIO_LOW = 0.95
RATIO_HIGH = 1.05

# Fused SDPA ops that take is_causal: name -> whether it is a backward (grad_out first).
# Argument layouts: aten/src/ATen/native/native_functions.yaml (the position of is_causal
# is read from each op's schema, since the dispatcher drops trailing default arguments).
SDPA_OPS = {
    "_scaled_dot_product_flash_attention_for_cpu": False,
    "_scaled_dot_product_flash_attention_for_cpu_backward": True,
    "_scaled_dot_product_flash_attention": False,
    "_scaled_dot_product_flash_attention_backward": True,
    "_scaled_dot_product_efficient_attention": False,
    "_scaled_dot_product_efficient_attention_backward": True,
    "_scaled_dot_product_cudnn_attention": False,
    "_scaled_dot_product_cudnn_attention_backward": True,
}
# Fused RNN ops: name -> (index of the weights, how many positional weight tensors or None
# for a Tensor[] list, whether it is a backward). input is argument 0 of each.
RNN_OPS = {
    "mkldnn_rnn_layer": (1, 4, False),  # (input, weight0..3, ...): w_ih, w_hh, b_ih, b_hh
    "mkldnn_rnn_layer_backward": (1, 4, True),  # (input, weight1..4, ...)
    "_cudnn_rnn": (1, None, False),  # (input, Tensor[] weight, ...)
    "_cudnn_rnn_backward": (1, None, True),
}


def _sdpa_formula(op, backward: bool):
    schema = op.default._schema
    at = [a.name for a in schema.arguments].index("is_causal")
    default = bool(schema.arguments[at].default_value)

    def formula(*args, out_shape=None, **kwargs) -> int:
        causal = args[at] if len(args) > at else kwargs.get("is_causal", default)
        if backward:
            flops = fc.sdpa_backward_flop_count(args[0], args[1], args[2], args[3])
        else:
            flops = fc.sdpa_flop_count(args[0], args[1], args[2])
        # Causal kernels skip the tiles above the diagonal: half the square (the diagonal
        # tiles are computed whole, so the real work is slightly more for small N).
        return flops // 2 if causal else flops

    return formula


def _rnn_formula(first: int, count: int | None, backward: bool):
    def formula(*args, out_shape=None, **kwargs) -> int:
        weights = args[first : first + count] if count is not None else args[first]
        tokens = math.prod(args[0][:-1])  # (N, B, in), (B, N, in) or packed (sum of lengths, in)
        macs = tokens * sum(math.prod(w) for w in weights if w is not None and len(w) == 2)
        return 2 * macs * (2 if backward else 1)

    return formula


def custom_mapping() -> dict:
    """Formulas for the fused SDPA and RNN ops (those this torch has), overriding torch's."""
    aten = torch.ops.aten
    mapping = {}
    for name, backward in SDPA_OPS.items():
        op = getattr(aten, name, None)
        if op is not None:
            mapping[op] = _sdpa_formula(op, backward)
    for name, (first, count, backward) in RNN_OPS.items():
        op = getattr(aten, name, None)
        if op is not None:
            mapping[op] = _rnn_formula(first, count, backward)
    return mapping


@dataclass(frozen=True)
class FlopCount:
    """What one counted call did.

    Args:
        total: FLOPs of the whole call.
        per_module: (module path, FLOPs) rows, 'Global' first, then module paths sorted
            (parents before children); a module's FLOPs include its children's. torch's
            ModuleTracker books a backward pass to a module only when its outputs get
            gradients, so a root that computes its own loss shows forward FLOPs only;
            'Global' always holds everything.
    """

    total: int
    per_module: list[tuple[str, int]]


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
    return FlopCount(int(counter.get_total_flops()), per_module)


def counted_over_work(counted: float, work: float) -> float | None:
    """The cross-check ratio; None when either side is missing or zero (nothing countable:
    a CUDA-graph replay dispatches no ops the counter can see)."""
    if not counted or not work:
        return None
    return counted / work


def check_ratio(ratio: float | None) -> str | None:
    """A one-line warning when the ratio lies outside RATIO_LOW..RATIO_HIGH, else None."""
    if ratio is None:
        return "FLOP count unavailable (no countable ops ran)"
    if ratio < RATIO_LOW or ratio > RATIO_HIGH:
        return (
            f"counted/work FLOPs = {ratio:.3f}, outside {RATIO_LOW}..{RATIO_HIGH}: "
            "check the work formula and its convention"
        )
    return None


def cross_check(step: Any, depth: int = 4) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Count one more call of `step` (a pass of its own, never inside timing) and compare it
    with the work the implementation dispatches.

    Args:
        step: a workloads Step: run(), flops, work_flops (None: equal to flops).
        depth: deepest module path kept in the per-module counts.

    Returns:
        metrics: work_flops_per_call, flops_counted_per_call and flops_counted_over_work
            (None when nothing countable ran or the count failed).
        info: flops_counted_by_module, or flops_count_error saying why nothing was counted.
        mismatch: True when counted/work lies outside RATIO_LOW..RATIO_HIGH.
    """
    work = step.work_flops if step.work_flops is not None else step.flops
    metrics: dict[str, Any] = {"work_flops_per_call": work, "flops_counted_per_call": None,
                               "flops_counted_over_work": None}
    try:
        counted = count_flops(step, depth)
    except RuntimeError as e:  # a cross-check that cannot run must not fail the measured case
        # (e.g. torch's module tracker refuses autograd.grad() through an nn.Module's leaves)
        return metrics, {"flops_count_error": f"{type(e).__name__}: {str(e).splitlines()[0]}"[:300]}, False
    ratio = counted_over_work(counted.total, work)
    metrics.update(flops_counted_per_call=counted.total or None, flops_counted_over_work=ratio)
    if ratio is None:
        return metrics, {"flops_count_error": check_ratio(None)}, False
    return metrics, {"flops_counted_by_module": dict(counted.per_module)}, check_ratio(ratio) is not None
