"""The attention workload: analytic FLOPs, correctness of each implementation, skips, cases."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from xfbench.profilers.device import cache_policy
from xfbench.workloads.attention import (
    ATTENTION_FLOPS,
    ATTENTION_WORK_DENSE,
    ATTENTION_WORK_FUSED,
    LSTM_FLOPS,
    AttentionConfig,
    attention_flops,
    attention_work_flops,
    cases,
    cudnn_rnn_eligible,
    lstm_flops,
    naive_attention,
    prepare,
    sdpa_choice,
)
from xfbench.workloads.base import SkipCase

CPU = torch.device("cpu")


def test_flops_flashattention_convention():
    # 4 * B * H * N^2 * d
    assert attention_flops(2, 8, 1024, 64, causal=False, mode="fwd") == 4 * 2 * 8 * 1024**2 * 64
    assert attention_flops(2, 8, 1024, 64, causal=True, mode="fwd") == 2 * 2 * 8 * 1024**2 * 64
    assert attention_flops(1, 16, 8192, 128, causal=False, mode="fwdbwd") == 3.5 * 4 * 16 * 8192**2 * 128


def test_work_flops_dense_and_fused():
    fwd = 4 * 2 * 8 * 1024**2 * 64
    # naive and math: the full square even when causal, backward 2x (no recompute)
    assert attention_work_flops(2, 8, 1024, 64, causal=True, mode="fwd", fused=False) == fwd
    assert attention_work_flops(2, 8, 1024, 64, causal=True, mode="fwdbwd", fused=False) == 3 * fwd
    # fused kernels: the convention (half the square when causal, backward 2.5x)
    assert attention_work_flops(2, 8, 1024, 64, causal=True, mode="fwdbwd", fused=True) == 3.5 * fwd / 2
    assert attention_work_flops(2, 8, 1024, 64, causal=False, mode="fwd", fused=True) == fwd


def test_lstm_flops():
    # 8 * B * N * D * (D_in + D): 4 gates x (input + recurrent) GEMMs x 2 FLOPs per MAC
    assert lstm_flops(1, 100, 512, 512, "fwd") == 8 * 100 * 512 * 1024
    assert lstm_flops(1, 100, 512, 512, "fwdbwd") == 3 * 8 * 100 * 512 * 1024


@pytest.mark.parametrize("causal", [False, True])
def test_naive_matches_sdpa(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 96, 32, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(96, 96, dtype=torch.bool).triu(1) if causal else None
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(naive_attention(q, k, v, mask), ref)


def cfg(**kw):
    base = dict(seq_lens=[64, 32], impls=["naive", "sdpa", "lstm"], modes=["fwd"], heads=2, head_dim=16)
    return AttentionConfig(**{**base, **kw})


def test_label_holds_every_parameter_that_is_not_swept():
    base = cases(cfg(), CPU)[0].label
    assert base == "attention fwd · float32 · full · B=1 H=2 d=16"
    for other in (dict(batch=2), dict(heads=4), dict(head_dim=32), dict(dtype="bfloat16"), dict(causal=True)):
        assert cases(cfg(**other), CPU)[0].label != base, other


def test_cases_are_ordered_series_with_stable_ids():
    cs = cases(cfg(modes=["fwd", "fwdbwd"]), CPU)
    assert len(cs) == 2 * 3 * 2
    assert [(c.variant, c.size) for c in cs[:3]] == [("naive", 32), ("naive", 64), ("sdpa", 32)]
    assert len({c.id for c in cs}) == len(cs)
    assert cases(cfg(modes=["fwd", "fwdbwd"]), CPU)[0].id == cs[0].id
    assert cs[0].params["dtype"] == "float32"  # auto on CPU


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", ["naive", "sdpa", "math", "lstm"])
def test_every_cpu_impl_prepares_and_runs(impl, mode):
    case = next(c for c in cases(cfg(impls=[impl], modes=[mode], causal=True), CPU) if c.size == 32)
    step = prepare(case, CPU)
    step.run()
    assert step.tokens == 32
    assert step.flops > 0 and step.working_set_bytes > 0
    assert step.info["flop_convention"] == (LSTM_FLOPS if impl == "lstm" else ATTENTION_FLOPS)
    # causal=True: the dense implementations compute the whole square the convention halves
    dense = impl in ("naive", "math")
    assert step.work_flops == step.flops * ((3 / 1.75) if dense and mode == "fwdbwd" else 2 if dense else 1)
    work = {"naive": ATTENTION_WORK_DENSE, "math": ATTENTION_WORK_DENSE, "sdpa": ATTENTION_WORK_FUSED}
    assert step.info["work_flop_convention"] == work.get(impl, LSTM_FLOPS)
    if impl == "sdpa":  # on CPU the dispatcher takes the flash kernel, with and without grad
        assert step.info["sdpa_backend"] == "auto -> flash_attention"


def test_sdpa_choice_asks_the_dispatcher_with_the_real_arguments():
    q = torch.randn(1, 2, 1, 16)
    kv = torch.randn(1, 2, 40, 16)
    mask = (torch.arange(40) <= 20).view(1, 1, 1, 40)
    assert sdpa_choice(q, kv, kv, attn_mask=mask, causal=False, grad=False) == "flash_attention"
    with sdpa_kernel(SDPBackend.MATH):  # the dispatcher's own state is part of its answer
        assert sdpa_choice(q, kv, kv, attn_mask=mask, causal=False, grad=False) == "math"
    # the mask is checked: one the flash kernel cannot broadcast sends the call to math
    bad_mask = torch.ones(3, 3, dtype=torch.bool)
    assert sdpa_choice(q, kv, kv, attn_mask=bad_mask, causal=False, grad=False) == "math"


def test_cudnn_rnn_is_never_claimed_for_a_cpu_tensor():
    assert cudnn_rnn_eligible(torch.ones(2, 3)) is False


def test_fwdbwd_computes_gradients_for_every_input_without_accumulating():
    case = next(c for c in cases(cfg(impls=["naive"], modes=["fwdbwd"]), CPU) if c.size == 32)
    step = prepare(case, CPU)
    q, k, v = step.inputs
    assert all(t.requires_grad for t in (q, k, v))
    seen = []  # the gradients autograd computes for each input, observed by tensor hooks

    def observe(name):
        return lambda g: seen.append((name, g.shape, bool(torch.isfinite(g).all()), float(g.abs().sum())))

    for name, t in zip("qkv", (q, k, v), strict=True):
        t.register_hook(observe(name))
    step.run()
    step.run()
    assert sorted(name for name, *_ in seen) == sorted("qkvqkv")  # every input, on every call
    assert all(shape == q.shape and finite and total > 0 for _, shape, finite, total in seen)
    assert all(t.grad is None for t in (q, k, v))  # dropped at once: nothing accumulates across calls

def test_cpu_ineligible_pinned_backend_is_a_skip_with_reason():
    case = next(c for c in cases(cfg(impls=["efficient"]), CPU))
    with pytest.raises(SkipCase, match="SDPA backend 'efficient' has no kernel for this case on cpu"):
        prepare(case, CPU)


def test_rotate_cycles_distinct_input_copies():
    case = cases(cfg(impls=["sdpa"]), CPU)[0]
    step = prepare(case, CPU)
    step.rotate(3)
    assert len(step._sets) == 3
    assert step._sets[1][0].data_ptr() != step._sets[0][0].data_ptr()
    torch.testing.assert_close(step._sets[1][0], step._sets[0][0])
    for _ in range(4):
        step.run()
    assert step._i == 1


def test_cache_policy_on_cpu_does_not_rotate():
    step = prepare(cases(cfg(impls=["sdpa"]), CPU)[0], CPU)
    p = cache_policy(CPU, step)
    assert p.input_sets == 1 and "CPU steps are timed without rotation" in p.description
