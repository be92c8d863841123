"""`xfbench model`: throughput, MFU and memory of a GPT across parameter counts."""

import typer

from .common import SharedOptions, check_dtype, sweep_command
from .parse import MAX_DIM, MAX_LEN
from .status import ExitStatus

MODE_CHOICES = ("train", "prefill", "decode")
DEFAULT_PRESETS = "1M,10M,25M"


def parse_presets(text: str, names: list[str] | tuple[str, ...]) -> list[str]:
    """Comma-separated preset names, case-insensitive ('124m' is '124M'); BadInput if unknown."""
    from ..reports.errors import BadInput

    canonical = {n.lower(): n for n in names}
    picked = [p.strip() for p in text.split(",") if p.strip()]
    if not picked:
        raise BadInput(f"--presets: no values given (choose from {', '.join(names)})")
    for p in picked:
        if p.lower() not in canonical:
            raise BadInput(f"--presets: unknown preset '{p}' (choose from {', '.join(names)})")
    return list(dict.fromkeys(canonical[p.lower()] for p in picked))


def custom_model(layers: int | None, d_model: int | None, heads: int | None, vocab: int | None) -> dict | None:
    """The custom model's shape from --layers/--d-model/--heads/--vocab (None: no custom model);
    BadInput when only some of them are given."""
    from ..reports.errors import BadInput

    shape = {"--layers": layers, "--d-model": d_model, "--heads": heads}
    if all(v is None for v in shape.values()) and vocab is None:
        return None
    missing = [k for k, v in shape.items() if v is None]
    if missing:
        raise BadInput(f"a custom model needs --layers, --d-model and --heads (missing {', '.join(missing)})")
    from ..workloads.gpt import GPT2_VOCAB

    return dict(n_layer=layers, n_head=heads, n_embd=d_model, vocab_size=vocab or GPT2_VOCAB)


@sweep_command
def model(
    presets: str | None = typer.Option(
        None, "--presets",
        help=f"Model sizes, comma-separated: 1M,10M,25M (CPU), 124M,350M,774M,1.5B (GPT-2), 2.7B,6.7B,13B "
        f"(GPT-3) [default: {DEFAULT_PRESETS}, or only the custom model when --layers is given].",
    ),
    mode: str = typer.Option("train,prefill,decode", "--mode", help="train, prefill, decode, comma-separated."),
    batch: int = typer.Option(8, "--batch", min=1, max=MAX_LEN, help="Batch size B (sequences per step)."),
    seq_len: int | None = typer.Option(
        None, "--seq-len", min=1, max=MAX_LEN, help="Tokens per sequence T for train [default: each model's context]."
    ),
    prompt_len: int | None = typer.Option(
        None, "--prompt-len", min=1, max=MAX_LEN, help="Prompt length P for prefill and decode [default: T/2]."
    ),
    new_tokens: int | None = typer.Option(
        None, "--new-tokens", min=1, max=MAX_LEN,
        help="Tokens decode generates into its static KV cache [default: T-P].",
    ),
    dtype: str = typer.Option(
        "auto", "--dtype",
        help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16. Train keeps fp32 weights "
        "and uses autocast for 16-bit dtypes; prefill and decode cast the weights.",
    ),
    compile: bool = typer.Option(False, "--compile", help="Also run train and prefill under torch.compile."),
    cuda_graphs: bool = typer.Option(
        False, "--cuda-graphs", help="Also run decode captured in a CUDA graph (CUDA only; skipped on CPU)."
    ),
    layers: int | None = typer.Option(None, "--layers", min=1, max=MAX_DIM, help="Custom model: layers L."),
    d_model: int | None = typer.Option(None, "--d-model", min=1, max=MAX_DIM, help="Custom model: width d."),
    heads: int | None = typer.Option(
        None, "--heads", min=1, max=MAX_DIM, help="Custom model: attention heads (divide d)."
    ),
    vocab: int | None = typer.Option(
        None, "--vocab", min=1, max=MAX_LEN, help="Custom model: vocabulary [default: 50304]."
    ),
    flop_convention: str = typer.Option(
        "full", "--flop-convention", help="Attention FLOPs: full (PaLM, nanoGPT) or causal (halved)."
    ),
    shared: SharedOptions = SharedOptions(),
) -> ExitStatus:
    """Tokens/s, MFU and memory (measured vs analytic) of a GPT across parameter counts."""
    plan = model_plan(  # before the sweep's imports: a bad option is told before torch loads, where it can be
        shared.device, presets=presets, mode=mode, batch=batch, seq_len=seq_len, prompt_len=prompt_len,
        new_tokens=new_tokens, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs, layers=layers,
        d_model=d_model, heads=heads, vocab=vocab, flop_convention=flop_convention,
    )
    from .sweep import run_sweep

    return run_sweep("model", plan, shared, extra_tables=model_report_tables)


