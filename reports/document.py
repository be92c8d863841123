"""A report as data: what every document renderer (HTML, Markdown, LaTeX) draws, built once.

`build_document(run)` groups a run by record metadata: one Section per workload in the
records, with that workload's tables (its own builder where reports has one, the generic
results and scaling tables otherwise) and its figures (reports.figures, chosen from the
records' metrics). A workload added later (data-parallel) gets a section, tables and
figures without a change here or in any renderer; data-parallel and collectives have their own tables
(reports.parallel_report) through the same registry. A run with profiled cases (--profile,
--memory-snapshot) gets a Profile section after the workloads' (reports.profile_report).
Nothing here formats a number: tables hold typed cells, and the summary's sentences use
reports.units.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .environment import environment_table
from .parallel_report import collective_tables, parallel_tables
from .schema import Header, Record, RunResult
from .select import latest
from .summary import Finding, findings
from .tables import Cell, Table, all_tables
from .units import plain

# Citations for the conventions the records name (their info strings say which applies).
SOURCES = [
    ("FlashAttention FLOP convention", "Dao et al. 2022, FlashAttention, arXiv:2205.14135"),
    ("6N FLOPs per training token; N ≈ 12·L·d²", "Kaplan et al. 2020, Scaling Laws for Neural Language Models, "
     "arXiv:2001.08361"),
    ("attention FLOPs 12·L·d·T per token; MFU", "Chowdhery et al. 2022, PaLM, arXiv:2204.02311, App. B"),
    ("compute-optimal D = 20·N", "Hoffmann et al. 2022, Training Compute-Optimal LLMs (Chinchilla), "
     "arXiv:2203.15556"),
    ("roofline", "Williams, Waterman, Patterson 2009, Roofline, CACM 52(4)"),
    ("CI of the median from order statistics", "Conover 1999, Practical Nonparametric Statistics, §3.2"),
]


@dataclass
class Section:
    """One workload's part of a report."""

    key: str  # an HTML id: lowercase letters, digits and dashes
    title: str
    workload: str
    intro: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Any] = field(default_factory=list)  # reports.figures.FigureSpec
    # reports.profile_report.ProfileCase, one per profiled case (the Profile section): the HTML
    # draws each case's bar and file links beside its table; `tables` holds the same tables.
    profiles: list[Any] = field(default_factory=list)


@dataclass
class Document:
    """Everything a report shows, in order; renderers draw it and add nothing measured."""

    title: str
    generated_utc: str  # the one field that differs between two renders of the same file
    run: RunResult
    summary: list[Finding]
    sections: list[Section]
    environment: list[Table]
    methodology: list[tuple[str, list[str]]]
    notes: list[str]  # problems met while loading the results file

    @property
    def tables(self) -> list[Table]:
        """Every table of the workload sections, in order (what LaTeX and Markdown export)."""
        return [t for s in self.sections for t in s.tables]


