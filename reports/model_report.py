"""Model-scale report: pure functions from `xfbench model` records to format-neutral Tables.

Per mode, one row per (model, variant): tokens/s, step time, MFU, measured peak memory
against the analytic estimate and the unexplained residual (decode: time per token and its
ratio to the bandwidth floor); then the scaling exponents across models, the attention
share of FLOPs, and compute-optimal training estimates at the measured rates.
"""

from __future__ import annotations

from typing import Any

from .scaling import fit_loglog
from .schema import Record, RunResult
from .tables import Cell, Table
from .units import fmt_bytes, fmt_exponent, fmt_flops, fmt_pct, fmt_rate, fmt_size, fmt_time

# NOTE: the same text as workloads.model.TOKENS_DEFINITION, which records carry in
# info['tokens_definition']; this copy only serves records written without it.
TOKENS_DEFINITION = (
    "tokens/s = tokens per step / median step time; a train or prefill step processes "
    "B·T input tokens (B sequences of T), a decode step generates B tokens (one per sequence)"
)
MFU_NOTE = (
    "MFU = analytic FLOP/s / peak: 'measured' against the calibrated peak (xfbench env --calibrate), "
    "'spec' against the device's spec sheet; '-' where the record has no such metric"
)
WORKLOAD = "model"


def sci(x: float | None) -> str:
    """A large count in short scientific notation: 2.028e20."""
    if x is None:
        return "-"
    mantissa, _, exp = f"{x:.4g}".partition("e")
    return f"{mantissa}e{int(exp)}" if exp else mantissa


def _model_records(records: list[Record]) -> list[Record]:
    return [r for r in records if r.workload == WORKLOAD]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _status_cell(r: Record) -> Cell:
    """The status of a record that did not run; its reason is listed under the table."""
    return Cell("OOM" if r.status == "oom" else r.status, "dim" if r.status == "skipped" else "bad")


def _residual(r: Record) -> tuple[Cell, Cell]:
    """(analytic, measured - analytic) cells for the in-step peak."""
    analytic = _num(r.info.get("mem_analytic_step_bytes"))
    measured = r.memory.peak_bytes if r.memory is not None else None
    if analytic is None:
        return Cell("-"), Cell("-")
    if measured is None:
        return Cell(fmt_bytes(analytic)), Cell("-")
    res = measured - analytic
    rel = res / measured if measured else None
    text = fmt_bytes(res) + (f" ({rel:+.0%})" if rel is not None else "")
    return Cell(fmt_bytes(analytic)), Cell(text, "warn" if rel is not None and abs(rel) > 0.5 else None)


def _notes_cell(r: Record) -> Cell:
    parts, style = [], None
    if "compile_s" in r.info:
        parts.append(f"compile {fmt_time(_num(r.info['compile_s']))}")
    recompiles = r.info.get("recompiles_in_timed_loop")
    if recompiles:
        parts.append(f"RECOMPILED x{recompiles} while timed")
        style = "bad"
    if r.warnings:
        parts.append(", ".join(r.warnings))
        style = style or "warn"
    return Cell("; ".join(parts), style)


def _length(r: Record) -> str:
    p = r.params
    if p.get("mode") == "decode":
        return f"{p.get('seq_len')}+{p.get('new_tokens')}"
    return str(p.get("seq_len", "-"))


