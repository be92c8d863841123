"""Attention across sequence lengths: naive, SDPA (auto and each pinned backend), and an LSTM.

Shows that attention is parallel over tokens (every implementation but `lstm` processes
all N positions at once) yet quadratic in N (time for all; memory for `naive`, which
materializes the (N, N) score matrix that the fused SDPA kernels never store).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..profilers.device import DTYPES, resolve_dtype
from .base import Case, SkipCase, Step, make_params

NAME = "attention"

# Pinned SDPA backends (torch.nn.attention.SDPBackend), chosen with sdpa_kernel().
SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
IMPLS = ("naive", "sdpa", *SDPA_BACKENDS, "lstm")
MODES = ("fwd", "fwdbwd")

ATTENTION_FLOPS = (
    "FlashAttention convention: forward 4*B*H*N^2*d (QK^T and PV, 2 FLOPs per MAC), "
    "halved when causal; backward 2.5x forward (fwd+bwd = 3.5x)"
)
LSTM_FLOPS = (
    "LSTM: forward 8*B*N*D*(D_in+D) (4 gates, input and recurrent GEMMs, 2 FLOPs per MAC); "
    "backward 2x forward (fwd+bwd = 3x)"
)
# Work conventions: what each implementation executes, the quantity the FLOP counter is
# compared with (FLOP/s and MFU keep the convention above, the same for every impl).
ATTENTION_WORK_FUSED = (
    "work of a fused kernel (flash, efficient, cudnn, sdpa auto when it picks one): forward "
    "4*B*H*N^2*d, halved when causal (the kernel skips the blocks above the diagonal; its diagonal "
    "tiles are computed whole, so the real work is slightly more); backward recomputes the scores: "
    "2.5x forward (fwd+bwd = 3.5x)"
)
ATTENTION_WORK_DENSE = (
    "work of dense attention (naive, math): forward 4*B*H*N^2*d even when causal (the full QK^T GEMM, "
    "then the mask); backward 2x forward, autograd through the two GEMMs without recompute (fwd+bwd = 3x)"
)
# Ideal memory traffic: each tensor a call must touch is read or written exactly once,
# whatever the implementation materializes (the floor a fused kernel could reach).
ATTENTION_BYTES = (
    "ideal traffic: fwd reads q, k, v and writes o (4*B*H*N*d elements); fwd+bwd also reads "
    "q, k, v, o, dO and writes dq, dk, dv (12*B*H*N*d in all)"
)
LSTM_BYTES = (
    "ideal traffic: fwd reads weights and input, writes output; fwd+bwd also reads weights, "
    "input and dOutput and writes dWeights and dInput"
)


@dataclass
class AttentionConfig:
    """One attention sweep: every (mode, impl, seq_len) combination is a Case."""

    seq_lens: list[int]
    impls: list[str] = field(default_factory=lambda: ["naive", "sdpa", "lstm"])
    modes: list[str] = field(default_factory=lambda: ["fwd"])
    batch: int = 1  # B
    heads: int = 8  # H; the LSTM's width is D = H * d, the attention model width
    head_dim: int = 64  # d
    dtype: str = "auto"  # float32 on CPU, bfloat16 on CUDA
    causal: bool = False


def cases(cfg: AttentionConfig, device: torch.device) -> list[Case]:
    dtype = resolve_dtype(cfg.dtype, device)
    out = []
    for mode in cfg.modes:
        label = (
            f"attention {mode} · {dtype} · {'causal' if cfg.causal else 'full'} · "
            f"B={cfg.batch} H={cfg.heads} d={cfg.head_dim}"
        )
        for impl in cfg.impls:
            for n in sorted(set(cfg.seq_lens)):
                params = make_params(
                    impl=impl, mode=mode, seq_len=n, batch=cfg.batch, heads=cfg.heads,
                    head_dim=cfg.head_dim, dtype=dtype, causal=cfg.causal,
                )
                out.append(Case(NAME, label, impl, n, "N", params, str(device)))
    return out


def attention_flops(batch: int, heads: int, n: int, head_dim: int, causal: bool, mode: str) -> float:
    """FLOPs of one call, FlashAttention convention (see ATTENTION_FLOPS)."""
    fwd = 4.0 * batch * heads * n * n * head_dim
    if causal:
        fwd /= 2.0
    return fwd * (3.5 if mode == "fwdbwd" else 1.0)


def attention_work_flops(
    batch: int, heads: int, n: int, head_dim: int, causal: bool, mode: str, fused: bool
) -> float:
    """FLOPs one call executes: ATTENTION_WORK_FUSED (the convention) or ATTENTION_WORK_DENSE."""
    if fused:
        return attention_flops(batch, heads, n, head_dim, causal, mode)
    return 4.0 * batch * heads * n * n * head_dim * (3.0 if mode == "fwdbwd" else 1.0)


def lstm_flops(batch: int, n: int, d_in: int, d_hidden: int, mode: str) -> float:
    """FLOPs of one LSTM call over N steps (see LSTM_FLOPS)."""
    fwd = 8.0 * batch * n * d_hidden * (d_in + d_hidden)
    return fwd * (3.0 if mode == "fwdbwd" else 1.0)


def attention_bytes(batch: int, heads: int, n: int, head_dim: int, elt: int, mode: str) -> float:
    """Ideal bytes one call moves (see ATTENTION_BYTES); independent of the mask and implementation."""
    tensor = batch * heads * n * head_dim * elt  # one of q, k, v, o (B, H, N, d)
    return tensor * (12 if mode == "fwdbwd" else 4)


def lstm_bytes(weight_bytes: int, input_bytes: int, output_bytes: int, mode: str) -> float:
    """Ideal bytes one LSTM call moves (see LSTM_BYTES)."""
    fwd = weight_bytes + input_bytes + output_bytes
    if mode != "fwdbwd":
        return float(fwd)
    return float(fwd + (weight_bytes + input_bytes + output_bytes) + (weight_bytes + input_bytes))


def naive_attention(q, k, v, causal_mask):
    """softmax(QK^T / sqrt(d)) V with the (B, H, N, N) scores materialized."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, H, N, N)
    if causal_mask is not None:
        scores = scores.masked_fill(causal_mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, H, N, d)