def slug(text: str) -> str:
    """A lowercase id from any text: letters and digits kept, runs of anything else one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _model_tables(run: RunResult) -> list[Table]:
    from .model_report import model_tables
    from .planner import preset_plans

    return model_tables(run, plans=preset_plans(latest(run.records)))


# workload -> its own table builder (a function of a RunResult holding only its records);
# any other workload gets the generic results and scaling tables.
WORKLOAD_TABLES: dict[str, Callable[[RunResult], list[Table]]] = {
    "model": _model_tables,
    "parallel": parallel_tables,
    "collective": collective_tables,
}
WORKLOAD_TITLES = {
    "attention": "Attention across sequence lengths",
    "model": "Models across parameter counts",
    "parallel": "Data-parallel versus one device",
    "collective": "Collective bandwidth",
}


def _subrun(run: RunResult, records: list[Record]) -> RunResult:
    return run.model_copy(update={"records": records})


def _by_workload(run: RunResult) -> dict[str, list[Record]]:
    by_workload: dict[str, list[Record]] = {}
    for r in run.records:
        by_workload.setdefault(r.workload, []).append(r)
    return by_workload


def figure_order(run: RunResult, specs: list[Any] | None = None) -> list[Any]:
    """The figures of the run's sections (default: reports.figures.figure_specs(run)), in the
    order the sections show them."""
    if specs is None:
        from .figures import figure_specs

        specs = figure_specs(run)
    return [s for workload in _by_workload(run) for s in specs if s.workload == workload]


def _sections(run: RunResult, specs: list[Any]) -> list[Section]:
    by_workload = _by_workload(run)
    sections = []
    for workload, recs in by_workload.items():
        sub = _subrun(run, recs)
        tables = WORKLOAD_TABLES.get(workload, all_tables)(sub)
        done = latest(recs)
        counts = {s: sum(r.status == s for r in done) for s in ("ok", "oom", "error", "skipped")}
        intro = [
            f"{len(done)} cases: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            + f"; tables: {len({r.label for r in done})}; swept: {', '.join(dict.fromkeys(r.size_name for r in done))}"
        ]
        sections.append(
            Section(
                key=f"workload-{slug(workload)}",
                title=WORKLOAD_TITLES.get(workload, f"Workload: {workload}"),
                workload=workload,
                intro=intro,
                tables=tables,
                figures=[s for s in specs if s.workload == workload],
            )
        )
    profile = _profile_section(run)
    if profile is not None:  # --profile / --memory-snapshot: what happened inside a step
        sections.append(profile)
    from .repeats_table import repeats_table

    between = repeats_table(run)
    if between is not None:  # `xfbench run --repeat K`: the noise one run's CI cannot show
        sections.append(Section(
            key="between-runs", title="Between runs", workload="between-runs",
            intro=["cases measured in several runs (fresh processes): their spread beside one run's CI"],
            tables=[between],
        ))
    return sections


def _profile_section(run: RunResult) -> Section | None:
    """The Profile section: one table (and bar) per profiled case; None when no record has a profile."""
    from .profile_report import has_profiles, profile_intro, profile_report

    if not has_profiles(run):
        return None
    cases, tables = profile_report(run)
    return Section(
        key="profile", title="Profile: operators inside a step (--profile)", workload="profile",
        intro=profile_intro(run), tables=tables, profiles=cases,
    )


def calibration_summary(header: Header) -> Table | None:
    """The peaks a run's MFU and roofline divided by, as its header recorded them."""
    cal = header.environment.get("calibration")
    if not cal:
        return None
    rows = [
        [Cell(f"{dtype} matmul peak"), Cell(v, "FLOP/s"), Cell("measured", status="dim")]
        for dtype, v in (cal.get("measured_flop_per_s") or {}).items()
    ]
    for kind in ("read", "copy"):
        bw = cal.get(f"measured_{kind}_bytes_per_s")
        if bw is not None:
            rows.append([Cell(f"{kind} bandwidth"), Cell(bw, "B/s"), Cell("measured", status="dim")])
    if cal.get("spec_flop_per_s"):
        rows.append([Cell("spec-sheet peak"), Cell(cal["spec_flop_per_s"], "FLOP/s"), Cell("spec", status="dim")])
    if cal.get("spec_mem_bytes_per_s"):
        rows.append(
            [Cell("spec-sheet bandwidth"), Cell(cal["spec_mem_bytes_per_s"], "B/s"), Cell("spec", status="dim")]
        )
    if cal.get("peak_flops_override"):
        rows.append(
            [Cell("user peak (--peak-tflops)"), Cell(cal["peak_flops_override"], "FLOP/s"), Cell("given", status="dim")]
        )
    notes = [
        f"source: {cal.get('source')}",
        f"level: {cal.get('level')}; {cal.get('threads')} threads on {cal.get('device_name')}",
        f"spec: {cal.get('spec')}",
    ]
    return Table(f"calibration of run {header.run_id}", ["figure", "value", "kind"], rows, notes)


