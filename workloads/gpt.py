"""A readable decoder-only GPT and its size presets (the model only; the workload is model.py).

The model is nanoGPT's: pre-norm blocks, causal SDPA attention, GELU MLP, learned positions,
token embedding tied to the output head, plus a static KV cache for decoding. Read
top-down: config, presets, the small modules, the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

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
    """Total parameters of the model with this config, counted on the meta device: the model with
    one layer, plus each further layer as many as one Block holds (every layer is the same Block).
    Building all L layers would cost seconds per thousand layers before a huge --layers is even
    checked; this costs the same at any depth."""
    with torch.device("meta"):
        one = GPT(dataclasses.replace(config, n_layer=1)).num_params()
        block = sum(p.numel() for p in Block(config).parameters())
    return one + (config.n_layer - 1) * block
