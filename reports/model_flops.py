"""Analytic FLOPs of the GPT workload: one small function per formula, each citing its source.

N, the parameter count in every formula, is all parameters except the position embedding
(nanoGPT's `get_num_params(non_embedding=True)`, which its `estimate_mfu` uses). The token
embedding stays in N because, tied, it is also the output head's weight: the head's GEMM
costs 2·V·d FLOPs per token forward like any other weight matrix. Position embeddings
are a lookup (no FLOPs), and LayerNorm/bias parameters (<1% of N) are counted as if they
were GEMM weights, as PaLM and nanoGPT do.

Attention conventions (selectable, the name is stored in step.info['flop_convention']):
  'full'   — every query against all T keys: 4·L·d·T forward FLOPs per token
             (QKᵀ and AV, 2 FLOPs per multiply-add). PaLM appendix B and nanoGPT's
             `6N + 12·L·H·Q·T` use it, so MFU numbers compare with the literature.
  'causal' — half of that: a causal query sees T/2 keys on average (FlashAttention's
             convention for causal kernels).
The backward pass costs 2x the forward (PaLM), so training is 3x forward. The optimizer
step (about 10 FLOPs per parameter per step, not per token) is left out.
"""

from __future__ import annotations

CONVENTIONS = ("full", "causal")

# One line per mode, printed in reports and stored with every record.
FORMULAS = {
    "train": "6N + 12·L·d·T per token (PaLM App. B; nanoGPT 6N+12LHQT)",
    "prefill": "2N + 4·L·d·T per token (forward only: 1/3 of training)",
    "decode": "2N + 4·L·d·ctx per generated token, ctx = the whole static KV cache (P + M positions)",
}


def flop_params(n_params: int, block_size: int, d_model: int) -> int:
    """N for FLOP formulas: all parameters minus the position embedding (block_size·d)."""
    return n_params - block_size * d_model


def attention_fwd_flops_per_token(n_layer: int, d_model: int, ctx: int, convention: str = "full") -> float:
    """Forward attention FLOPs per token: 4·L·d·ctx ('full'), halved for 'causal'.

    QKᵀ is ctx·d multiply-adds per token per layer, AV the same: 2·(2·ctx·d) FLOPs.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention '{convention}' (choose from {', '.join(CONVENTIONS)})")
    full = 4.0 * n_layer * d_model * ctx
    return full / 2.0 if convention == "causal" else full


def train_flops_per_token(n: int, n_layer: int, d_model: int, seq_len: int, convention: str = "full") -> float:
    """Training (forward + backward) FLOPs per token: 6N + 12·L·d·T (PaLM App. B), with
    the attention term halved under 'causal'."""
    return 6.0 * n + 3.0 * attention_fwd_flops_per_token(n_layer, d_model, seq_len, convention)


def prefill_flops_per_token(n: int, n_layer: int, d_model: int, seq_len: int, convention: str = "full") -> float:
    """Inference forward FLOPs per prompt token: 2N + 4·L·d·T (halved attention under 'causal')."""
    return 2.0 * n + attention_fwd_flops_per_token(n_layer, d_model, seq_len, convention)


def decode_flops_per_token(n: int, n_layer: int, d_model: int, ctx: int) -> float:
    """FLOPs to generate one token from a KV cache of ctx positions: 2N + 4·L·d·ctx.

    One query against ctx keys: no causal halving applies. The static cache attends over
    all its ctx positions every call (masked ones too), so ctx is the cache length.
    """
    return 2.0 * n + attention_fwd_flops_per_token(n_layer, d_model, ctx, "full")


def flops_per_token(
    mode: str, n: int, n_layer: int, d_model: int, seq_len: int, ctx: int, convention: str = "full"
) -> float:
    """Dispatch on mode ('train' | 'prefill' | 'decode')."""
    if mode == "train":
        return train_flops_per_token(n, n_layer, d_model, seq_len, convention)
    if mode == "prefill":
        return prefill_flops_per_token(n, n_layer, d_model, seq_len, convention)
    if mode == "decode":
        return decode_flops_per_token(n, n_layer, d_model, ctx)
    raise ValueError(f"unknown mode '{mode}'")


def convention_text(mode: str, convention: str) -> str:
    """The string stored in step.info['flop_convention']."""
    attn = "attention term halved (causal)" if convention == "causal" and mode != "decode" else "full attention"
    return f"model {mode}: {FORMULAS[mode]}; N = params without position embedding; {attn}"


def attention_share(n: int, n_layer: int, d_model: int, seq_len: int, convention: str = "full") -> float:
    """Fraction of training FLOPs spent in attention scores: 12·L·d·T / (6N + 12·L·d·T).

    With N ≈ 12·L·d² this is about T / (6d) of the 6N term (Kaplan et al. 2020, sec. 2.1).
    """
    attn = 3.0 * attention_fwd_flops_per_token(n_layer, d_model, seq_len, convention)
    return attn / (6.0 * n + attn)


def attention_share_approx(d_model: int, seq_len: int) -> float:
    """The rule of thumb T / (6d): attention FLOPs relative to the 6N term when N ≈ 12·L·d²."""
    return seq_len / (6.0 * d_model)


def mfu(flop_per_s: float, peak_flop_per_s: float) -> float:
    """Model FLOPs utilization: achieved analytic FLOP/s over a peak passed in (never a constant)."""
    return flop_per_s / peak_flop_per_s