def mode_table(label: str, recs: list[Record]) -> Table:
    """One table per label (mode, dtype, batch): rows are models (smallest first) x variants."""
    decode = recs[0].params.get("mode") == "decode"
    head = ["model", "params", "variant", "P+M" if decode else "T", "tokens/s"]
    if decode:
        head += ["time/token", "x floor", "KV cache"]
    else:
        head += ["step time", "FLOP/s", "MFU measured", "MFU spec"]
    head += ["peak mem", "analytic", "residual", "notes"]
    latest = {(r.size, r.variant): r for r in recs}  # a resumed case: the last record wins
    rows = []
    for (size, _variant), r in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        row = [Cell(str(r.params.get("preset", ""))), Cell(fmt_size(size)), Cell(r.variant), Cell(_length(r))]
        if r.status != "ok" or r.time is None:
            row.append(_status_cell(r))
            row += [Cell("")] * (len(head) - len(row))
            rows.append(row)
            continue
        row.append(Cell(fmt_rate(_num(r.metrics.get("tokens_per_s")), "tok")))
        if decode:
            over = _num(r.metrics.get("time_over_floor"))
            row += [
                Cell(fmt_time(r.time.median_s)),
                Cell("-" if over is None else f"{over:.2f}x"),
                Cell(fmt_bytes(_num(r.info.get("kv_cache_bytes")))),
            ]
        else:
            row += [
                Cell(fmt_time(r.time.median_s)),
                Cell(fmt_flops(_num(r.metrics.get("flop_per_s")))),
                Cell(fmt_pct(_num(r.metrics.get("mfu_measured")))),
                Cell(fmt_pct(_num(r.metrics.get("mfu_spec")))),
            ]
        measured = r.memory.peak_bytes if r.memory is not None else None
        row += [Cell(fmt_bytes(measured)), *_residual(r), _notes_cell(r)]
        rows.append(row)
    conventions = sorted({str(r.info["flop_convention"]) for r in recs if "flop_convention" in r.info})
    formulas = sorted({str(r.info["mem_formula"]) for r in recs if "mem_formula" in r.info})
    methods = sorted({r.memory.method for r in recs if r.memory is not None})
    notes = [str(recs[0].info.get("tokens_definition", TOKENS_DEFINITION))]  # as the workload defines it
    if decode:
        notes.append(
            "time/token = one decode step (B tokens); x floor = time / (bytes of weights + KV cache read per "
            "step / measured bandwidth), '-' until the record has metrics['time_over_floor']"
        )
    else:
        notes.append(MFU_NOTE)
    notes += [f"FLOPs: {c}" for c in conventions]
    notes.append(
        "peak mem: measured peak above the memory in use before a step"
        + (f" ({', '.join(methods)})" if methods else "")
        + "; analytic: the estimate of that same in-step peak; residual = measured - analytic"
    )
    notes += [f"analytic memory: {f}" for f in formulas]
    notes += [
        f"{r.params.get('preset')} {r.variant}: {r.status}: {r.reason}"
        for r in sorted(latest.values(), key=lambda r: (r.size, r.variant)) if r.status != "ok" and r.reason
    ]
    return Table(f"{label}: throughput and memory by model size", head, rows, notes)