def _with_backward(fwd, grad_out):
    """fn(*inputs) running forward then backward to every input that requires grad.

    The gradients are computed into .grad and dropped at once, which costs what
    torch.autograd.grad costs; autograd.grad itself is not used because torch's
    FlopCounterMode (its module tracker) refuses it through an nn.Module's leaf weights, and
    the LSTM's fwd+bwd could then not be counted.
    """

    def fn(*inputs):
        out = fwd(*inputs)
        wrt = [x for x in inputs if x.requires_grad] + list(getattr(fwd, "params", []))
        torch.autograd.backward(out, grad_out, inputs=wrt)
        for x in wrt:
            x.grad = None

    return fn


def _forward_only(fwd):
    def fn(*inputs):
        with torch.no_grad():
            fwd(*inputs)

    return fn


def _sdpa(backend: SDPBackend | None, causal: bool):
    def fwd(q, k, v):
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return fwd


def sdpa_choice(q, k, v, *, attn_mask=None, causal: bool, grad: bool) -> str:
    """The backend SDPA's dispatcher picks for exactly these inputs (recorded, not enforced).

    torch._fused_sdp_choice runs the dispatcher's own checks (aten sdp_utils): shapes, dtype,
    strides, the mask (flash takes none) and whether the inputs need grad, which counts only
    under grad mode, so pass the tensors as the step makes them and its grad mode.
    """
    try:
        with torch.set_grad_enabled(grad):
            choice = torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, causal)
        return SDPBackend(choice).name.lower()
    except (AttributeError, RuntimeError, ValueError):
        return "unknown"


def is_fused(backend: str) -> bool:
    """Whether an SDPA backend name (sdpa_choice's or an impl's) is a fused kernel, not math
    ('unknown', a probe torch could not answer, counts as fused: the FLOP count would tell)."""
    return backend not in ("math", "error")


# cuDNN's bf16 RNN: cuDNN 9.13 (CUDNN_VERSION 91300) on compute capability 8.0 or newer.
CUDNN_BF16_RNN_VERSION = 91300
CUDNN_BF16_RNN_MAJOR = 8


def cudnn_rnn_eligible(x: torch.Tensor) -> bool:
    """Whether nn.LSTM runs cuDNN's RNN kernels for input x, by the rule torch itself applies.

    nn.LSTM calls _VF.lstm, and aten/src/ATen/native/RNN.cpp `lstm` takes cuDNN when
    use_cudnn(input) (torch 2.10 and later, pytorch/pytorch#164411):
        at::cudnn_is_acceptable(t) && (fp16/fp32/fp64 ||
            bf16 && getCUDAHooks().supportsBFloat16RNNWithCuDNN())
    at::cudnn_is_acceptable (TensorProperties.cpp; torch.cudnn_is_acceptable here) checks the
    device, that cuDNN is enabled and compiled in and the input non-empty (it checked the
    dtype too before 2.10, excluding bf16 as the RNN did then), and
    supportsBFloat16RNNWithCuDNN (CUDAHooks.cpp) is CUDNN_VERSION >= 91300 and compute
    capability major >= 8. torch.backends.cudnn.is_acceptable is not this rule: it refuses
    bf16 (its CUDNN_TENSOR_DTYPES).
    """
    if not torch.cudnn_is_acceptable(x):
        return False
    if x.dtype in (torch.float16, torch.float32, torch.float64):
        return True
    if x.dtype != torch.bfloat16:
        return False
    major, minor, patch = torch._C._cudnn.getCompileVersion()
    built = major * 10000 + minor * 100 + patch
    return built >= CUDNN_BF16_RNN_VERSION and torch.cuda.get_device_capability(x.device)[0] >= CUDNN_BF16_RNN_MAJOR


