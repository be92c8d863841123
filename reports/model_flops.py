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

Work FLOPs (`work_*` below) are what the workload's kernels execute, the quantity torch's
FlopCounterMode is compared with (profilers/flop_count.py); FLOP/s and MFU keep the
convention above. They count W, the GEMM weights only (biases and LayerNorm are no GEMM
work), and attention as it runs: the model's causal SDPA on a fused kernel skips the blocks
above the diagonal (half the T² square, the diagonal tiles computed whole, so the real work
is slightly more) and its backward recomputes the scores (2.5x its forward); on the math
backend it is a dense GEMM then the mask (the full square, backward 2x). Decode attends one
query over the whole static cache with a boolean mask: all ctx keys, fused or not.
"""

from __future__ import annotations

CONVENTIONS = ("full", "causal")

# One line per mode, printed in reports and stored with every record.
FORMULAS = {
    "train": "6N + 12·L·d·T per token (PaLM App. B; nanoGPT 6N+12LHQT)",
    "prefill": "2N + 4·L·d·T per token (forward only: 1/3 of training)",
    "decode": "2N + 4·L·d·ctx per generated token, ctx = the whole static KV cache (P + M positions)",
}


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


def convention_text(mode: str, convention: str) -> str:
    """The string stored in step.info['flop_convention']."""
    attn = "attention term halved (causal)" if convention == "causal" and mode != "decode" else "full attention"
    return f"model {mode}: {FORMULAS[mode]}; N = params without position embedding; {attn}"


def gemm_params(n_layer: int, d_model: int, vocab: int) -> int:
    """W: the model's GEMM weights, 12·L·d² (q, k, v 3d², output projection d², MLP 8d² per
    block) plus V·d for the tied output head."""
    return 12 * n_layer * d_model**2 + vocab * d_model


def work_attention_flops_per_token(
    mode: str, n_layer: int, d_model: int, seq_len: int, ctx: int, fused: bool = True
) -> float:
    """Attention FLOPs per token as the kernels run them (see the module doc): train
    3.5x (fused) or 3x (math) its forward, prefill its forward, decode 4·L·d·ctx."""
    if mode == "decode":
        return 4.0 * n_layer * d_model * ctx
    fwd = 4.0 * n_layer * d_model * seq_len / (2.0 if fused else 1.0)
    if mode == "train":
        return fwd * (3.5 if fused else 3.0)
    if mode == "prefill":
        return fwd
    raise ValueError(f"unknown mode '{mode}'")


def work_flops_per_token(
    mode: str, w: int, n_layer: int, d_model: int, seq_len: int, ctx: int, fused: bool = True
) -> float:
    """Work FLOPs per token: 2W forward (6W in training) plus the attention work."""
    gemm = (6.0 if mode == "train" else 2.0) * w
    return gemm + work_attention_flops_per_token(mode, n_layer, d_model, seq_len, ctx, fused)


def work_convention_text(mode: str, fused: bool) -> str:
    """The string stored in step.info['work_flop_convention']."""
    attn = {
        ("train", True): "7·L·d·T (fused causal SDPA: half the T² square, backward recomputes: 3.5x)",
        ("train", False): "12·L·d·T (math SDPA: the full square, backward 2x)",
        ("prefill", True): "2·L·d·T (fused causal SDPA: half the T² square)",
        ("prefill", False): "4·L·d·T (math SDPA: the full square)",
    }.get((mode, fused), "4·L·d·ctx (one query against the whole static cache, boolean mask)")
    gemm = "6W" if mode == "train" else "2W"
    per = "generated token" if mode == "decode" else "token"
    text = f"work of model {mode}: {gemm} + {attn} per {per}; W = GEMM weights 12·L·d² + V·d"
    if mode != "decode" and fused:
        text += "; causal kernels compute their diagonal tiles whole, so the real work is slightly more"
    return text


def attention_share(n: int, n_layer: int, d_model: int, seq_len: int, convention: str = "full") -> float:
    """Fraction of training FLOPs spent in attention scores: 12·L·d·T / (6N + 12·L·d·T), the
    same as prefill's 4·L·d·T / (2N + 4·L·d·T); for decode pass the context ctx as seq_len.

    With N ≈ 12·L·d² this is about T / (6d) of the 6N term (Kaplan et al. 2020, sec. 2.1).
    """
    attn = 3.0 * attention_fwd_flops_per_token(n_layer, d_model, seq_len, convention)
    return attn / (6.0 * n + attn)
