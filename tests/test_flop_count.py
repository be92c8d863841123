"""FLOP counting cross-check: FlopCounterMode (with the CPU flash kernel registered) vs analytic."""

import pytest
import torch
import torch.nn.functional as F

from xfbench.profilers.flop_count import (
    RATIO_HIGH,
    RATIO_LOW,
    check_ratio,
    count_flops,
    counted_over_analytic,
    custom_mapping,
)
from xfbench.workloads.base import Step
from xfbench.workloads.model import ModelConfig, cases, prepare

CPU = torch.device("cpu")


def _step(fn, *inputs):
    return Step(fn=fn, inputs=inputs, flops=0.0, tokens=0, working_set_bytes=0)


def test_linear_is_counted_exactly_with_a_per_module_table():
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    total, per_module = count_flops(_step(lin, x))  # unpacks as (total, per_module)
    assert total == 2 * 4 * 16 * 8
    assert per_module[0] == ("Global", total) and ("Linear", total) in per_module


def test_cpu_flash_attention_is_counted_forward_and_backward():
    b, h, n, d = 2, 4, 128, 32
    q = torch.randn(b, h, n, d, requires_grad=True)
    fwd = 4 * b * h * n * n * d  # QKᵀ and AV, causal mask not seen (as torch's CUDA formulas)

    def attend(q):
        return F.scaled_dot_product_attention(q, q, q, is_causal=True)

    assert count_flops(_step(attend, q)).total == fwd

    def attend_bwd(q):
        attend(q).sum().backward()

    assert count_flops(_step(attend_bwd, q)).total == fwd + 5 * fwd // 2  # backward recomputes: 2.5x


def test_custom_mapping_only_adds_ops_torch_lacks():
    mapping = custom_mapping()
    assert all(str(op).startswith("aten._scaled_dot_product_flash_attention_for_cpu") for op in mapping)


def test_ratio_and_its_check():
    assert counted_over_analytic(110, 100) == 1.1
    assert counted_over_analytic(0, 100) is None and counted_over_analytic(5, 0) is None
    assert check_ratio(1.1) is None and check_ratio(RATIO_LOW) is None and check_ratio(RATIO_HIGH) is None
    assert "outside 0.95..1.25" in check_ratio(0.9) and "outside" in check_ratio(1.3)
    assert "unavailable" in check_ratio(None)


# Small B and T keep the 25M training step under a second; the ratio does not depend on B.
@pytest.mark.parametrize("mode", ["train", "prefill", "decode"])
@pytest.mark.parametrize("convention", ["full", "causal"])
def test_counted_over_analytic_for_every_tiny_preset(mode, convention):
    cfg = ModelConfig(presets=["1M", "10M", "25M"], modes=[mode], batch=2, seq_len=64, flop_convention=convention)
    for case in cases(cfg, CPU):
        step = prepare(case, CPU)
        counted = count_flops(step)
        ratio = counted_over_analytic(counted.total, step.flops)
        assert check_ratio(ratio) is None, (case.name, ratio)
        assert "aten._scaled_dot_product_flash_attention_for_cpu" in counted.per_op
        step.close()
