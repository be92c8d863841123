"""`xfbench plan`: compute-optimal training tokens, FLOPs, device-hours and energy for a model size."""

import math
import re
from pathlib import Path

import typer

from .parse import MAX_DIM, MAX_LEN, MAX_PEAK_TFLOPS
from .status import ExitStatus

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
# Bounds of a plan's inputs: past them a number is a typo (or inf), not a model, and the plan
# would print nonsense such as "0 h". Each is far beyond what exists.
MAX_PARAMS = 1e15  # 1000x the largest dense models trained (~1e12)
MAX_TOKENS_PER_PARAM = 1e6  # ~500x the most over-trained models (Llama 3 8B: 15T tokens, ~1,900 per parameter)
MAX_TOKENS_PER_S = 1e12  # per device: ~1e5x a small model's training rate on the fastest GPU
MAX_DEVICES = 1 << 24  # 16.8M: ~100x the largest training clusters


def parse_count(text: str, option: str = "--params") -> float:
    """'1.3B', '350M', '124e6', '7b', '1300000000' -> a positive number; BadInput otherwise."""
    from ..reports.errors import BadInput

    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*([kKmMbBgGtT]?)\s*", text)
    if not m:
        raise BadInput(f"{option}: '{text}' is not a count (e.g. 1.3B, 350M, 124e6)")
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not 0 < value < math.inf:
        raise BadInput(f"{option}: '{text}' must be a finite count above 0")
    if not 1 <= value <= MAX_PARAMS:
        raise BadInput(f"{option}: '{text}' is outside 1..{MAX_PARAMS:g} (1000x the largest models trained)")
    return value


def latest_model_run(root: Path = Path("runs")) -> Path | None:
    """The newest `xfbench model` run folder under ./runs (names start with a UTC timestamp)."""
    found = sorted(p.parent for p in root.glob("*-model/results.jsonl"))
    return found[-1] if found else None


def plan(
    params: str = typer.Option(..., "--params", help="Model size N (without position embedding): 1.3B, 350M, 1T."),
    tokens_per_param: float = typer.Option(
        20.0, "--tokens-per-param", min=1e-9, max=MAX_TOKENS_PER_PARAM,
        help="Training tokens per parameter (Chinchilla: 20).",
    ),
    seq_len: int | None = typer.Option(
        None, "--seq-len", min=1, max=MAX_LEN,
        help="Training context T of the target [default: the measured one with --results; else 1024 at GPT-2's "
        "sizes, 2048 (GPT-3's) otherwise].",
    ),
    layers: int | None = typer.Option(
        None, "--layers", min=1, max=MAX_DIM,
        help="Layers L of the target; with --d-model [default: as measured at N, else the GPT-2 or nearest GPT-3 row].",
    ),
    d_model: int | None = typer.Option(
        None, "--d-model", min=1, max=MAX_DIM, help="Width d of the target; with --layers."
    ),
    flop_convention: str = typer.Option(
        "full", "--flop-convention", help="Attention FLOPs: full (PaLM, nanoGPT) or causal (halved)."
    ),
    tokens_per_s: float | None = typer.Option(
        None, "--tokens-per-s", min=1e-9, max=MAX_TOKENS_PER_S, help="Training throughput of one device, tokens/s."
    ),
    results: Path | None = typer.Option(
        None, "--results",
        help="Results file (or run folder) of `xfbench model`: measured train FLOP/s [default: the newest "
        "runs/*-model folder here, when no other throughput is given].",
    ),
    mfu: float | None = typer.Option(None, "--mfu", min=1e-9, max=1.0, help="Assumed MFU (0..1); needs --peak-tflops."),
    peak_tflops: float | None = typer.Option(
        None, "--peak-tflops", min=1e-9, max=MAX_PEAK_TFLOPS, help="Peak TFLOP/s of one device."
    ),
    devices: int = typer.Option(
        1, "--devices", min=1, max=MAX_DEVICES, help="Devices training in parallel (perfect scaling)."
    ),
) -> ExitStatus:
    """Compute-optimal training estimate: D = 20·N tokens, 6·N·D FLOPs, device-hours, kWh."""
    from ..reports import planner
    from ..reports.errors import BadInput
    from ..reports.model_flops import CONVENTIONS
    from ..reports.model_report import plan_table
    from ..reports.terminal import print_table
    from .console import make_console
    from .parse import interrupt_says

    with interrupt_says("plan interrupted: it measures and writes nothing, so nothing was lost"):
        n = parse_count(params)
        given = [name for name, v in (("--tokens-per-s", tokens_per_s), ("--results", results), ("--mfu", mfu)) if v]
        if len(given) > 1:
            raise BadInput(f"give one throughput source, not {' and '.join(given)}")
        if (mfu is None) != (peak_tflops is None):
            raise BadInput("--mfu and --peak-tflops go together")
        if flop_convention not in CONVENTIONS:
            raise BadInput(f"--flop-convention: give one of {', '.join(CONVENTIONS)}")
        points, auto = None, not given
        if auto:
            results = latest_model_run()
        if results is not None:
            from ..reports.store import load_results

            with interrupt_says(f"interrupted while loading {results}: plan writes nothing, so nothing was lost"):
                points = planner.train_points(load_results(results).records, flop_convention)
            if not points and not auto:
                raise BadInput(f"--results {results}: the results file has no `xfbench model` train record that ran")
        try:
            shape = planner.target_shape(n, seq_len, layers, d_model, flop_convention, points)
        except ValueError as e:
            raise BadInput(str(e)) from None
        console = make_console()
        throughput = None
        if tokens_per_s:
            throughput = planner.from_tokens_per_s(tokens_per_s)
        elif points:
            throughput = planner.from_results(n, shape, points)
            console.print(f"throughput measured in {results}" + (" (newest model run)" if auto else ""), markup=False)
        elif mfu is not None:
            throughput = planner.from_mfu(n, shape, mfu, peak_tflops * 1e12)
        try:
            estimate = planner.make_plan(n, tokens_per_param, throughput, devices, shape)
        except ValueError as e:
            raise BadInput(str(e)) from None
        print_table(plan_table(estimate), console)
        return ExitStatus.OK