def model_report_tables(run) -> list:
    """The model tables in place of the generic ones (they show what the generic cells showed)."""
    from ..reports.model_report import model_tables
    from ..reports.planner import preset_plans
    from ..reports.select import latest

    return model_tables(run, plans=preset_plans(latest(run.records)))


def model_plan(
    device: str, *, presets: str | None, mode: str, batch: int, seq_len: int | None, prompt_len: int | None,
    new_tokens: int | None, dtype: str, compile: bool, cuda_graphs: bool, layers: int | None,
    d_model: int | None, heads: int | None, vocab: int | None, flop_convention: str,
) -> list:
    """The model cases these options describe (the command's and a suite case's); BadInput if invalid."""
    from ..reports.errors import BadInput
    from .parse import parse_choices

    modes = parse_choices(mode, MODE_CHOICES, "--mode")
    conv = parse_choices(flop_convention, ("full", "causal"), "--flop-convention")
    if len(conv) != 1:
        raise BadInput("--flop-convention: give one of full, causal")
    custom = custom_model(layers, d_model, heads, vocab)

    from ..profilers.device import resolve_device
    from ..workloads.gpt import PRESETS
    from ..workloads.model import ModelConfig, cases

    # --presets as given; without it the tiny presets, or only the custom model when there is one.
    if presets is None:
        names = [] if custom else parse_presets(DEFAULT_PRESETS, list(PRESETS))
    else:
        names = parse_presets(presets, list(PRESETS))
    dev = resolve_device(device)
    check_dtype(dtype, dev)
    cfg = ModelConfig(
        presets=names, modes=modes, batch=batch, seq_len=seq_len, prompt_len=prompt_len, new_tokens=new_tokens,
        dtype=dtype, compile=compile, cuda_graphs=cuda_graphs, custom=custom, flop_convention=conv[0],
    )
    try:
        plan = cases(cfg, dev)
    except ValueError as e:
        raise BadInput(str(e)) from None
    check_gpt_tensors(plan)
    return plan


def gpt_tensors(params: dict) -> list[tuple[str, tuple[int, ...]]]:
    """The largest tensors one GPT case (`xfbench model` or `parallel`) makes, as (what, shape)."""
    b, t, d, v = params["batch"], params["seq_len"], params["n_embd"], params["vocab_size"]
    out = [
        ("logits (B, T, vocab)", (b, t, v)), ("MLP activations (B, T, 4d)", (b, t, 4 * d)),
        ("token embedding (vocab, d)", (v, d)), ("position embedding (context, d)", (params["block_size"], d)),
    ]
    if params.get("new_tokens"):  # decode's static cache: every layer's keys (and as many values)
        heads = params["n_head"]
        shape = (params["n_layer"], b, heads, t + params["new_tokens"], d // heads)
        out.append(("KV cache (L, B, heads, P+M, d/heads)", shape))
    return out


def check_gpt_tensors(plan: list) -> None:
    """BadInput if a case of `plan` would make a tensor past parse.MAX_TENSOR_ELEMENTS."""
    from .parse import check_elements

    for case in plan:
        for what, shape in gpt_tensors(case.params):
            check_elements(shape, what, case.name)
