"""The GPT workload: preset sizes, KV-cache correctness, cases, steps and compile detection."""

import pytest
import torch

from xfbench.workloads import get_workload
from xfbench.workloads.attention import sdpa_choice
from xfbench.workloads.base import SkipCase
from xfbench.workloads.gpt import GPT, PRESETS, STATED_PARAMS, GPTConfig, param_count
from xfbench.workloads.model import ModelConfig, cases, prepare, sdpa_probe
from xfbench.workloads.model_steps import CompileCounter, Decoder, warm_compiled

CPU = torch.device("cpu")
# Every preset's total parameter count (token and position embeddings included, as
# GPT-2's "124M" counts them) lies within this fraction of the size its name states.
PRESET_TOLERANCE = 0.10
TINY = GPTConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=32)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_count_matches_its_name(name):
    n = param_count(GPTConfig(**PRESETS[name]))
    assert abs(n / STATED_PARAMS[name] - 1) <= PRESET_TOLERANCE, (name, n)


def test_gpt2_small_is_nanogpts_124m():
    # nanoGPT: 124.48M with the padded 50304 vocabulary (124.44M with 50257).
    assert param_count(GPTConfig(**PRESETS["124M"])) == 124_475_904


def test_param_count_formula_and_meta_build_needs_no_memory():
    c = TINY
    per_layer = 12 * c.n_embd**2 + 13 * c.n_embd  # qkv, proj, fc, fc-proj weights and biases, 2 LayerNorms
    expected = c.n_layer * per_layer + c.vocab_size * c.n_embd + c.block_size * c.n_embd + 2 * c.n_embd
    assert param_count(c) == expected
    assert param_count(GPTConfig(**PRESETS["13B"])) > 12e9  # built on the meta device: no memory


@pytest.mark.parametrize("name", ["1M", "124M", "1.5B"])
def test_param_count_is_the_whole_models_count_on_the_meta_device(name):
    """One layer plus (L - 1) Blocks: the same count as building all L layers, which a huge
    --layers made cost minutes before it could be refused."""
    from xfbench.workloads.gpt import build_meta

    config = GPTConfig(**PRESETS[name])
    assert param_count(config) == build_meta(config).num_params()


def test_non_embedding_count_drops_only_the_position_table():
    model = GPT(TINY)
    assert model.num_params() - model.num_params(non_embedding=True) == TINY.block_size * TINY.n_embd
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, counted once


def test_impossible_shape_is_a_value_error():
    with pytest.raises(ValueError, match="not divisible"):
        GPT(GPTConfig(n_layer=1, n_head=3, n_embd=32, vocab_size=8, block_size=8))


def test_decode_step_equals_full_forward_last_token_logits():
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    prompt = torch.randint(TINY.vocab_size, (3, 5))  # (B, P)
    dec = Decoder(model, prompt, new_tokens=4)
    seq = torch.cat([prompt, dec.tok], dim=1)
    for _ in range(4):  # every position of the static cache, P .. P+M-1
        with torch.no_grad():
            got = dec.logits()  # next-token logits after seq, from the cache
            want = model(seq)[:, -1, :]  # a full forward over the whole sequence
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        dec.step()
        seq = torch.cat([seq, dec.tok], dim=1)


def test_decode_cache_is_static_and_position_wraps():
    model = GPT(TINY).eval()
    dec = Decoder(model, torch.randint(TINY.vocab_size, (2, 6)), new_tokens=3)
    shape, ptr = dec.cache.k.shape, dec.cache.k.data_ptr()
    seen = []
    for _ in range(7):
        seen.append(int(dec.pos))
        dec.step()
    assert seen == [6, 7, 8, 6, 7, 8, 6]  # wraps back to the first generated slot
    assert dec.cache.k.shape == shape == (2, 2, 2, 9, 16) and dec.cache.k.data_ptr() == ptr


