"""Models across parameter counts: the GPT workload (configs become Cases, a Case becomes a Step).

The model itself is gpt.py; the Steps are built in model_steps.py, FLOPs come from
reports/model_flops.py (pure, so reports can use them) and the memory estimate from
model_memory.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..profilers.device import DTYPES, resolve_dtype
from .attention import is_fused, sdpa_choice
from .base import Case, SkipCase, Step, make_params
from .gpt import GPT, PRESETS, GPTConfig, param_count

NAME = "model"
MODES = ("train", "prefill", "decode")
CUSTOM = "custom"
# Default context of a custom model (presets bring their own).
CUSTOM_SEQ_LEN = 256
TOKENS_DEFINITION = (
    "tokens/s = tokens per step / median step time; a train or prefill step processes "
    "B·T input tokens (B sequences of T), a decode step generates B tokens (one per sequence)"
)


@dataclass
class ModelConfig:
    """One model sweep: every (mode, variant, model) combination is a Case; models are sorted
    by parameter count so a series grows in size (the runner skips past an OOM)."""

    presets: list[str] = field(default_factory=lambda: ["1M"])  # names in PRESETS
    modes: list[str] = field(default_factory=lambda: ["train"])
    batch: int = 8  # B
    seq_len: int | None = None  # T of train; None: each preset's context (block_size)
    prompt_len: int | None = None  # P of prefill and decode; None: T // 2
    new_tokens: int | None = None  # M, the positions decode generates into; None: T - P
    dtype: str = "auto"  # float32 on CPU, bfloat16 on CUDA (train: autocast, fp32 weights)
    compile: bool = False  # add a torch.compile variant of train and prefill
    cuda_graphs: bool = False  # add a CUDA-graph variant of decode
    custom: dict | None = None  # n_layer, n_head, n_embd, vocab_size of a custom model
    flop_convention: str = "full"  # attention term: 'full' (PaLM) or 'causal' (halved)


def resolve_models(cfg: ModelConfig) -> list[tuple[str, GPTConfig, int]]:
    """(name, GPTConfig, parameter count) of every requested model, smallest first.

    The context (block_size) grows to fit the requested T and P + M.
    """
    from ..reports.model_flops import CONVENTIONS

    if cfg.flop_convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention '{cfg.flop_convention}' (choose from {', '.join(CONVENTIONS)})")
    out = []
    for name, shape in model_shapes(cfg.presets, cfg.custom).items():
        t, p, m = lengths(cfg, shape["block_size"])
        gc = GPTConfig(**{**shape, "block_size": max(shape["block_size"], t, p + m)})
        gc.check()
        out.append((name, gc, param_count(gc)))
    return sorted(out, key=lambda x: x[2])


def model_shapes(presets: list[str], custom: dict | None) -> dict[str, dict]:
    """Name -> GPT shape (PRESETS' entries, and the custom model at its default context)."""
    shapes = {}
    for name in presets:
        if name not in PRESETS:
            raise ValueError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
        shapes[name] = PRESETS[name]
    if custom:
        shapes[CUSTOM] = {**custom, "block_size": CUSTOM_SEQ_LEN}
    return shapes


def lengths(cfg: ModelConfig, context: int) -> tuple[int, int, int]:
    """(T, P, M) for a model whose native context is `context`."""
    t = cfg.seq_len or context
    p = cfg.prompt_len or max(1, t // 2)
    m = cfg.new_tokens or max(1, t - p)
    for name, v in (("batch", cfg.batch), ("seq_len", t), ("prompt_len", p), ("new_tokens", m)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1 (got {v})")
    return t, p, m


def cases(cfg: ModelConfig, device: torch.device) -> list[Case]:
    dtype = resolve_dtype(cfg.dtype, device)
    models = resolve_models(cfg)
    out = []
    for mode in cfg.modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
        variants = ["eager"]
        if cfg.compile and mode != "decode":
            variants.append("compile")
        if cfg.cuda_graphs and mode == "decode":
            variants.append("cuda-graphs")
        # Decode attends over the whole cache whatever the convention: its FLOPs are 'full'.
        conv = cfg.flop_convention if mode != "decode" else "full"
        for variant in variants:
            for name, gc, n in models:
                t, p, m = lengths(cfg, PRESETS.get(name, {}).get("block_size", CUSTOM_SEQ_LEN))
                extra = {"seq_len": t} if mode == "train" else {"seq_len": p}
                if mode == "decode":
                    extra["new_tokens"] = m
                params = make_params(
                    preset=name, mode=mode, variant=variant, n_layer=gc.n_layer, n_head=gc.n_head,
                    n_embd=gc.n_embd, vocab_size=gc.vocab_size, block_size=gc.block_size, batch=cfg.batch,
                    dtype=dtype, flop_convention=conv, **extra,
                )
                out.append(Case(NAME, label(mode, dtype, cfg.batch, t, p, m, conv), variant, n, "params", params,
                                str(device)))
    return out


def label(mode: str, dtype: str, batch: int, t: int, p: int, m: int, convention: str) -> str:
    """The table a case belongs to: every parameter that is not swept (the model size is; the
    variant is the column), so runs with other lengths or conventions never share cells."""
    span = f"T={t}" if mode == "train" else f"P={p}" if mode == "prefill" else f"P+M={p}+{m}"
    return f"model {mode} · {dtype} · B={batch} · {span} · {convention} attention FLOPs"


def prepare(case: Case, device: torch.device) -> Step:
    from ..reports import model_flops as mf
    from . import model_memory as mm
    from . import model_steps as ms

    p = case.params
    mode, variant, b, t = p["mode"], p["variant"], p["batch"], p["seq_len"]
    gc = GPTConfig(p["n_layer"], p["n_head"], p["n_embd"], p["vocab_size"], p["block_size"])
    dtype = DTYPES[p["dtype"]]
    if variant == "cuda-graphs" and device.type != "cuda":  # before allocating anything
        raise SkipCase(f"CUDA graphs need a CUDA device (this case runs on {device.type})")
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(gc)
    n_params = model.num_params()
    n = model.num_params(non_embedding=True)
    gen = torch.Generator(device=device).manual_seed(0)
    conv = p["flop_convention"]
    ctx = t + p["new_tokens"] if mode == "decode" else t  # decode attends over the whole cache
    backend = sdpa_choice(**sdpa_probe(mode, gc, batch=b, seq_len=t, ctx=ctx, device=device, dtype=dtype))
    fused = is_fused(backend)
    info: dict[str, Any] = {
        "preset": p["preset"], "n_params": n_params, "n_flop_params": n, "dtype": p["dtype"],
        "flop_convention": mf.convention_text(mode, conv), "flop_convention_name": conv,
        "work_flop_convention": mf.work_convention_text(mode, fused),
        "tokens_definition": TOKENS_DEFINITION, "sdpa_backend": f"auto -> {backend}",
        "attention_share": mf.attention_share(n, gc.n_layer, gc.n_embd, ctx, conv),
    }
    w = mf.gemm_params(gc.n_layer, gc.n_embd, gc.vocab_size)
    work_per_token = mf.work_flops_per_token(mode, w, gc.n_layer, gc.n_embd, t, ctx, fused)
    if mode == "train":
        x, y = (torch.randint(gc.vocab_size, (b, t), device=device, generator=gen) for _ in range(2))
        per_token = mf.train_flops_per_token(n, gc.n_layer, gc.n_embd, t, conv)
        amp = dtype != torch.float32
        step = ms.train_step(
            model.train(), info, device=device, dtype=dtype, compile=variant == "compile", x=x, y=y,
            flops=per_token * b * t, tokens=b * t,
        )
        est = mm.train_memory(
            n_params=n_params, n_flop=n, n_layer=gc.n_layer, n_head=gc.n_head, d_model=gc.n_embd,
            vocab=gc.vocab_size, batch=b, seq_len=t, e_act=2 if amp else 4, autocast=amp,
            optimizer_temp=info["optimizer"].endswith("foreach"),
        )
    else:
        model = model.to(dtype).eval()
        elt = torch.empty((), dtype=dtype).element_size()
        prompt = torch.randint(gc.vocab_size, (b, t), device=device, generator=gen)  # (B, P)
        if mode == "prefill":
            per_token = mf.prefill_flops_per_token(n, gc.n_layer, gc.n_embd, t, conv)
            step = ms.prefill_step(
                model, info, compile=variant == "compile", x=prompt, flops=per_token * b * t, tokens=b * t
            )
            est = mm.prefill_memory(
                n_params=n_params, d_model=gc.n_embd, vocab=gc.vocab_size, batch=b, seq_len=t, elt=elt
            )
        elif mode == "decode":
            per_token = mf.decode_flops_per_token(n, gc.n_layer, gc.n_embd, ctx)
            est = mm.decode_memory(
                n_params=n_params, n_layer=gc.n_layer, d_model=gc.n_embd, vocab=gc.vocab_size, batch=b, ctx=ctx,
                elt=elt,
            )
            # Bytes one token must read at least: every weight but the position table once
            # (the tied embedding is read whole by the output head), and the whole KV cache.
            floor = n * elt + est.persistent["kv_cache"]
            step = ms.decode_step(
                model, info, device=device, prompt=prompt, new_tokens=p["new_tokens"],
                cuda_graphs=variant == "cuda-graphs", flops=per_token * b, floor_bytes=floor,
            )
        else:
            raise ValueError(f"unknown mode '{mode}'")
    info.update(est.info())
    step.work_flops = work_per_token * step.tokens
    if mode != "decode":  # what a call touches: every persistent part and what the step allocates
        step.working_set_bytes = est.total_bytes  # (decode's: its weights and KV cache, the floor's bytes)
    return step


def sdpa_probe(
    mode: str, gc: GPTConfig, *, batch: int, seq_len: int, ctx: int, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """The arguments of the model's SDPA call in this mode, as its attention builds them, for
    attention.sdpa_choice: train and prefill attend causally over T tokens (q, k, v are views
    of one c_attn output; train under grad), decode attends one query over a layer's whole
    static cache with the boolean mask Decoder builds (flash takes no mask)."""
    hs = gc.n_embd // gc.n_head
    if mode == "decode":
        q = torch.empty(batch, gc.n_head, 1, hs, device=device, dtype=dtype)  # (B, nh, 1, hs)
        kv_shape = (batch, gc.n_head, ctx, hs)  # (B, nh, ctx, hs): one layer of the cache
        k, v = (torch.empty(kv_shape, device=device, dtype=dtype) for _ in range(2))
        mask = (torch.arange(ctx, device=device) <= seq_len).view(1, 1, 1, ctx)  # at position P; True = attend
        return dict(q=q, k=k, v=v, attn_mask=mask, causal=False, grad=False)
    grad = mode == "train"
    qkv = torch.empty(batch, seq_len, 3 * gc.n_embd, device=device, dtype=dtype, requires_grad=grad)  # (B, T, 3d)
    q, k, v = (x.view(batch, seq_len, gc.n_head, hs).transpose(1, 2) for x in qkv.split(gc.n_embd, dim=2))
    return dict(q=q, k=k, v=v, attn_mask=None, causal=True, grad=grad)
