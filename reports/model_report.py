"""Model-scale report: pure functions from `xfbench model` records to format-neutral Tables.

Per mode, one row per (model, variant): tokens/s, step time ±CI, MFU, measured peak memory
against the analytic estimate and the unexplained residual (decode: time per token and its
ratio to the bandwidth floor); then the scaling exponents across models, the attention
share of FLOPs, and compute-optimal training estimates at the measured rates. These tables
replace the generic ones for `xfbench model`, so each shows what a generic cell showed
(CI, warnings with hints, FLOP convention). Reports never import workloads (torch): what a
workload defines, e.g. tokens/s, comes from the records' info.
"""

from __future__ import annotations

from typing import Any

from .scaling import FAILED, exponent, ran, series
from .schema import Record, RunResult
from .select import latest
from .tables import ENERGY_NOTE, Cell, Table, flop_notes, peak_note, synthetic_notes, warning_notes
from .units import (
    fmt_energy,
    fmt_flops,
    fmt_hours,
    fmt_kwh,
    fmt_rate,
    fmt_size,
    fmt_time,
    sci,
)

NO_TOKENS_DEFINITION = "tokens/s: these records carry no info['tokens_definition']"
MFU_NOTE = (
    "MFU = convention FLOPs / median / peak (the FLOP/s above, not the counted work): 'measured' against the "
    "calibrated peak (xfbench env --calibrate), 'spec' against the device's spec sheet; '-' where the record "
    "has no such metric"
)
WORKLOAD = "model"
# The FLOP cross-check's ratio, under the name each schema gave it: counted / work FLOPs (v2),
# counted / convention FLOPs (a v1 file, migrated by schema.migrate_to_2).
COUNTED_RATIOS = (
    ("flops_counted_over_work", "counted/work"),
    ("flops_counted_over_convention", "counted/convention"),
)


def _model_records(records: list[Record]) -> list[Record]:
    return [r for r in records if r.workload == WORKLOAD]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _status_cell(r: Record) -> Cell:
    """The status of a record that did not run; its reason is listed under the table."""
    return Cell("OOM" if r.status == "oom" else r.status, status="dim" if r.status == "skipped" else "bad",
                note=r.reason)


def _residual(r: Record) -> tuple[Cell, Cell]:
    """(analytic, measured - analytic) cells for the in-step peak."""
    analytic = _num(r.info.get("mem_analytic_step_bytes"))
    measured = r.memory.peak_bytes if r.memory is not None else None
    if analytic is None:
        return Cell(None), Cell(None)
    if measured is None:
        return Cell(analytic, "B"), Cell(None)
    res = measured - analytic
    rel = res / measured if measured else None
    residual = Cell(
        res, "B", suffix=f" ({rel:+.0%})" if rel is not None else "",
        status="warn" if rel is not None and abs(rel) > 0.5 else None,
        note="residual = measured - analytic (relative to measured)",
    )
    return Cell(analytic, "B"), residual


def _time_cell(r: Record) -> Cell:
    t = r.time
    return Cell(t.median_s, "s", ci_rel=t.ci_rel, ci_level=t.ci_level, note=f"median of {t.n} samples")


def _floor_cell(r: Record) -> Cell:
    """Time over the bandwidth floor, or why there is none."""
    over = _num(r.metrics.get("time_over_floor"))
    if over is not None:
        # below a floor: the floor is wrong
        return Cell(over, "ratio", suffix="x", status="bad" if over < 1 else None)
    if r.metrics.get("cache_resident"):
        return Cell("cache-resident", status="dim", note=r.info.get("floor_note"))
    return Cell(None)


def _notes_cell(r: Record) -> Cell:
    parts, style = [], None
    for key, name in COUNTED_RATIOS:
        counted = _num(r.metrics.get(key))
        if counted is not None:
            parts.append(f"{name} {counted:.2f}")
    j_per_token = _num(r.metrics.get("j_per_token"))
    if j_per_token is not None:
        parts.append(f"{fmt_energy(j_per_token)}/token")
    if "compile_s" in r.info:
        parts.append(f"compile {fmt_time(_num(r.info['compile_s']))}")
    recompiles = r.info.get("recompiles_in_timed_loop")
    if recompiles:
        parts.append(f"RECOMPILED x{recompiles} while timed")
        style = "bad"
    if r.warnings:
        parts.append(", ".join(r.warnings))
        style = style or "warn"
    return Cell("; ".join(parts), status=style)


def _length(r: Record) -> str:
    p = r.params
    if p.get("mode") == "decode":
        return f"{p.get('seq_len')}+{p.get('new_tokens')}"
    return str(p.get("seq_len", "-"))


