"""FLOP counting cross-check: FlopCounterMode, with the fused SDPA and RNN kernels registered,
against the work FLOPs each implementation executes."""

import pytest
import torch
import torch.nn.functional as F

from xfbench.profilers.flop_count import (
    RATIO_HIGH,
    RATIO_LOW,
    check_ratio,
    count_flops,
    counted_over_work,
    cross_check,
    custom_mapping,
)
from xfbench.reports import model_flops as mf
from xfbench.workloads import attention, model
from xfbench.workloads.base import Step

CPU = torch.device("cpu")
aten = torch.ops.aten


def _step(fn, *inputs, flops=0.0, work_flops=None):
    return Step(fn=fn, inputs=inputs, flops=flops, tokens=0, working_set_bytes=0, work_flops=work_flops)


def test_linear_is_counted_exactly_with_a_per_module_table():
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    counted = count_flops(_step(lin, x))
    assert counted.total == 2 * 4 * 16 * 8
    assert counted.per_module[0] == ("Global", counted.total) and ("Linear", counted.total) in counted.per_module


@pytest.mark.parametrize("causal", [False, True])
def test_cpu_flash_attention_counts_half_the_square_when_causal(causal):
    b, h, n, d = 2, 4, 128, 32
    q = torch.randn(b, h, n, d, requires_grad=True)
    fwd = 4 * b * h * n * n * d // (2 if causal else 1)  # QKᵀ and AV; a causal kernel skips half

    def attend(q):
        return F.scaled_dot_product_attention(q, q, q, is_causal=causal)

    assert count_flops(_step(attend, q)).total == fwd

    def attend_bwd(q):
        attend(q).sum().backward()

    assert count_flops(_step(attend_bwd, q)).total == fwd + 5 * fwd // 2  # backward recomputes: 2.5x


def test_cuda_sdpa_formulas_read_is_causal_where_each_schema_puts_it():
    # Called with shapes, as FlopCounterMode hands them; the dispatcher omits trailing defaults.
    mapping = custom_mapping()
    q = torch.Size([2, 4, 64, 16])
    full_fwd, full_bwd = 4 * 2 * 4 * 64 * 64 * 16, 10 * 2 * 4 * 64 * 64 * 16
    flash, flash_bwd = aten._scaled_dot_product_flash_attention, aten._scaled_dot_product_flash_attention_backward
    assert mapping[flash](q, q, q) == full_fwd  # is_causal left at its default
    assert mapping[flash](q, q, q, 0.0, True) == full_fwd // 2
    # (grad_out, q, k, v, out, logsumexp, cum_seq_q, cum_seq_k, max_q, max_k, dropout_p, is_causal, ...)
    assert mapping[flash_bwd](q, q, q, q, q, q, None, None, 64, 64, 0.0, True, None, None) == full_bwd // 2
    eff, eff_bwd = aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_efficient_attention_backward
    assert mapping[eff](q, q, q, None, True, 0.0, True) == full_fwd // 2  # (q, k, v, bias, lse, p, is_causal)
    assert mapping[eff](q, q, q, None, True) == full_fwd
    assert mapping[eff_bwd](q, q, q, q, None, q, q, None, None, 0.0, [True] * 4, True) == full_bwd // 2
    cudnn_bwd = aten._scaled_dot_product_cudnn_attention_backward
    assert mapping[cudnn_bwd](q, q, q, q, q, q, None, None, None, None, None, 64, 64, 0.0, False) == full_bwd
    # torch's own registry counts these as the full square: the mapping overrides it.
    from torch.utils.flop_counter import flop_registry

    assert flash in flop_registry and mapping[flash] is not flop_registry[flash]


def test_rnn_kernels_count_every_weight_with_every_token():
    b, n, d = 2, 10, 16  # hidden = input = d
    lstm = torch.nn.LSTM(d, d, batch_first=True)
    x = torch.randn(b, n, d)
    with torch.no_grad():
        counted = count_flops(_step(lambda x: lstm(x), x)).total  # oneDNN's mkldnn_rnn_layer on CPU
    assert counted == attention.lstm_flops(b, n, d, d, "fwd") == 8 * b * n * d * (d + d)
    # CUDA's _cudnn_rnn: (input, Tensor[] weight = [w_ih, w_hh, b_ih, b_hh], ...); backward 2x.
    weights = [torch.Size([4 * d, d]), torch.Size([4 * d, d]), torch.Size([4 * d]), torch.Size([4 * d])]
    mapping = custom_mapping()
    assert mapping[aten._cudnn_rnn](torch.Size([n, b, d]), weights) == counted
    assert mapping[aten._cudnn_rnn_backward](torch.Size([n, b, d]), weights) == 2 * counted


def test_ratio_and_its_five_percent_band():
    assert counted_over_work(110, 100) == 1.1
    assert counted_over_work(0, 100) is None and counted_over_work(5, 0) is None
    assert (RATIO_LOW, RATIO_HIGH) == (0.95, 1.05)
    assert check_ratio(1.0) is None and check_ratio(RATIO_LOW) is None and check_ratio(RATIO_HIGH) is None
    assert "outside 0.95..1.05" in check_ratio(0.94) and "outside" in check_ratio(1.06)
    assert "unavailable" in check_ratio(None)