def prepare(case: Case, device: torch.device) -> Step:
    p = case.params
    impl, mode, n = p["impl"], p["mode"], p["seq_len"]
    b, h, d, causal = p["batch"], p["heads"], p["head_dim"], p["causal"]
    dtype = DTYPES[p["dtype"]]
    elt = torch.empty((), dtype=dtype).element_size()
    grad = mode == "fwdbwd"
    gen = torch.Generator(device=device).manual_seed(0)
    info: dict = {"dtype": p["dtype"], "flop_convention": ATTENTION_FLOPS}

    if impl == "lstm":
        width = h * d  # the attention model width D
        lstm = nn.LSTM(width, width, batch_first=True).to(device=device, dtype=dtype)
        x = torch.randn(b, n, width, device=device, dtype=dtype, generator=gen)  # (B, N, D)

        def fwd(x):
            return lstm(x)[0]

        fwd.params = list(lstm.parameters())
        inputs = (x.requires_grad_(grad),)
        flops = work = lstm_flops(b, n, width, width, mode)
        working = sum(t.numel() * elt for t in (x, *fwd.params))
        moved = lstm_bytes(sum(t.numel() for t in fwd.params) * elt, x.numel() * elt, b * n * width * elt, mode)
        info.update(
            flop_convention=LSTM_FLOPS, work_flop_convention=LSTM_FLOPS, bytes_convention=LSTM_BYTES,
            model_width=width,
        )
        if device.type == "cuda":  # whether cuDNN's RNN kernels take this input (else the native cell path)
            info["cudnn_rnn"] = cudnn_rnn_eligible(x)
    else:
        shape = (b, h, n, d)  # (B, H, N, d)
        q, k, v = (
            torch.randn(shape, device=device, dtype=dtype, generator=gen).requires_grad_(grad)
            for _ in range(3)
        )
        inputs = (q, k, v)
        flops = attention_flops(b, h, n, d, causal, mode)
        working = 4 * q.numel() * elt * (3 if grad else 1)  # q, k, v, out (+ their grads)
        moved = attention_bytes(b, h, n, d, elt, mode)
        info["bytes_convention"] = ATTENTION_BYTES
        if impl == "naive":
            mask = (
                torch.ones(n, n, dtype=torch.bool, device=device).triu(1) if causal else None
            )

            def fwd(q, k, v):
                return naive_attention(q, k, v, mask)

            fused = False
        elif impl == "sdpa":
            fwd = _sdpa(None, causal)
            backend = sdpa_choice(q, k, v, causal=causal, grad=grad)
            info["sdpa_backend"] = f"auto -> {backend}"
            fused = is_fused(backend)
        elif impl in SDPA_BACKENDS:
            fwd = _sdpa(SDPA_BACKENDS[impl], causal)
            info["sdpa_backend"] = impl
            fused = is_fused(impl)
        else:
            raise ValueError(f"unknown attention impl '{impl}'")
        work = attention_work_flops(b, h, n, d, causal, mode, fused)
        info["work_flop_convention"] = ATTENTION_WORK_FUSED if fused else ATTENTION_WORK_DENSE

    grad_out = None
    if grad:
        out_shape = (b, n, h * d) if impl == "lstm" else (b, h, n, d)
        grad_out = torch.randn(out_shape, device=device, dtype=dtype, generator=gen)
    fn = _with_backward(fwd, grad_out) if grad else _forward_only(fwd)
    _check_eligible(fn, inputs, impl, device)
    return Step(
        fn=fn, inputs=inputs, flops=flops, tokens=b * n, working_set_bytes=working, bytes_moved=moved,
        work_flops=work, info=info,
    )


def _check_eligible(fn, inputs, impl: str, device: torch.device) -> None:
    """Run once: a pinned SDPA backend that cannot take this case becomes a skip, with why."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn(*inputs)
        except RuntimeError as e:
            # CPU: "No viable backend ...", CUDA: "No available kernel. Aborting execution."
            text = str(e).lower()
            if impl not in SDPA_BACKENDS or not ("no available kernel" in text or "no viable backend" in text):
                raise
            why = "; ".join(dict.fromkeys(str(w.message).strip() for w in caught))
            raise SkipCase(
                f"SDPA backend '{impl}' has no kernel for this case on {device.type}" + (f": {why}" if why else "")
            ) from None