def mode_table(label: str, recs: list[Record], hints: dict[str, str] | None = None) -> Table:
    """One table per label (mode, dtype, batch): rows are models (smallest first) x variants.

    Args:
        label: the table's records' label.
        recs: its records, the latest of each case (model_tables passes latest(...)).
        hints: warning code -> what to do (the results header's warning_hints).
    """
    decode = recs[0].params.get("mode") == "decode"
    head = ["model", "params", "variant", "P+M" if decode else "T", "tokens/s"]
    if decode:
        head += ["time/token", "x floor", "KV cache"]
    else:
        head += ["step time", "FLOP/s", "MFU measured", "MFU spec"]
    head += ["peak mem", "analytic", "residual", "notes"]
    ordered = sorted(recs, key=lambda r: (r.size, r.variant))
    rows = []
    for r in ordered:
        row = [Cell(str(r.params.get("preset", ""))), Cell(r.size, "size"), Cell(r.variant), Cell(_length(r))]
        if r.status != "ok" or r.time is None:
            row.append(_status_cell(r))
            row += [Cell("")] * (len(head) - len(row))
            rows.append(row)
            continue
        row.append(Cell(_num(r.metrics.get("tokens_per_s")), "tok/s"))
        if decode:
            row += [
                _time_cell(r),
                _floor_cell(r),
                Cell(_num(r.info.get("kv_cache_bytes")), "B"),
            ]
        else:
            row += [
                _time_cell(r),
                Cell(_num(r.metrics.get("flop_per_s")), "FLOP/s"),
                Cell(_num(r.metrics.get("mfu_measured")), "%"),
                Cell(_num(r.metrics.get("mfu_spec")), "%"),
            ]
        measured = r.memory.peak_bytes if r.memory is not None else None
        row += [Cell(measured, "B"), *_residual(r), _notes_cell(r)]
        rows.append(row)
    formulas = sorted({str(r.info["mem_formula"]) for r in recs if "mem_formula" in r.info})
    methods = sorted({r.memory.method for r in recs if r.memory is not None})
    # tokens/s as the workload defined it when it wrote the records (workloads.model.TOKENS_DEFINITION)
    definitions = list(dict.fromkeys(str(r.info["tokens_definition"]) for r in recs if "tokens_definition" in r.info))
    notes = [*synthetic_notes(recs), *(definitions or [NO_TOKENS_DEFINITION])]
    if decode:
        notes.append(
            "time/token = median of one decode step (B tokens) ±95% CI of the median (relative); "
            "x floor = time / (bytes of weights + KV cache read per step / the calibrated bandwidth of that "
            "traffic: read); 'cache-resident' where the working set fits in the last-level cache (DRAM "
            "bandwidth then bounds nothing), '-' where the run had no calibrated bandwidth (--no-calibrate)"
        )
    else:
        notes.append("step time = median ±95% CI of the median (relative); FLOP/s = convention FLOPs / median")
        notes.append(MFU_NOTE)
        peak = peak_note(recs)
        if peak:
            notes.append(peak)
    notes += flop_notes(recs)
    notes.append(
        "peak mem: measured peak above the memory in use before a step"
        + (f" ({', '.join(methods)})" if methods else "")
        + "; analytic: the estimate of that same in-step peak; residual = measured - analytic"
    )
    notes += [f"analytic memory: {f}" for f in formulas]
    if any(r.metrics.get("j_per_token") is not None for r in recs):
        notes.append(ENERGY_NOTE)
    notes += warning_notes(recs, hints)
    notes += [
        f"{r.params.get('preset')} {r.variant}: {r.status}: {r.reason}"
        for r in ordered if r.status != "ok" and r.reason
    ]
    return Table(f"{label}: throughput and memory by model size", head, rows, notes)


def scaling_table(records: list[Record]) -> Table | None:
    """Fitted exponents k of tokens/s ~ N^k and of the in-step peak memory ~ N^k, measured and
    analytic side by side (like with like), per (mode, variant).

    The series and the fit are reports.scaling's; unlike its larger-half fit, every model
    that ran counts (a sweep has a handful of models, not a dozen sizes).
    """
    rows = []
    for (label, variant), recs in series(records).items():
        ok = sorted(ran(recs), key=lambda r: r.size)
        k_tps = exponent([(float(r.size), _num(r.metrics.get("tokens_per_s"))) for r in ok])
        k_mem = exponent([(float(r.size), _num(r.memory.peak_bytes)) for r in ok if r.memory is not None])
        k_ana = exponent([(float(r.size), _num(r.info.get("mem_analytic_step_bytes"))) for r in ok])
        presets = ", ".join(str(r.params.get("preset")) for r in ok) or "none"
        failed = ", ".join(f"{r.params.get('preset')}: {r.status}" for r in recs if r.status in FAILED)
        rows.append([
            Cell(label), Cell(variant), Cell(k_tps, "k"), Cell(k_mem, "k"),
            Cell(k_ana, "k"), Cell(presets), Cell(failed, status="bad" if failed else None),
        ])
    if not rows:
        return None
    return Table(
        "scaling across model sizes: y ~ params^k (least squares in log-log over the models that ran)",
        ["table", "variant", "tokens/s k", "measured in-step peak k", "analytic in-step peak k", "models fitted",
         "failed"],
        rows,
        [
            *synthetic_notes(records),
            "FLOPs per token grow as N, so a compute-bound step gives tokens/s k ≈ -1 (closer to 0 when "
            "small models are overhead-bound); training memory (16 B/param + activations) grows with k ≤ 1",
            "in-step peak: memory above what is in use before a step (measured: record.memory.peak_bytes; "
            "analytic: info['mem_analytic_step_bytes'], the estimate of that same peak)",
        ],
    )


