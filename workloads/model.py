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
    shapes = {}
    for name in cfg.presets:
        if name not in PRESETS:
            raise ValueError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
        shapes[name] = PRESETS[name]
    if cfg.custom:
        shapes[CUSTOM] = {**cfg.custom, "block_size": CUSTOM_SEQ_LEN}
    out = []
    for name, shape in shapes.items():
        t, p, m = lengths(cfg, shape["block_size"])
        gc = GPTConfig(**{**shape, "block_size": max(shape["block_size"], t, p + m)})
        gc.check()
        out.append((name, gc, param_count(gc)))
    return sorted(out, key=lambda x: x[2])


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
        label = f"model {mode} · {dtype} · B={cfg.batch}"
        for variant in variants:
            for name, gc, n in models:
                t, p, m = lengths(cfg, PRESETS.get(name, {}).get("block_size", CUSTOM_SEQ_LEN))
                extra = {"seq_len": t} if mode == "train" else {"seq_len": p}
                if mode == "decode":
                    extra["new_tokens"] = m
                params = make_params(
                    preset=name, mode=mode, variant=variant, n_layer=gc.n_layer, n_head=gc.n_head,
                    n_embd=gc.n_embd, vocab_size=gc.vocab_size, block_size=gc.block_size, batch=cfg.batch,
                    dtype=dtype, flop_convention=cfg.flop_convention, **extra,
                )
                out.append(Case(NAME, label, variant, n, "params", params, str(device)))
    return out


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
    conv = p["flop_convention"] if mode != "decode" else "full"
    info: dict[str, Any] = {
        "preset": p["preset"], "n_params": n_params, "n_flop_params": n, "dtype": p["dtype"],
        "flop_convention": mf.convention_text(mode, conv), "flop_convention_name": conv,
        "tokens_definition": TOKENS_DEFINITION,
        "attention_share": mf.attention_share(n, gc.n_layer, gc.n_embd, t, conv),
    }
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
            ctx = t + p["new_tokens"]
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
    info["sdpa_backend"] = _sdpa_backend(device, dtype, gc)
    return step


def _sdpa_backend(device: torch.device, dtype: torch.dtype, gc: GPTConfig) -> str:
    """Which fused SDPA kernel the dispatcher picks for a causal (B, nh, T, hs) input."""
    hs = gc.n_embd // gc.n_head
    q = torch.empty(1, gc.n_head, 16, hs, device=device, dtype=dtype)
    try:
        from torch.nn.attention import SDPBackend

        return "auto -> " + SDPBackend(torch._fused_sdp_choice(q, q, q, None, 0.0, True)).name.lower()
    except (AttributeError, RuntimeError, ValueError):
        return "unknown"
