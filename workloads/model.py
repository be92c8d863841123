"""Models across parameter counts: a readable decoder-only GPT, its size presets, the workload.

The model is nanoGPT's: pre-norm blocks, causal SDPA attention, GELU MLP, learned positions,
token embedding tied to the output head, plus a static KV cache for decoding. Read
top-down: config, presets, the small modules, the model; then the workload (ModelConfig,
cases, prepare), whose Steps are built in model_steps.py, FLOPs in model_flops.py and the
memory estimate in model_memory.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Case, SkipCase, Step, make_params

# GPT-2's vocabulary (50257) padded to a multiple of 64 for efficient GEMMs (as nanoGPT).
GPT2_VOCAB = 50304


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int  # L
    n_head: int  # H
    n_embd: int  # d (model width); head size hs = d / H
    vocab_size: int  # V
    block_size: int  # positions the model has embeddings for (its context)

    def check(self) -> None:
        """ValueError for a shape the model cannot have."""
        for name in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.n_embd % self.n_head:
            raise ValueError(f"d_model {self.n_embd} is not divisible by heads {self.n_head}")


# Size presets: total parameter count (all weights, token and position embeddings included,
# as GPT-2's "124M") in the comment; tests/test_model.py checks each within 10%.
PRESETS: dict[str, dict] = {
    # tiny: run in seconds on a CPU
    "1M": dict(n_layer=4, n_head=4, n_embd=128, vocab_size=1024, block_size=256),  # 0.96M params
    "10M": dict(n_layer=5, n_head=6, n_embd=384, vocab_size=4096, block_size=256),  # 10.5M params
    "25M": dict(n_layer=7, n_head=8, n_embd=512, vocab_size=4096, block_size=256),  # 24.3M params
    # GPT-2 (Radford et al. 2019), nanoGPT's configs
    "124M": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=GPT2_VOCAB, block_size=1024),  # 124M params
    "350M": dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=GPT2_VOCAB, block_size=1024),  # 355M params
    "774M": dict(n_layer=36, n_head=20, n_embd=1280, vocab_size=GPT2_VOCAB, block_size=1024),  # 774M params
    "1.5B": dict(n_layer=48, n_head=25, n_embd=1600, vocab_size=GPT2_VOCAB, block_size=1024),  # 1.56B params
    # GPT-3 paper, Table 2.1 (Brown et al. 2020); 13B's d_model 5140 in the table is 5120 in practice
    "2.7B": dict(n_layer=32, n_head=32, n_embd=2560, vocab_size=GPT2_VOCAB, block_size=2048),  # 2.65B params
    "6.7B": dict(n_layer=32, n_head=32, n_embd=4096, vocab_size=GPT2_VOCAB, block_size=2048),  # 6.66B params
    "13B": dict(n_layer=40, n_head=40, n_embd=5120, vocab_size=GPT2_VOCAB, block_size=2048),  # 12.9B params
}
# The size each preset's name states, for the test and for sorting.
STATED_PARAMS = {
    "1M": 1e6, "10M": 10e6, "25M": 25e6, "124M": 124e6, "350M": 350e6, "774M": 774e6,
    "1.5B": 1.5e9, "2.7B": 2.7e9, "6.7B": 6.7e9, "13B": 13e9,
}


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))  # (B, T, d) -> (B, T, 4d) -> (B, T, d)


class KVCache:
    """Static, preallocated keys and values of every layer: never grows.

    Args:
        config: the model's config.
        batch: B.
        ctx: positions the cache holds (prompt + new tokens).
    """

    def __init__(self, config: GPTConfig, batch: int, ctx: int, device, dtype):
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch, config.n_head, ctx, hs)  # (L, B, nh, ctx, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.ctx = ctx

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v projections in one GEMM
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def _heads(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, d)
        return [t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)]  # (B, nh, T, hs)

    def forward(self, x, kv: tuple | None = None):
        """Causal attention over the T positions of x; with `kv` = (k_cache, v_cache) of this
        layer, also store the keys and values at positions 0..T-1 (prefill)."""
        B, T, C = x.size()
        q, k, v = self._heads(x)
        if kv is not None:
            kv[0][:, :, :T] = k
            kv[1][:, :, :T] = v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, d)
        return self.c_proj(y)

    def decode(self, x, kv: tuple, pos, mask):
        """One new position per sequence: x (B, 1, d) at position `pos` (a 1-element tensor).

        Its key and value are written into the static cache at `pos`; the query attends over
        the whole cache with `mask` (True up to pos), so shapes never change (CUDA-graph safe).
        """
        B, T, C = x.size()
        q, k, v = self._heads(x)  # (B, nh, 1, hs)
        kv[0].index_copy_(2, pos, k)
        kv[1].index_copy_(2, pos, v)
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)  # (B, nh, 1, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, kv=None):
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_2(x))

    def decode(self, x, kv, pos, mask):
        x = x + self.attn.decode(self.ln_1(x), kv, pos, mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        config.check()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf 2017)
        if not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """All parameters (tied weights once); non_embedding drops the position embedding.

        The token embedding stays in either way: tied, it is the output head's weight too.
        """
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def new_cache(self, batch: int, ctx: int, device, dtype) -> KVCache:
        return KVCache(self.config, batch, ctx, device, dtype)

    def _embed(self, idx, pos):
        return self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, d)

    def forward(self, idx, targets=None, kv: KVCache | None = None):
        """Logits (B, T, V) for tokens idx (B, T); with targets, only the mean cross-entropy loss
        (the logits are then not kept alive). With `kv`, the layers' keys and values of the
        T positions are stored in it (prefill)."""
        B, T = idx.size()
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self._embed(idx, pos)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if kv is None else (kv.k[i], kv.v[i]))
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))

    def decode(self, idx, kv: KVCache, pos, mask):
        """Logits (B, V) of the next token after idx (B, 1) at position pos (1-element tensor)."""
        x = self._embed(idx, pos)  # (B, 1, d)
        for i, block in enumerate(self.transformer.h):
            x = block.decode(x, (kv.k[i], kv.v[i]), pos, mask)
        return self.lm_head(self.transformer.ln_f(x))[:, -1, :]  # (B, V)


def build_meta(config: GPTConfig) -> GPT:
    """The model on the meta device: shapes and counts, no memory."""
    with torch.device("meta"):
        return GPT(config)


def param_count(config: GPTConfig) -> int:
    """Total parameters of the model with this config (built on the meta device)."""
    return build_meta(config).num_params()


# --- the workload: configs become Cases, a Case becomes a Step -----------------------

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
    from .model_flops import CONVENTIONS

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
    from .attention import resolve_dtype

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
    from . import model_flops as mf
    from . import model_memory as mm
    from . import model_steps as ms
    from .attention import DTYPES

    p = case.p
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