def test_cases_group_by_mode_and_grow_in_size():
    modes = ["train", "prefill", "decode"]
    cfg = ModelConfig(presets=["25M", "1M", "10M"], modes=modes, compile=True, cuda_graphs=True)
    cs = cases(cfg, CPU)
    assert [c.variant for c in cs if c.params["mode"] == "train"] == ["eager"] * 3 + ["compile"] * 3
    assert [c.variant for c in cs if c.params["mode"] == "decode"] == ["eager"] * 3 + ["cuda-graphs"] * 3
    for series in {c.series for c in cs}:
        sizes = [c.size for c in cs if c.series == series]
        assert sizes == sorted(sizes) and len(sizes) == 3
    assert {c.label for c in cs} == {
        "model train · float32 · B=8 · T=256 · full attention FLOPs",
        "model prefill · float32 · B=8 · P=128 · full attention FLOPs",
        "model decode · float32 · B=8 · P+M=128+128 · full attention FLOPs",
    }
    assert all(c.size_name == "params" for c in cs)
    assert len({c.id for c in cs}) == len(cs)
    decode = next(c for c in cs if c.params["mode"] == "decode")
    assert (decode.params["seq_len"], decode.params["new_tokens"]) == (128, 128)  # P = T/2, M = T - P


@pytest.mark.parametrize("mode", ["train", "prefill", "decode"])
def test_label_holds_every_parameter_that_is_not_swept(mode):
    base = dict(presets=["1M"], modes=[mode], batch=2, seq_len=64)
    (case,) = cases(ModelConfig(**base), CPU)
    changes = [dict(batch=4), dict(seq_len=32), dict(dtype="bfloat16")]
    if mode != "train":
        changes += [dict(prompt_len=16)]
    if mode == "decode":
        changes += [dict(new_tokens=8)]
    else:
        changes += [dict(flop_convention="causal")]
    for change in changes:
        (other,) = cases(ModelConfig(**{**base, **change}), CPU)
        assert other.label != case.label and other.id != case.id, change


def test_decode_flops_do_not_depend_on_the_convention_so_neither_does_its_case():
    full, causal = (cases(ModelConfig(modes=["decode"], flop_convention=c), CPU)[0] for c in ("full", "causal"))
    assert full.id == causal.id and full.label == causal.label and full.params["flop_convention"] == "full"


def test_sdpa_probe_has_the_shapes_mask_and_grad_of_each_mode():
    gc = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=64, block_size=64)
    train = sdpa_probe("train", gc, batch=3, seq_len=20, ctx=20, device=CPU, dtype=torch.float32)
    assert train["q"].shape == train["k"].shape == (3, 4, 20, 16) and train["q"].requires_grad
    assert train["causal"] and train["grad"] and train["attn_mask"] is None
    assert train["q"].stride() == (20 * 192, 16, 192, 1)  # a view of one (B, T, 3d) c_attn output
    prefill = sdpa_probe("prefill", gc, batch=3, seq_len=20, ctx=20, device=CPU, dtype=torch.bfloat16)
    assert prefill["causal"] and not prefill["grad"] and not prefill["q"].requires_grad
    assert prefill["q"].dtype == torch.bfloat16
    decode = sdpa_probe("decode", gc, batch=3, seq_len=20, ctx=30, device=CPU, dtype=torch.float32)
    assert decode["q"].shape == (3, 4, 1, 16) and decode["k"].shape == decode["v"].shape == (3, 4, 30, 16)
    mask = decode["attn_mask"]  # as Decoder builds it: (1, 1, 1, ctx) bool, True up to the position
    assert mask.dtype == torch.bool and mask.shape == (1, 1, 1, 30) and int(mask.sum()) == 21
    assert not decode["causal"] and not decode["grad"]
    assert sdpa_choice(**decode) == "flash_attention"  # CPU flash takes a boolean mask


def test_context_grows_to_fit_the_requested_lengths():
    (case,) = cases(ModelConfig(presets=["1M"], seq_len=300), CPU)
    assert case.params["block_size"] == 300 and case.params["seq_len"] == 300


@pytest.mark.parametrize(
    "cfg, match",
    [
        (ModelConfig(presets=["3M"]), "unknown preset"),
        (ModelConfig(presets=[], custom=dict(n_layer=2, n_head=3, n_embd=32, vocab_size=8)), "not divisible"),
        (ModelConfig(modes=["sideways"]), "unknown mode"),
        (ModelConfig(flop_convention="half"), "unknown FLOP convention"),
    ],
)
def test_bad_configs_raise_value_error(cfg, match):
    with pytest.raises(ValueError, match=match):
        cases(cfg, CPU)