def test_cross_check_compares_with_the_work_not_the_convention():
    lin = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)
    work = 2 * 4 * 16 * 8
    metrics, info, mismatch = cross_check(_step(lin, x, flops=2 * work, work_flops=work))
    assert metrics == {"work_flops_per_call": work, "flops_counted_per_call": work, "flops_counted_over_work": 1.0}
    assert info == {"flops_counted_by_module": {"Global": work, "Linear": work}} and not mismatch
    metrics, _, mismatch = cross_check(_step(lin, x, flops=1.1 * work))  # no work_flops: the convention is the work
    assert metrics["flops_counted_over_work"] == pytest.approx(1 / 1.1) and mismatch


def test_cross_check_reports_why_nothing_was_counted():
    metrics, info, mismatch = cross_check(_step(lambda x: x + 1, torch.ones(3), flops=10.0))
    assert metrics["flops_counted_over_work"] is None and "no countable ops" in info["flops_count_error"]
    assert not mismatch


def test_a_count_torch_refuses_is_noted_not_raised():
    # torch's FlopCounterMode (module tracker) refuses autograd.grad() through nn.LSTM's leaf weights.
    lstm = torch.nn.LSTM(4, 4, batch_first=True)
    x, g = torch.randn(1, 3, 4, requires_grad=True), torch.randn(1, 3, 4)
    step = _step(lambda x: torch.autograd.grad(lstm(x)[0], [x, *lstm.parameters()], g), x, flops=64.0)
    metrics, info, mismatch = cross_check(step)
    assert info["flops_count_error"].startswith("RuntimeError: A leaf node")
    assert metrics["flops_counted_over_work"] is None and not mismatch


# Attention at N=1024 is all attention FLOPs; every CPU implementation, both masks and modes.
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", ["naive", "sdpa", "math", "lstm"])
def test_attention_counted_over_work_within_five_percent(impl, mode, causal):
    cfg = attention.AttentionConfig(seq_lens=[1024], impls=[impl], modes=[mode], causal=causal)
    (case,) = attention.cases(cfg, CPU)
    step = attention.prepare(case, CPU)
    metrics, info, mismatch = cross_check(step)
    step.close()
    assert RATIO_LOW <= metrics["flops_counted_over_work"] <= RATIO_HIGH, (case.name, metrics)
    assert not mismatch and "flops_counted_by_module" in info


# 1M at T (or P, or ctx) = 1024: the attention term is at least 30% of the work, so a work
# formula that dropped it or counted it twice lands far outside the band.
@pytest.mark.parametrize("convention", ["full", "causal"])
@pytest.mark.parametrize("mode", ["train", "prefill", "decode"])
def test_model_counted_over_work_within_five_percent_and_attention_term_matters(mode, convention):
    cfg = model.ModelConfig(
        presets=["1M"], modes=[mode], batch=1, seq_len=1024, prompt_len=1024 if mode == "prefill" else 512,
        new_tokens=512, flop_convention=convention,
    )
    (case,) = model.cases(cfg, CPU)
    step = model.prepare(case, CPU)
    metrics, _, mismatch = cross_check(step)
    step.close()
    p = case.params
    ctx = p["seq_len"] + p.get("new_tokens", 0)
    attn = step.tokens * mf.work_attention_flops_per_token(mode, p["n_layer"], p["n_embd"], p["seq_len"], ctx)
    work, counted = step.work_flops, metrics["flops_counted_per_call"]
    assert attn / work >= 0.30, attn / work
    assert RATIO_LOW <= counted / work <= RATIO_HIGH and not mismatch, (case.name, counted / work)
    assert counted / (work - attn) > RATIO_HIGH  # attention term dropped
    assert counted / (work + attn) < RATIO_LOW  # attention term doubled


def test_table_says_which_flops_are_which():
    from xfbench.reports.schema import Record, TimeStats
    from xfbench.reports.tables import results_tables

    time = TimeStats(
        n=6, calls_per_sample=1, warmup_calls=1, median_s=1e-3, mean_s=1e-3, min_s=1e-3, max_s=1e-3, p10_s=1e-3,
        p90_s=1e-3, iqr_s=0.0, iqr_over_median=0.0, ci_low_s=1e-3, ci_high_s=1e-3, ci_rel=0.0, target_ci_rel=0.02,
        converged=True, total_s=6e-3, clock="perf_counter", samples_s=[1e-3] * 6,
    )

    def rec(variant, work, **metrics):
        return Record(
            case_id=variant, workload="attention", label="attention fwd", variant=variant, size=1024, size_name="N",
            params={}, device="cpu", status="ok", time=time, metrics={"flop_per_s": 1e9, **metrics},
            info={"flop_convention": attention.ATTENTION_FLOPS, "work_flop_convention": work},
        )

    records = [
        rec("naive", attention.ATTENTION_WORK_DENSE, flops_counted_over_work=1.0),
        rec("sdpa", attention.ATTENTION_WORK_FUSED, flops_counted_over_work=0.999),
        rec("math", attention.ATTENTION_WORK_DENSE, flops_counted_over_convention=2.0),  # a migrated v1 record
    ]
    (table,) = results_tables(records)
    cells = [c.text.splitlines()[-1] for c in table.rows[0][1:]]
    assert cells == ["counted/work 1.00", "counted/work 1.00", "counted/convention 2.00"]
    notes = "\n".join(table.notes)
    assert "FLOP/s = convention FLOPs / median" in notes
    assert f"FLOPs (convention): {attention.ATTENTION_FLOPS}" in notes
    assert notes.count("counted/work = ") == 1  # the work conventions of the counted records, once each
    work = [attention.ATTENTION_WORK_FUSED, attention.ATTENTION_WORK_DENSE]
    assert table.notes[-2:] == [f"  work: {w}" for w in work]
