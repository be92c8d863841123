"""Analytic FLOP and memory formulas of the GPT workload, on literal inputs with exact results."""

import pytest
import torch

from xfbench.reports import model_flops as mf
from xfbench.workloads import model_memory as mm
from xfbench.workloads.gpt import GPT, GPTConfig
from xfbench.workloads.model import ModelConfig, cases, prepare


def test_train_flops_per_token_palm_formula():
    # 6N + 12·L·d·T = 6000 + 12·2·8·16
    assert mf.train_flops_per_token(1000, 2, 8, 16, "full") == 9072
    assert mf.train_flops_per_token(1000, 2, 8, 16, "causal") == 6000 + 1536


def test_prefill_and_decode_flops_per_token():
    assert mf.prefill_flops_per_token(1000, 2, 8, 16, "full") == 2000 + 1024
    assert mf.prefill_flops_per_token(1000, 2, 8, 16, "causal") == 2000 + 512
    assert mf.decode_flops_per_token(1000, 2, 8, 32) == 2000 + 2048  # one query, ctx keys: no halving


def test_gpt2_124m_matches_nanogpt_estimate_mfu():
    # nanoGPT: flops_per_token = 6*N + 12*L*H*Q*T with N = get_num_params() (no position table).
    n = 124_475_904 - 1024 * 768  # without the position table
    assert n == 123_689_472
    assert mf.train_flops_per_token(n, 12, 768, 1024) == 855_383_040
    assert mf.prefill_flops_per_token(n, 12, 768, 1024) == 285_127_680


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown FLOP convention"):
        mf.attention_fwd_flops_per_token(1, 1, 1, "half")
    with pytest.raises(ValueError, match="unknown mode"):
        mf.work_flops_per_token("sample", 1, 1, 1, 1, 1)


def test_gemm_params_are_the_models_matmul_weights():
    gc = GPTConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=16)
    gpt = GPT(gc)
    weights = {id(m.weight): m.weight.numel() for m in gpt.modules() if isinstance(m, torch.nn.Linear)}
    assert mf.gemm_params(2, 32, 64) == sum(weights.values()) == 12 * 2 * 32**2 + 64 * 32  # tied head once


def test_work_flops_per_token():
    # W = 1000, L = 2, d = 8, T = 16: attention 4·L·d·T = 1024 forward over the full square
    assert mf.work_flops_per_token("train", 1000, 2, 8, 16, 99) == 6000 + 3.5 * 512  # fused causal: half, 3.5x
    assert mf.work_flops_per_token("train", 1000, 2, 8, 16, 99, fused=False) == 6000 + 3 * 1024  # math: full, 2x bwd
    assert mf.work_flops_per_token("prefill", 1000, 2, 8, 16, 99) == 2000 + 512
    assert mf.work_flops_per_token("prefill", 1000, 2, 8, 16, 99, fused=False) == 2000 + 1024
    assert mf.work_flops_per_token("decode", 1000, 2, 8, 16, 32) == 2000 + 2048  # one query, all ctx keys
    assert mf.work_attention_flops_per_token("decode", 2, 8, 16, 32, fused=False) == 2048
    assert "7·L·d·T" in mf.work_convention_text("train", True) and "12·L·d·T" in mf.work_convention_text("train", False)
    assert "diagonal tiles" in mf.work_convention_text("prefill", True)
    decode = mf.work_convention_text("decode", True)
    assert "diagonal" not in decode and "4·L·d·ctx" in decode


def test_attention_share():
    assert mf.attention_share(1000, 2, 8, 16) == 3072 / 9072
    assert mf.attention_share(1000, 2, 8, 16, "causal") == 1536 / 7536


def test_decode_attention_share_uses_the_whole_context():
    custom = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=64)
    cfg = ModelConfig(presets=[], modes=["decode"], batch=1, seq_len=16, prompt_len=8, new_tokens=24, custom=custom)
    (case,) = cases(cfg, torch.device("cpu"))
    step = prepare(case, torch.device("cpu"))
    n = step.info["n_flop_params"]
    assert step.info["attention_share"] == mf.attention_share(n, 2, 32, 8 + 24)  # ctx = P + M, not P
    step.close()


def test_convention_text_names_formula_and_choice():
    assert "6N + 12·L·d·T" in mf.convention_text("train", "full") and "full attention" in mf.convention_text(
        "train", "full"
    )
    assert "halved (causal)" in mf.convention_text("prefill", "causal")
    assert "ctx" in mf.convention_text("decode", "causal") and "halved" not in mf.convention_text("decode", "causal")