def _tiny_case(mode, **kw):
    cfg = ModelConfig(
        presets=[], modes=[mode], batch=2, seq_len=16, custom=dict(n_layer=2, n_head=2, n_embd=32, vocab_size=64), **kw
    )
    return cases(cfg, CPU)


def test_registry_has_the_model_workload():
    assert get_workload("model").NAME == "model"


def test_train_step_describes_itself():
    (case,) = _tiny_case("train")
    step = prepare(case, CPU)
    step.run()
    info = step.info
    assert step.tokens == 2 * 16 and step.flops > 0
    assert info["optimizer"] in ("adamw fused", "adamw foreach")
    assert info["mem_analytic_bytes"] > info["mem_analytic_step_bytes"] > 0
    assert set(info["mem_breakdown"]) >= {"weights", "grads", "optimizer_states", "activations", "logits"}
    assert info["mem_breakdown"]["weights"] == 4 * info["n_params"]
    assert "6N + 12·L·d·T" in info["flop_convention"] and info["flop_convention_name"] == "full"
    assert info["sdpa_backend"] == "auto -> flash_attention" and "7·L·d·T" in info["work_flop_convention"]
    step.close()


def test_train_step_trains():
    torch.manual_seed(0)
    model = GPT(TINY)
    from xfbench.workloads.model_steps import train_step

    x = torch.randint(TINY.vocab_size, (2, 16))
    step = train_step(model, {}, device=CPU, dtype=torch.float32, compile=False, x=x, y=x, flops=1.0, tokens=32)
    losses = []
    for _ in range(5):
        with torch.no_grad():
            losses.append(float(model(x, x)))
        step.run()
    assert losses[-1] < losses[0]  # learning to copy its input
    assert all(p.grad is None for p in model.parameters())  # grads freed at the end of a step


def test_decode_step_books_one_token_per_sequence_and_its_floor():
    (case,) = _tiny_case("decode", new_tokens=8)
    step = prepare(case, CPU)
    for _ in range(20):  # more calls than the cache has room for: it wraps, never grows
        step.run()
    assert step.tokens == 2
    assert step.bytes_moved == step.info["floor_bytes"] > step.info["kv_cache_bytes"] > 0
    assert step.traffic == "read"  # weights and cache are read, not copied: its floor divides by read bandwidth
    assert step.info["ctx"] == 8 + 8
    assert step.info["mem_breakdown"]["kv_cache"] == step.info["kv_cache_bytes"]


def test_prefill_step_runs_without_grad():
    (case,) = _tiny_case("prefill")
    step = prepare(case, CPU)
    step.run()
    assert step.tokens == 2 * 8  # prompt P = T/2
    assert "2N + 4·L·d·T" in step.info["flop_convention"]


def test_cuda_graphs_on_cpu_is_a_clear_skip():
    (case,) = [c for c in _tiny_case("decode", cuda_graphs=True) if c.variant == "cuda-graphs"]
    with pytest.raises(SkipCase, match="CUDA graphs need a CUDA device"):
        prepare(case, CPU)


def test_recompile_inside_the_timed_loop_is_flagged():
    counter = CompileCounter(backend="eager")

    @torch.compile(backend=counter, dynamic=False)
    def f(x):
        return x * 2 + 1

    info = {}
    checked = warm_compiled(f, (torch.ones(4),), counter, info)
    assert info["compiled_graphs"] == 1 and info["compile_s"] > 0
    checked(torch.ones(4))
    assert info["recompiles_in_timed_loop"] == 0
    checked(torch.ones(3, 5))  # a new shape: guards fail, Dynamo compiles again
    assert info["recompiles_in_timed_loop"] >= 1


def test_a_training_step_touches_its_grads_and_optimizer_states_too():
    # The cache policy and the cache-residency flag read working_set_bytes: a training step touches
    # far more than its weights (grads, AdamW states, activations): the memory estimate's total.
    (case,) = _tiny_case("train")
    step = prepare(case, CPU)
    assert step.working_set_bytes == step.info["mem_analytic_bytes"]
    assert step.working_set_bytes > 16 * step.info["n_params"]  # fp32 weights + grads + AdamW states, and more
