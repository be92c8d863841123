"""`xfbench attention`: sweep sequence lengths over attention implementations."""

import typer

from .common import Dtype, SharedOptions, check_dtype, sweep_command
from .parse import MAX_DIM, MAX_LEN
from .status import ExitStatus

IMPL_CHOICES = ("naive", "sdpa", "flash", "efficient", "cudnn", "math", "lstm")
MODE_CHOICES = ("fwd", "fwdbwd")


@sweep_command
def attention(
    seq_lens: str = typer.Option(
        "256:4096:x2", "--seq-lens",
        help="Sequence lengths: list '512,1024', or range '256:8192:x2' / '128:1024:+128'.",
    ),
    impl: str = typer.Option(
        "naive,sdpa,lstm", "--impl", help=f"Implementations, comma-separated: {', '.join(IMPL_CHOICES)}."
    ),
    mode: str = typer.Option("fwd", "--mode", help="fwd, fwdbwd, or both: 'fwd,fwdbwd'."),
    batch: int = typer.Option(1, "--batch", min=1, max=MAX_LEN, help="Batch size B."),
    heads: int = typer.Option(8, "--heads", min=1, max=MAX_DIM, help="Attention heads H."),
    head_dim: int = typer.Option(
        64, "--head-dim", min=1, max=MAX_DIM, help="Head dimension d (LSTM width is H*d)."
    ),
    dtype: Dtype = "auto",
    causal: bool = typer.Option(False, "--causal/--full", help="Causal mask (FLOPs halved) or full attention."),
    shared: SharedOptions = SharedOptions(),
) -> ExitStatus:
    """Time and memory of attention across sequence lengths: parallel, yet quadratic."""
    plan = attention_plan(  # before the sweep's imports: a bad --seq-lens is told before torch loads
        shared.device, seq_lens=seq_lens, impl=impl, mode=mode, batch=batch, heads=heads, head_dim=head_dim,
        dtype=dtype, causal=causal,
    )
    from .sweep import run_sweep

    return run_sweep("attention", plan, shared)


def attention_plan(
    device: str, *, seq_lens: str, impl: str, mode: str, batch: int, heads: int, head_dim: int, dtype: str,
    causal: bool,
) -> list:
    """The attention cases these options describe (the command's and a suite case's); BadInput if invalid."""
    from .parse import check_elements, parse_choices, parse_int_sweep

    lens = parse_int_sweep(seq_lens, "--seq-lens")
    impls = parse_choices(impl, IMPL_CHOICES, "--impl")
    modes = parse_choices(mode, MODE_CHOICES, "--mode")

    from ..profilers.device import resolve_device
    from ..workloads.attention import AttentionConfig, cases

    dev = resolve_device(device)
    check_dtype(dtype, dev)
    cfg = AttentionConfig(
        seq_lens=lens, impls=impls, modes=modes, batch=batch, heads=heads, head_dim=head_dim,
        dtype=dtype, causal=causal,
    )
    plan = cases(cfg, dev)
    for case in plan:
        for what, shape in attention_tensors(case.params):
            check_elements(shape, what, case.name)
    return plan


# Implementations that materialize the (B, H, N, N) score matrix (the fused kernels never do).
DENSE_IMPLS = ("naive", "math")


def attention_tensors(params: dict) -> list[tuple[str, tuple[int, ...]]]:
    """The largest tensors one attention case makes, as (what, shape): q, k, v (and o, and their
    gradients) for every implementation, the score matrix for the dense ones, and for the LSTM
    (width D = H*d) its gate weights and one step's gates over the sequence."""
    b, h, n, d = params["batch"], params["heads"], params["seq_len"], params["head_dim"]
    if params["impl"] == "lstm":
        width = h * d
        return [("gate weights (4D, D)", (4 * width, width)), ("gates (N, B, 4D)", (n, b, 4 * width))]
    out = [("q, k and v (B, H, N, d)", (b, h, n, d))]
    if params["impl"] in DENSE_IMPLS:
        out.append(("score matrix (B, H, N, N)", (b, h, n, n)))
    return out