def scaling_table(records: list[Record]) -> Table | None:
    """Fitted exponents k of tokens/s ~ N^k and peak memory ~ N^k per (mode, variant)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.label, r.variant), []).append(r)
    rows = []
    for (label, variant), recs in groups.items():
        ok = [r for r in recs if r.status == "ok" and r.time is not None]
        tps = [(float(r.size), _num(r.metrics.get("tokens_per_s"))) for r in ok]
        tps = [(n, v) for n, v in tps if v]
        mem = [(float(r.size), float(r.memory.peak_bytes)) for r in ok if r.memory is not None and r.memory.peak_bytes]
        ana = [(float(r.size), _num(r.info.get("mem_analytic_bytes"))) for r in ok]
        ana = [(n, v) for n, v in ana if v]

        def k(pts):
            return fit_loglog(*zip(*pts, strict=True)) if len(pts) >= 2 else None

        presets = ", ".join(str(r.params.get("preset")) for r in sorted(ok, key=lambda r: r.size)) or "none"
        failed = ", ".join(f"{r.params.get('preset')}: {r.status}" for r in recs if r.status in ("oom", "error"))
        rows.append([
            Cell(label), Cell(variant), Cell(fmt_exponent(k(tps))), Cell(fmt_exponent(k(mem))),
            Cell(fmt_exponent(k(ana))), Cell(presets), Cell(failed, "bad" if failed else None),
        ])
    if not rows:
        return None
    return Table(
        "scaling across model sizes: y ~ params^k (least squares in log-log over the models that ran)",
        ["table", "variant", "tokens/s k", "peak mem k", "analytic total mem k", "models fitted", "failed"],
        rows,
        [
            "FLOPs per token grow as N, so a compute-bound step gives tokens/s k ≈ -1 (closer to 0 when "
            "small models are overhead-bound); training memory (16 B/param + activations) grows with k ≤ 1",
        ],
    )


def attention_share_table(records: list[Record]) -> Table | None:
    """Per model and T: the attention share of FLOPs, exact and as T/(6d)."""
    seen: dict[tuple, list[Record]] = {}
    for r in records:
        if r.params.get("mode") == "decode" or "attention_share" not in r.info:
            continue
        seen.setdefault((r.size, r.params.get("seq_len")), []).append(r)
    if not seen:
        return None
    rows = []
    for (size, t), rs in sorted(seen.items()):
        r = rs[0]
        d = r.params.get("n_embd")
        approx = t / (6.0 * d) if t and d else None
        modes = ", ".join(dict.fromkeys(str(x.params.get("mode")) for x in rs))
        rows.append([
            Cell(str(r.params.get("preset"))), Cell(fmt_size(size)), Cell(str(r.params.get("n_layer"))), Cell(str(d)),
            Cell(str(t)), Cell(modes), Cell(fmt_pct(approx)), Cell(fmt_pct(_num(r.info.get("attention_share")))),
        ])
    return Table(
        "attention share of FLOPs",
        ["model", "params", "L", "d", "T", "modes", "T/(6d)", "attention / total"],
        rows,
        [
            "T/(6d): attention-score FLOPs (12·L·d·T per token in training) relative to the 6N term when "
            "N ≈ 12·L·d² (Kaplan et al. 2020); attention / total: 12·L·d·T / (6N + 12·L·d·T) with this model's N "
            "and the record's convention (halved when causal); prefill has the same share (4·L·d·T / (2N + 4·L·d·T))",
        ],
    )


def compute_optimal_table(plans: list[tuple[str, Any]]) -> Table | None:
    """One row per trained model: Chinchilla tokens, 6ND, device-hours at the measured rate.

    Args:
        plans: (model name, workloads.planner.Plan) pairs.
    """
    if not plans:
        return None
    rows = []
    for name, p in plans:
        tp = p.throughput
        rows.append([
            Cell(name), Cell(fmt_size(p.n_params)), Cell(sci(p.tokens)), Cell(sci(p.flops)),
            Cell(fmt_rate(tp.tokens_per_s if tp else None, "tok")), Cell(_hours(p.device_hours)),
            Cell(sci(p.kwh)),
        ])
    return Table(
        "compute-optimal training at the measured rate (extrapolation)",
        ["model", "params N", "tokens D", "FLOPs 6ND", "tokens/s (1 device)", "device-hours", "energy kWh"],
        rows,
        [
            "D = 20·N (Hoffmann et al. 2022, Chinchilla); C = 6·N·D (Kaplan et al. 2020); device-hours = D / "
            "measured train tokens/s / 3600 at this run's B, T and dtype; kWh from metrics['j_per_token'] when "
            "measured ('-' otherwise). Extrapolations: real runs differ in batch, precision and parallelism.",
        ],
    )


def plan_table(plan: Any) -> Table:
    """The `xfbench plan` output: one row per quantity with its value and its source."""
    tp = plan.throughput
    rows = [
        ["parameters N", fmt_size(plan.n_params), "given (--params)"],
        [f"training tokens D = {plan.tokens_per_param:g}·N", sci(plan.tokens), plan.sources[0]],
        ["training FLOPs C = 6·N·D", sci(plan.flops), plan.sources[1]],
    ]
    if tp is not None:
        rows += [
            ["throughput (tokens/s, 1 device)", fmt_rate(tp.tokens_per_s, "tok"), tp.source],
            ["achieved FLOP/s (6N per token)", fmt_flops(6.0 * plan.n_params * tp.tokens_per_s), "derived"],
            ["device-hours", _hours(plan.device_hours), "D / tokens/s / 3600 (extrapolation)"],
            [
                f"wall-clock on {plan.devices} device(s)", _hours(plan.wall_hours),
                "device-hours / devices (perfect scaling assumed)",
            ],
            ["energy (kWh)", sci(plan.kwh),
             tp.energy_source or "no energy per token measured (metrics['j_per_token'] absent)"],
        ]
    else:
        rows.append(["device-hours", "-", "give --tokens-per-s, --results FILE, or --mfu with --peak-tflops"])
    return Table(
        "compute-optimal training estimate",
        ["quantity", "value", "source"],
        [[Cell(a), Cell(b), Cell(c, "dim")] for a, b, c in rows],
        ["every time and energy figure is an extrapolation from the stated source, not a measurement"],
    )


def _hours(h: float | None) -> str:
    if h is None:
        return "-"
    if h >= 24 * 365:
        return f"{sci(h)} h ({h / 24 / 365:.3g} years)"
    if h >= 48:
        return f"{sci(h)} h ({h / 24:.3g} days)"
    return f"{sci(h)} h"


def model_tables(run: RunResult, plans: list[tuple[str, Any]] | None = None) -> list[Table]:
    """Every model-report table of a run, in order (empty when it has no model records)."""
    recs = _model_records(run.records)
    by_label: dict[str, list[Record]] = {}
    for r in recs:
        by_label.setdefault(r.label, []).append(r)
    tables = [mode_table(label, rs) for label, rs in by_label.items()]
    extra = [scaling_table(recs), attention_share_table(recs), compute_optimal_table(plans or [])]
    return tables + [t for t in extra if t is not None]