def _environment(run: RunResult) -> list[Table]:
    tables = []
    for h in run.headers or [run.header]:
        env = dict(h.environment)
        env.setdefault("xfbench", h.xfbench)
        env.setdefault("workdir", h.workdir)
        t = environment_table(env)
        t.title = f"environment of run {h.run_id} ({h.command}, {h.created_utc})"
        t.rows.insert(0, [Cell("command"), Cell(" ".join(["xfbench", *h.argv]) if h.argv else h.command)])
        tables.append(t)
        cal = calibration_summary(h)
        if cal is not None:
            tables.append(cal)
    return tables


def _methodology(run: RunResult) -> list[tuple[str, list[str]]]:
    recs = [r for r in latest(run.records) if r.time is not None]
    clocks = sorted({r.time.clock for r in recs})
    targets = sorted({r.time.target_ci_rel for r in recs})
    calls = [r.time.calls_per_sample for r in recs]
    windows = [r.time.n for r in recs]
    timing = [
        f"clock: {', '.join(clocks) or '-'} (perf_counter on CPU; CUDA events with a synchronize per window on "
        "GPU; 'fake' is a deterministic synthetic clock, not a measurement)",
        "each case warms up until its per-call time is stable, then times windows of several calls (one "
        "synchronize per window) until the 95% CI of the median is within the target or the time cap is reached "
        "(then the record says converged: false and carries the warning not_converged)",
    ]
    if recs:
        timing.append(
            f"targets: ±{', ±'.join(plain(100 * t) + '%' for t in targets)} of the median; calls per window "
            f"{min(calls)}..{max(calls)}; windows per case {min(windows)}..{max(windows)}"
        )
    stats = [
        "the time of a case is the median per-call time over its windows; its CI is the distribution-free CI of "
        "the median from order statistics (binomial ranks), shown as a relative half-width (±x%); with fewer "
        "than 6 windows the CI covers less than 95% and says its level",
        "scaling exponents k are least-squares slopes of log(y) on log(size): over the larger half of the sizes "
        "that ran for the generic tables (small sizes are overhead-bound), over every model that ran for models",
        "peak memory is measured in a separate pass, never while timing, above the memory in use before the "
        "step: " + ", ".join(sorted({r.memory.method for r in recs if r.memory is not None}) or ["none measured"]),
    ]
    conventions = sorted(
        {str(r.info[k]) for r in recs for k in ("flop_convention", "work_flop_convention", "bytes_convention",
                                                "mem_formula", "tokens_definition") if k in r.info}
    )
    flops = [
        *conventions,
        "FLOP/s = convention FLOPs / median time; MFU = FLOP/s / peak, 'measured' against this machine's "
        "calibrated dense matmul peak and 'spec' against the spec sheet (where known)",
        "arithmetic intensity = convention FLOPs / ideal bytes moved; a bandwidth floor = bytes / the calibrated "
        "bandwidth of the same kind of traffic (read, or read + write)",
    ]
    sources = [f"{what}: {cite}" for what, cite in SOURCES]
    return [("Timing", timing), ("Statistics", stats), ("FLOP and byte conventions", flops), ("Sources", sources)]


def _title(run: RunResult) -> str:
    commands = ", ".join(dict.fromkeys(h.command for h in run.headers or [run.header]))
    return f"xfbench report: {commands}"


def build_document(run: RunResult, generated_utc: str | None = None, specs: list[Any] | None = None) -> Document:
    """The report of `run`; `generated_utc` defaults to now or SOURCE_DATE_EPOCH (reports.render);
    `specs`: reports.figures.figure_specs(run), when the caller has them already."""
    from .figures import figure_specs
    from .render import generated_utc as now

    stamp = generated_utc or now()
    return Document(
        title=_title(run),
        generated_utc=stamp,
        run=run,
        summary=findings(run),
        sections=_sections(run, figure_specs(run) if specs is None else specs),
        environment=_environment(run),
        methodology=_methodology(run),
        notes=list(run.notes),
    )