def test_activation_formulas():
    s, b, h, a = 1024, 8, 768, 12
    # 16-bit, fused SDPA, no dropout: 34·sbh + 4·asb (fp32 log-sum-exp), no s² term: the sbh part of
    # Korthikanti's eq. (1) s·b·h·(34 + 5·a·s/h) without its stored scores (see model_memory's doc).
    assert mm.layer_activation_bytes(s, b, h, a, e_act=2) == 214_302_720
    # autocast: residual stream fp32 (2 tensors x 4 B), the other 15 in bf16.
    assert mm.layer_activation_bytes(s, b, h, a, e_act=2, e_res=4) == s * b * h * 38 + 4 * a * s * b


def test_kv_cache_bytes():
    assert mm.kv_cache_bytes(n_layer=12, batch=8, ctx=1024, d_model=768, elt=2) == 301_989_888


def test_train_memory_is_16_bytes_per_param_of_model_states():
    est = mm.train_memory(
        n_params=1000, n_flop=900, n_layer=2, n_head=2, d_model=8, vocab=16, batch=2, seq_len=4, e_act=4,
        autocast=False, optimizer_temp=False,
    )
    states = est.persistent["weights"] + est.persistent["optimizer_states"] + est.step["grads"]
    assert states == 16 * 1000
    acts = 2 * mm.layer_activation_bytes(4, 2, 8, 2, 4) + 2 * 4 * 2 * 8 * 4
    assert est.step["activations"] == acts
    assert est.step["logits"] == 3 * 2 * 4 * 16 * 4
    assert est.step_bytes == 4000 + acts + est.step["logits"]
    assert est.total_bytes == 12_000 + est.step_bytes
    info = est.info()
    assert info["mem_analytic_bytes"] == est.total_bytes and info["mem_breakdown"]["grads"] == 4000


def test_train_memory_optimizer_phase_can_dominate_and_autocast_adds_copies():
    est = mm.train_memory(
        n_params=10**6, n_flop=10**6, n_layer=1, n_head=1, d_model=4, vocab=4, batch=1, seq_len=1, e_act=2,
        autocast=True, optimizer_temp=True,
    )
    assert est.step["autocast_weight_copies"] == 2 * 10**6
    # activations + logits + copies (about 2 MB) < foreach temporaries (4 MB)
    assert est.step_bytes == est.step["grads"] + est.step["optimizer_temporaries"]


def test_decode_and_prefill_memory():
    dec = mm.decode_memory(n_params=100, n_layer=2, d_model=8, vocab=16, batch=3, ctx=10, elt=2)
    assert dec.persistent == {"weights": 200, "kv_cache": 2 * 2 * 3 * 10 * 8 * 2}
    assert dec.step_bytes == 3 * 16 * 2 + 10 * 3 * 8 * 2
    pre = mm.prefill_memory(n_params=100, d_model=8, vocab=16, batch=2, seq_len=5, elt=4)
    assert pre.step_bytes == 10 * 5 * 2 * 8 * 4 + 2 * 5 * 16 * 4


@pytest.mark.parametrize("mode", ["train", "prefill", "decode"])
def test_step_flops_and_tokens_per_call(mode):
    custom = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=64)
    (case,) = cases(ModelConfig(presets=[], modes=[mode], batch=3, seq_len=16, custom=custom), torch.device("cpu"))
    step = prepare(case, torch.device("cpu"))
    n = step.info["n_flop_params"]
    assert n == step.info["n_params"] - case.params["block_size"] * 32  # custom context: 256 positions
    w = 12 * 2 * 32**2 + 64 * 32  # GEMM weights
    if mode == "train":
        assert step.tokens == 3 * 16 and step.flops == 3 * 16 * (6 * n + 12 * 2 * 32 * 16)
        assert step.work_flops == 3 * 16 * (6 * w + 3.5 * 2 * 2 * 32 * 16)  # fused causal SDPA
    elif mode == "prefill":
        assert step.tokens == 3 * 8 and step.flops == 3 * 8 * (2 * n + 4 * 2 * 32 * 8)
        assert step.work_flops == 3 * 8 * (2 * w + 2 * 2 * 32 * 8)
    else:
        assert step.tokens == 3 and step.flops == 3 * (2 * n + 4 * 2 * 32 * 16)  # ctx = P + M = 8 + 8
        assert step.work_flops == 3 * (2 * w + 4 * 2 * 32 * 16)
        assert step.bytes_moved == 4 * n + 2 * 2 * 3 * 16 * 32 * 4  # fp32 weights + whole cache
    step.close()