def attention_share_table(records: list[Record]) -> Table | None:
    """Per model and T: the attention share of FLOPs, exact and as T/(6d)."""
    seen: dict[tuple, list[Record]] = {}
    for r in records:
        if r.params.get("mode") == "decode" or "attention_share" not in r.info or r.params.get("seq_len") is None:
            continue  # decode, or no T to place it at
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
            Cell(str(r.params.get("preset"))), Cell(size, "size"), Cell(str(r.params.get("n_layer"))), Cell(str(d)),
            Cell(str(t)), Cell(modes), Cell(approx, "%"), Cell(_num(r.info.get("attention_share")), "%"),
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
        plans: (model name, reports.planner.Plan) pairs.
    """
    if not plans:
        return None
    rows = []
    for name, p in plans:
        tp = p.throughput
        rows.append([
            Cell(name), Cell(p.n_params, "size"), Cell(p.tokens, "count"), Cell(p.flops, "count"),
            Cell(tp.tokens_per_s if tp else None, "tok/s"), Cell(p.device_hours, "h"),
            Cell(p.kwh, "kWh"),
        ])
    return Table(
        "compute-optimal training at the measured rate (extrapolation)",
        ["model", "params N", "tokens D", "FLOPs 6ND", "tokens/s (1 device)", "device-hours", "energy"],
        rows,
        [
            "N = params without the position embedding (the N of the FLOP formulas); D = 20·N (Hoffmann et al. "
            "2022, Chinchilla); C = 6·N·D (Kaplan et al. 2020); device-hours = D / measured train tokens/s / 3600 "
            "at this run's B, T and dtype; energy from metrics['j_per_token'] when measured ('-' otherwise). "
            "Extrapolations: real runs differ in batch, precision and parallelism.",
        ],
    )


def plan_table(plan: Any) -> Table:
    """The `xfbench plan` output: one row per quantity with its value and its source.

    Args:
        plan: a reports.planner.Plan.
    """
    tp, shape = plan.throughput, plan.shape
    rows = [
        ["parameters N", fmt_size(plan.n_params), "given (--params); without the position embedding"],
        ["shape", shape.text(), shape.source],
        [f"training tokens D = {plan.tokens_per_param:g}·N", sci(plan.tokens), plan.sources[0]],
        ["training FLOPs C = 6·N·D", sci(plan.flops), plan.sources[1]],
        [
            "with attention (6N + 12·L·d·T)·D", sci(plan.flops_with_attention),
            f"PaLM App. B at T = {shape.seq_len}, {shape.convention} attention"
            + (" (the attention term halved)" if shape.convention == "causal" else "")
            + ": the FLOPs of xfbench model's MFU",
        ],
    ]
    if tp is not None:
        rows += [
            ["throughput (tokens/s, 1 device)", fmt_rate(tp.tokens_per_s, "tok"), tp.source],
            ["achieved FLOP/s (6N + 12·L·d·T per token)", fmt_flops(plan.flops_per_token * tp.tokens_per_s),
             "tokens/s x FLOPs per token"],
            ["device-hours", fmt_hours(plan.device_hours), "D / tokens/s / 3600 (extrapolation)"],
            [
                f"wall-clock on {plan.devices} device(s)", fmt_hours(plan.wall_hours),
                "device-hours / devices (perfect scaling assumed)",
            ],
            ["energy", fmt_kwh(plan.kwh),
             tp.energy_source or "no energy per token measured (metrics['j_per_token'] absent)"],
        ]
    else:
        rows.append(["device-hours", "-", "give --tokens-per-s, --results FILE, or --mfu with --peak-tflops"])
    return Table(
        "compute-optimal training estimate",
        ["quantity", "value", "source"],
        [[Cell(a), Cell(b), Cell(c, status="dim")] for a, b, c in rows],
        ["every time and energy figure is an extrapolation from the stated source, not a measurement"],
    )


def model_tables(run: RunResult, plans: list[tuple[str, Any]] | None = None) -> list[Table]:
    """Every model-report table of a run, in order (empty when it has no model records).

    A resumed case shows only its latest record.
    """
    recs = latest(_model_records(run.records))
    by_label: dict[str, list[Record]] = {}
    for r in recs:
        by_label.setdefault(r.label, []).append(r)
    tables = [mode_table(label, rs, run.header.warning_hints) for label, rs in by_label.items()]
    optimal = compute_optimal_table(plans or [])
    if optimal is not None:
        optimal.notes[:0] = synthetic_notes(recs)  # its rates are the measured (or faked) ones
    extra = [scaling_table(recs), attention_share_table(recs), optimal]
    return tables + [t for t in extra if t is not None]
