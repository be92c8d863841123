"""Report figures: pure functions from a RunResult to matplotlib figures, as SVG, PDF or PNG bytes.

Which figures a run has comes from record metadata, never from workload names: every label gets
time and memory against its swept size, unless its records carry a figure of merit of their own
(a log-log time exponent over world sizes or message bytes says nothing): records with a scaling
efficiency get efficiency and peak memory per rank against their size instead, records with a bus
bandwidth get bandwidth and time against message size; a workload whose records carry an
arithmetic intensity and a calibrated peak gets a roofline; labels swept over the parameter count
get model scaling (tokens/s, MFU, memory) or, for decode, step time against its bandwidth floor.

matplotlib is imported inside functions (`import xfbench.reports.figures` stays light) and only
through `matplotlib.figure.Figure`, never pyplot: no figure manager, no GUI backend. rcParams are
process-global, so a render holds _LOCK while reports/xfbench.mplstyle is applied. The same results
render byte-identical files: no dates, a fixed SVG hash salt per figure, ids namespaced by key so
SVGs inlined in one HTML page never share an id. Nothing here writes a file.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import units
from .model_report import NO_TOKENS_DEFINITION
from .parallel_report import memory_per_rank
from .scaling import fit_series, ran
from .schema import Record, RunResult
from .select import latest
from .tables import peak_note, synthetic_notes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

FORMATS = ("pdf", "svg", "png")
STYLE = Path(__file__).with_name("xfbench.mplstyle")
# Metadata that would make two renders of the same results differ (dates) is left out.
METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}, "png": {}}
_LOCK = threading.Lock()  # rcParams are global: one styled render at a time

KEY_SLUG_MAX = 60  # longer label slugs are cut and end in a hash of the label
TICKS_AT_SIZES_MAX = 8  # a sweep of up to this many sizes gets a tick at each size...
TICKS_AT_SIZES_RATIO = 1.5  # ...when neighbouring sizes are at least this far apart (labels never overlap)
MIN_SPAN = {"s": 10.0, "B": 8.0, "rate": 10.0}  # a log axis spans at least this factor: >= 2 labelled ticks
FIT_LABEL_GAP = 0.07  # least vertical distance (axes fraction) between two slope labels at one size
MODEL_SIZE_NAMES = ("param",)  # a size_name containing this is a parameter count


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a run, before it is drawn.

    Args:
        key: unique within the run, a filename-safe stem, the same for the same results
            ('time-memory-attention-fwd-float32-full-b1-h8-d64').
        kind: which builder draws it: 'time_memory', 'roofline', 'model_scaling', 'decode_floor',
            'scaling_efficiency', 'bandwidth' (BUILDERS).
        title: one line naming what is plotted.
        caption: how every plotted number was obtained (statistic and CI, fit, FLOP convention,
            calibration source) and what was left out.
        workload: the records' workload (report sections group by it).
        label: the records' label (table) it plots, or None when it spans labels.
    """

    key: str
    kind: str
    title: str
    caption: str
    workload: str
    label: str | None


# --- which figures ----------------------------------------------------------------------------


def _pos(x: Any) -> float | None:
    """x as a float when it is a positive finite number (a log axis can show it), else None."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x <= 0:
        return None
    return float(x)


def _timed(recs: list[Record]) -> list[Record]:
    """Records that ran, were timed, and sit on a log axis (positive size and median)."""
    return [r for r in ran(recs) if _pos(r.size) and _pos(r.time.median_s)]


def _is_model_size(recs: list[Record]) -> bool:
    return any(word in recs[0].size_name.lower() for word in MODEL_SIZE_NAMES)


def _has_floor(recs: list[Record]) -> bool:
    """A decode-like label: swept over params, and it measures against a bandwidth floor."""
    return _is_model_size(recs) and any(
        r.params.get("mode") == "decode"
        or _pos(r.metrics.get("bandwidth_floor_s"))
        or _pos(r.metrics.get("time_over_floor"))
        for r in recs
    )


def _carries(recs: list[Record], metric: str) -> bool:
    """Some timed record of `recs` has a positive `metric` (one a log or ratio axis can show)."""
    return any(_pos(r.metrics.get(metric)) for r in _timed(recs))


def _has_tokens(recs: list[Record]) -> bool:
    return _is_model_size(recs) and any(_pos(r.metrics.get("tokens_per_s")) for r in _timed(recs))


def _slug(text: str) -> str:
    """A filename-safe stem of `text`: ASCII, lower case, '-' between words ('B=1 H=8' -> 'b1-h8')."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("=", "")
    slug = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")
    if slug and len(slug) <= KEY_SLUG_MAX:
        return slug
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    return f"{slug[:KEY_SLUG_MAX].rstrip('-')}-{digest}" if slug else digest


def _unique(base: str, used: set[str]) -> str:
    key, n = base, 1
    while key in used:
        n += 1
        key = f"{base}-{n}"
    used.add(key)
    return key


def figure_specs(run: RunResult) -> list[FigureSpec]:
    """The figures this run has, in a stable order: per workload (first seen), time and memory of
    each label, model scaling and decode floors of the labels that have them, then its roofline."""
    groups: dict[str, dict[str, list[Record]]] = {}
    for r in latest(run.records):
        groups.setdefault(r.workload, {}).setdefault(r.label, []).append(r)
    specs: list[FigureSpec] = []
    used: set[str] = set()

    def add(kind: str, workload: str, label: str | None, title: str, caption: str) -> None:
        key = _unique(f"{kind.replace('_', '-')}-{_slug(label if label is not None else workload)}", used)
        specs.append(FigureSpec(key, kind, title, caption, workload, label))

    for workload, labels in groups.items():
        for label, recs in labels.items():
            name = recs[0].size_name
            if not _timed(recs):
                continue
            if _carries(recs, "scaling_efficiency"):
                add("scaling_efficiency", workload, label,
                    f"{label}: scaling efficiency and peak memory per rank vs {name}", _scaling_caption(recs))
            elif _carries(recs, "busbw_bytes_per_s"):
                add("bandwidth", workload, label, f"{label}: bus bandwidth and time per call vs {name}",
                    _bandwidth_caption(recs))
            else:
                add("time_memory", workload, label, f"{label}: time and peak memory vs {name}",
                    _time_memory_caption(recs))
        for label, recs in labels.items():
            if _has_tokens(recs) and not _has_floor(recs):
                add("model_scaling", workload, label, f"{label}: tokens/s, MFU and memory vs parameter count",
                    _model_scaling_caption(recs))
        for label, recs in labels.items():
            if _has_floor(recs) and _timed(recs):
                add("decode_floor", workload, label, f"{label}: time per step vs its bandwidth floor",
                    _decode_floor_caption(run, recs))
        roof = _roofline_points(run, [r for recs in labels.values() for r in recs])
        if roof:
            add("roofline", workload, None, f"{workload}: roofline (achieved FLOP/s vs arithmetic intensity)",
                _roofline_caption(run, roof))
    return specs


# --- captions (no matplotlib) -----------------------------------------------------------------


def _ci_words(recs: list[Record]) -> str:
    """'95% CI of the median', naming lower levels where few samples gave less coverage."""
    levels = sorted({r.time.ci_level for r in _timed(recs)}, reverse=True)
    if len(levels) <= 1:
        return f"{(levels or [0.95])[0]:.0%} CI of the median"
    lower = ", ".join(f"{lv:.0%}" for lv in levels[1:])
    return f"{levels[0]:.0%} CI of the median ({lower} where fewer samples allowed no more)"


def _not_plotted(recs: list[Record]) -> str | None:
    """'naive: oom at N=8192; flash: skipped at N=128, 256' for the records that did not run."""
    missing: dict[tuple[str, str], list[str]] = {}
    for r in recs:
        if r.status != "ok" or r.time is None:
            missing.setdefault((r.variant, r.status), []).append(units.fmt_size(r.size))
    if not missing:
        return None
    name = recs[0].size_name
    return "Not plotted (see the table for reasons): " + "; ".join(
        f"{variant}: {status} at {name}={', '.join(sizes)}" for (variant, status), sizes in missing.items()
    ) + ("; an x on the horizontal axis marks an OOM size" if any(s == "oom" for _, s in missing) else "") + "."


def _sentences(parts: list[str]) -> str:
    """Caption parts as sentences: each ends in a full stop."""
    return " ".join(p if p.endswith((".", "!", "?")) else f"{p}." for p in (q.strip() for q in parts) if p)


def _conventions(recs: list[Record]) -> list[str]:
    """The FLOP convention FLOP/s and MFU divide (the tables' words: reports.tables.flop_notes)."""
    return [f"FLOPs (convention): {c}" for c in _definitions(recs, "flop_convention")]


def _methods(recs: list[Record]) -> str:
    methods = sorted({r.memory.method for r in recs if r.memory is not None})
    return f" ({', '.join(methods)})" if methods else ""


def _time_memory_caption(recs: list[Record]) -> str:
    name = recs[0].size_name
    parts = [
        *synthetic_notes(recs),
        f"Left: median time per call vs {name}, error bars the {_ci_words(recs)} (record ci_low..ci_high). "
        f"Right: peak memory above baseline{_methods(recs)} vs {name}. Log-log, one line per variant.",
        "k: least-squares slope in log-log over the larger half of the sizes that ran (the scaling table's "
        "fit); k≈2 is quadratic in the swept size, k≈1 linear.",
    ]
    no_memory = sorted({r.variant for r in _timed(recs) if r.memory is None or not _pos(r.memory.peak_bytes)})
    if no_memory:
        parts.append(f"No peak memory measured for: {', '.join(no_memory)}.")
    missing = _not_plotted(recs)
    if missing:
        parts.append(missing)
    return _sentences(parts)


def _definitions(recs: list[Record], key: str) -> list[str]:
    return list(dict.fromkeys(str(r.info[key]) for r in recs if key in r.info))


def _model_scaling_caption(recs: list[Record]) -> str:
    tokens = _definitions(recs, "tokens_definition") or [NO_TOKENS_DEFINITION]
    peak = peak_note(recs)
    parts = [
        *synthetic_notes(recs),
        f"Against the parameter count ({recs[0].size_name}, log scale), one line per variant. Left: tokens/s, "
        f"error bars from the {_ci_words(recs)} step time; {'; '.join(tokens)}.",
        "Middle: MFU = convention FLOPs / median step time / the calibrated peak (measured, not spec)"
        + (f"; {peak}" if peak else "; no record carries mfu_measured (no calibration)") + ".",
        f"Right: peak memory in one step, measured above the memory in use before it{_methods(recs)}, solid, "
        "beside the analytic estimate of that same peak (info['mem_analytic_step_bytes'], dashed).",
        *_conventions(recs),
    ]
    missing = _not_plotted(recs)
    if missing:
        parts.append(missing)
    return _sentences(parts)


def _calibration(run: RunResult, r: Record) -> dict[str, Any]:
    """The calibration of the run that measured `r` (its header's environment), {} without one."""
    try:
        header = run.header_of(r)
    except KeyError:  # a record naming no header of this file: the file's first header
        header = run.header
    cal = header.environment.get("calibration")
    return cal if isinstance(cal, dict) else {}


def _bandwidth(cal: dict[str, Any], r: Record) -> tuple[str, float] | None:
    """(traffic kind, calibrated bytes/s) the record's floor divides by: info['floor_bandwidth'],
    else the copy bandwidth, else the read one."""
    kinds = [r.info["floor_bandwidth"]] if r.info.get("floor_bandwidth") else ["copy", "read"]
    for kind in kinds:
        bw = _pos(cal.get(f"measured_{kind}_bytes_per_s"))
        if bw is not None:
            return str(kind), bw
    return None


def _scaling_caption(recs: list[Record]) -> str:
    name = recs[0].size_name
    definitions = _definitions([r for r in _timed(recs) if _pos(r.metrics.get("scaling_efficiency"))],
                               "scaling_efficiency")
    levels = sorted({r.time.ci_level for r in _timed(recs)})
    level = f"{levels[0]:.0%}" if len(levels) == 1 else f"{levels[0]:.0%}..{levels[-1]:.0%}"
    parts = [
        *synthetic_notes(recs),
        f"Left: scaling efficiency vs {name} (log scale), one line per strategy: "
        + ("; ".join(definitions) if definitions else "metrics.scaling_efficiency")
        + f". Error bars: its {level} CI (metrics.scaling_efficiency_ci_rel, relative). The dashed line at 1 is "
        "linear scaling; the baseline itself (efficiency 1 by definition) is not plotted there.",
        (f"Right: memory per rank vs {name}, log-log: the highest rank's state (weights and AdamW moments it "
         f"holds, local shards under FSDP) plus its step's peak above it (record.ranks, never summed){_methods(recs)}."
         if all(memory_per_rank(r)[1] == "memory/rank" for r in _timed(recs)) else
         f"Right: peak memory per rank vs {name}, log-log: the highest of the ranks' own peaks (record.ranks, "
         f"never summed), measured above the memory in use before a step{_methods(recs)}."),
        *(f"Tokens: {d}" for d in _definitions(recs, "tokens_definition")),
    ]
    bare = [f"{r.variant} at {name}={units.fmt_size(r.size)}" for r in _timed(recs)
            if not _pos(r.metrics.get("scaling_efficiency")) and _pos(r.metrics.get("tokens_per_s"))
            and r.info.get("scaling_efficiency")]
    if bare:
        parts.append(f"No efficiency (left) for: {', '.join(bare)}.")
    missing = _not_plotted(recs)
    if missing:
        parts.append(missing)
    return _sentences(parts)


def _bandwidth_caption(recs: list[Record]) -> str:
    name = recs[0].size_name
    factors = list(dict.fromkeys(f"{r.variant} {r.info['busbw_factor']}" for r in _timed(recs)
                                 if r.info.get("busbw_factor")))
    parts = [
        *synthetic_notes(recs),
        f"Left: bus bandwidth vs {name}, log-log, one line per op: "
        + "; ".join(_definitions(recs, "bandwidth_convention") or ["metrics.busbw_bytes_per_s"])
        + (f" (factors: {', '.join(factors)}, n the world size)" if factors else "")
        + f". Error bars: the {_ci_words(recs)} time carried through (bandwidth is bytes / time).",
        f"Right: median time per call vs {name}, error bars the {_ci_words(recs)}; each window is the max over "
        "ranks.",
        *_definitions(recs, "backend_note"),
    ]
    missing = _not_plotted(recs)
    if missing:
        parts.append(missing)
    return _sentences(parts)


def _decode_floor_caption(run: RunResult, recs: list[Record]) -> str:
    name = recs[0].size_name
    floors: dict[tuple[str, float], set[str]] = {}
    for r in _timed(recs):
        bw = _bandwidth(_calibration(run, r), r)
        if bw and _pos(r.metrics.get("bandwidth_floor_s")):
            floors.setdefault(bw, set()).add(str(_calibration(run, r).get("source", "calibration")))
    parts = [
        *synthetic_notes(recs),
        f"Time per step (median, error bars the {_ci_words(recs)}) vs the parameter count ({name}, log-log), "
        "beside its bandwidth floor (dashed, hollow markers): the bytes a step must read (weights and KV cache, "
        "info['floor_bytes']) / the calibrated bandwidth of that traffic"
        + (": " + "; ".join(f"{kind} {units.fmt_rate(bw, 'B')} ({', '.join(sorted(src))})"
                            for (kind, bw), src in sorted(floors.items())) if floors else "")
        + ". A time below its floor means the floor is wrong.",
    ]
    resident = [r for r in _timed(recs) if r.metrics.get("cache_resident") and not _pos(r.metrics.get(
        "bandwidth_floor_s"))]
    if resident:
        parts.append(
            "Cache-resident, plotted without a floor (the working set stays in the last-level cache, so DRAM "
            "bandwidth bounds nothing): "
            + ", ".join(f"{r.variant} at {name}={units.fmt_size(r.size)}" for r in resident) + "."
        )
    unfloored = [r for r in _timed(recs) if not r.metrics.get("cache_resident")
                 and not _pos(r.metrics.get("bandwidth_floor_s"))]
    if unfloored:
        parts.append("No floor (no calibrated bandwidth, --no-calibrate): "
                     + ", ".join(f"{r.variant} at {name}={units.fmt_size(r.size)}" for r in unfloored) + ".")
    missing = _not_plotted(recs)
    if missing:
        parts.append(missing)
    return _sentences(parts)


@dataclass(frozen=True)
class _RoofPoint:
    record: Record
    intensity: float  # FLOP/byte
    flop_per_s: float
    dtype: str
    peak: float  # FLOP/s
    traffic: str  # 'copy' | 'read'
    bandwidth: float  # bytes/s
    source: str


def _roofline_points(run: RunResult, recs: list[Record]) -> list[_RoofPoint]:
    """Records with an arithmetic intensity and FLOP/s whose run calibrated both their peak and
    their bandwidth; [] (no roofline) otherwise."""
    out = []
    for r in _timed(recs):
        intensity, flops = _pos(r.metrics.get("arithmetic_intensity")), _pos(r.metrics.get("flop_per_s"))
        cal = _calibration(run, r)
        dtype = str(r.info.get("peak_dtype") or r.params.get("dtype") or r.info.get("dtype"))
        peak = _pos((cal.get("measured_flop_per_s") or {}).get(dtype))
        bw = _bandwidth(cal, r)
        if intensity and flops and peak and bw:
            out.append(_RoofPoint(r, intensity, flops, dtype, peak, bw[0], bw[1], str(cal.get("source", "-"))))
    return out


def _roofline_caption(run: RunResult, points: list[_RoofPoint]) -> str:
    recs = [p.record for p in points]
    peaks = sorted({(p.dtype, p.peak) for p in points})
    bws = sorted({(p.traffic, p.bandwidth) for p in points})
    ridges = sorted({p.peak / p.bandwidth for p in points})
    sources = sorted({p.source for p in points})
    parts = [
        *synthetic_notes(recs),
        "Achieved FLOP/s (convention FLOPs / median time per call) vs arithmetic intensity (convention FLOPs / "
        "bytes moved per call), log-log, one point per record, a line joining each variant's sizes.",
        "Roofs from this machine's calibration (measured, not spec): compute "
        + ", ".join(f"{d} {units.fmt_flops(p)}" for d, p in peaks)
        + " (dense matmul); bandwidth " + ", ".join(f"{k} {units.fmt_rate(b, 'B')}" for k, b in bws)
        + " (the traffic kind the records' floors use); ridge at "
        + ", ".join(units.plain(x) for x in ridges) + " FLOP/byte. Calibration: " + "; ".join(sources) + ".",
        *_conventions(recs),
        *(f"Bytes: {b}" for b in _definitions(recs, "bytes_convention")),
    ]
    resident = sum(1 for r in recs if r.metrics.get("cache_resident"))
    if resident:
        parts.append(f"{resident} of {len(recs)} points are cache-resident (working set in the last-level "
                     "cache): DRAM bandwidth does not bound them, so they may sit above the bandwidth roof.")
    shown = {id(r) for r in recs}  # identity: pydantic's == compares every field
    left = [r for r in latest(run.records) if r.workload == recs[0].workload and r.status == "ok"
            and _pos(r.metrics.get("arithmetic_intensity")) and id(r) not in shown]
    if left:
        parts.append(f"{len(left)} records with an intensity are left out: their run calibrated no peak for "
                     "their dtype or no bandwidth.")
    return _sentences(parts)


# --- drawing ----------------------------------------------------------------------------------


@contextmanager
def _styled(key: str) -> Iterator[None]:
    """xfbench.mplstyle over matplotlib's defaults (never the user's matplotlibrc), with an SVG hash
    salt of this figure's own, held under _LOCK."""
    import matplotlib as mpl
    import matplotlib.style

    with _LOCK, matplotlib.style.context(STYLE, after_reset=True), mpl.rc_context({"svg.hashsalt": key}):
        yield


def _figure(ncols: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """A bare Figure (no pyplot, no layout engine: _place positions the axes in one pass)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, [fig.add_axes((0.1, 0.1, 0.8, 0.8)) for _ in range(ncols)]


@dataclass(frozen=True)
class _Look:
    color: str
    marker: str
    linestyle: str

    def props(self, **kw: Any) -> dict[str, Any]:
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle, **kw}


def _looks(run: RunResult) -> dict[str, _Look]:
    """Each variant's colour and marker, from the style's cycle in first-seen order over the whole
    run, so a variant looks the same in every figure; past the cycle, line styles change."""
    import matplotlib as mpl

    cycle = mpl.rcParams["axes.prop_cycle"].by_key()
    colors, markers = cycle["color"], cycle.get("marker", ["o"])
    variants = list(dict.fromkeys(r.variant for r in latest(run.records)))
    return {
        v: _Look(colors[i % len(colors)], markers[i % len(markers)], ("-", "-.", ":")[(i // len(colors)) % 3])
        for i, v in enumerate(variants)
    }


def _records(run: RunResult, spec: FigureSpec) -> list[Record]:
    """The latest records the figure plots; a spec this run does not have is refused."""
    recs = [r for r in latest(run.records)
            if r.workload == spec.workload and (spec.label is None or r.label == spec.label)]
    if not _timed(recs):
        raise ValueError(f"figure {spec.key!r}: this run has no timed records of {spec.label or spec.workload!r}")
    return recs


def _by_variant(recs: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in recs:
        out.setdefault(r.variant, []).append(r)
    return out


# Tick text of a value in a unit, always through reports.units.
_TICK_TEXT: dict[str, Callable[[float], str]] = {
    "s": units.fmt_time,
    "B": units.fmt_bytes,
    "FLOP/s": units.fmt_flops,
    "tok/s": lambda v: units.fmt_rate(v, "tok"),
    "size": units.fmt_size,
    "%": units.fmt_pct,
    "plain": units.plain,
    "B/s": lambda v: units.fmt_rate(v, "B"),
}


def _log_limits(lo: float, hi: float, min_factor: float, right: float = 0.0) -> tuple[float, float]:
    """Log-axis limits around [lo, hi]: padded 6% each side (plus `right` of the span on the high
    side), widened about the middle to at least `min_factor`."""
    a, b = math.log10(lo), math.log10(hi)
    need = math.log10(min_factor)
    if b - a < need:
        mid = (a + b) / 2
        a, b = mid - need / 2, mid + need / 2
    span = b - a
    return 10 ** (a - 0.06 * span), 10 ** (b + (0.06 + right) * span)


BYTE_TICKS_MAX = 5  # a bytes axis gets at most this many ticks: wider labels ('256 KiB') collide beyond


def _byte_ticks(lo: float, hi: float) -> list[float]:
    """Powers of two inside [lo, hi], every 2^k with k a multiple of the smallest stride (1, 2, 5
    or 10: 1 KiB, 32 KiB, 1 MiB, ...) that leaves at most BYTE_TICKS_MAX of them."""
    first, last = math.ceil(math.log2(lo) - 1e-9), math.floor(math.log2(hi) + 1e-9)
    for stride in (1, 2, 5, 10, 20):
        exps = [k for k in range(first, last + 1) if k % stride == 0]
        if len(exps) <= BYTE_TICKS_MAX:
            return [2.0**k for k in exps] or [2.0**first]
    return [2.0**k for k in range(first, last + 1) if k % 30 == 0] or [2.0**first]


def _ticks(axis: Axis, unit: str, at: Sequence[float] = ()) -> None:
    """Ticks in display units (reports.units), never '1e-3' or mathtext; no minor ticks.

    Ticks sit at `at` (the swept sizes) when they are few and far apart; bytes get powers of two
    (1 MiB, 4 MiB); other log axes decades, or 1-2-5 steps when fewer than three decades show. The limits
    are final here, so the ticks are fixed to those inside them (a locator's ticks beyond the view
    would each cost a Tick object at every draw).
    """
    from matplotlib import ticker

    at = sorted(set(at))
    lo, hi = sorted(axis.get_view_interval())
    apart = all(b / a >= TICKS_AT_SIZES_RATIO for a, b in zip(at, at[1:], strict=False))
    if at and len(at) <= TICKS_AT_SIZES_MAX and apart:
        locator = ticker.FixedLocator(at)
    elif axis.get_scale() != "log":
        locator = ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    elif unit == "B":
        locator = ticker.FixedLocator(_byte_ticks(lo, hi))
    else:
        decades = math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) + 1  # powers of ten in view
        narrow = decades < 3
        locator = ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,), numticks=8)
    span = hi - lo
    inside = [v for v in locator.tick_values(lo, hi) if lo - 1e-9 * span <= v <= hi + 1e-9 * span]
    axis.set_major_locator(ticker.FixedLocator(inside))
    axis.set_minor_locator(ticker.NullLocator())
    text = _TICK_TEXT[unit]
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: text(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


Scale = tuple[str, tuple[float, float], Sequence[float]]  # (unit, limits, tick positions or ())


def _set_log(ax: Axes, x: Scale, y: Scale | None) -> None:
    """Log x (and log y unless y is None), each in its unit; bytes in base 2, so ticks are 1 MiB, 4 MiB."""
    for axis, (unit, lims, at) in ((ax.xaxis, x), (ax.yaxis, y)) if y else ((ax.xaxis, x),):
        (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log", base=2 if unit == "B" else 10)
        (ax.set_xlim if axis is ax.xaxis else ax.set_ylim)(*lims)
        _ticks(axis, unit, at)


def _errorbar(ax: Axes, look: _Look, pts: list[tuple[float, float, float, float]], label: str, **kw: Any) -> None:
    """pts: (x, y, y_low, y_high), sorted by x: the line through (x, y), and a bar from y_low to
    y_high at each x (one LineCollection labelled 'CI: <label>'; Axes.errorbar costs several
    artists per series)."""
    from matplotlib.collections import LineCollection

    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **look.props(**kw))
    bars = [[(x, lo), (x, hi)] for x, _, lo, hi in pts if _pos(lo) and _pos(hi)]
    ax.add_collection(LineCollection(bars, colors=look.color, linewidths=1.0, label=f"CI: {label}"), autolim=False)


def _slope_labels(ax: Axes, items: list[tuple[float, float, str, str]], ylim: tuple[float, float]) -> None:
    """'k=2.01' right of each line's last point; labels at the same size are pushed apart vertically."""
    lo, hi = math.log(ylim[0]), math.log(ylim[1])
    by_x: dict[float, list[list[Any]]] = {}
    for x, y, text, color in items:
        by_x.setdefault(x, []).append([(math.log(y) - lo) / (hi - lo), text, color])
    for x, group in by_x.items():
        group.sort(key=lambda g: g[0])
        for prev, cur in zip(group, group[1:], strict=False):
            cur[0] = max(cur[0], prev[0] + FIT_LABEL_GAP)
        overflow = max(group[-1][0] - 0.97, 0.0)
        for frac, text, color in group:
            ax.annotate(text, xy=(x, frac - overflow), xycoords=("data", "axes fraction"), xytext=(5, 0),
                        textcoords="offset points", ha="left", va="center", color=color, fontsize=7.5)


def _title(ax: Axes, text: str) -> None:
    """A panel title at a fixed height (automatic placement measures every tick label once more)."""
    ax.set_title(text, y=1.0, pad=6)


def _oom_marks(ax: Axes, looks: dict[str, _Look], recs: list[Record]) -> bool:
    """An x on the horizontal axis at each OOM size, in its variant's colour."""
    ooms = [r for r in recs if r.status == "oom" and _pos(r.size)]
    for r in ooms:
        ax.plot([float(r.size)], [0.0], transform=ax.get_xaxis_transform(), marker="x", markersize=6,
                linestyle="none", color=looks[r.variant].color, clip_on=False, zorder=5)
    return bool(ooms)


@functools.lru_cache(maxsize=4096)
def _text_width(text: str, size: float) -> float:
    """Width in points of `text` in the style's font at `size` points (no renderer needed)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    return text_to_path.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)[0]


def _points(key: str) -> float:
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=mpl.rcParams[key]).get_size_in_points()


def _tick_width(axis: Axis) -> float:
    """Widest tick label of `axis` in points, from its locator and formatter (before any draw)."""
    lo, hi = sorted(axis.get_view_interval())
    fmt = axis.get_major_formatter()
    texts = [fmt(v, i) for i, v in enumerate(axis.get_majorticklocs()) if lo <= v <= hi]
    return max((_text_width(t, _points("ytick.labelsize")) for t in texts), default=0.0)


def _place(fig: Figure, axes: list[Axes], entries: list[tuple[str, dict[str, Any]]]) -> None:
    """Legend on top, axes side by side below it, margins from the text they must hold.

    A layout engine (constrained layout) would draw the figure several times to measure it; this
    sizes everything from the fonts in one pass, which keeps a report of many figures fast.
    """
    from matplotlib.lines import Line2D

    width, height = (v * 72 for v in fig.get_size_inches())
    tick, label, legend = _points("ytick.labelsize"), _points("axes.labelsize"), _points("legend.fontsize")
    # legend columns: as many as fit the width
    col = max((_text_width(t, legend) for t, _ in entries), default=0.0) + 3.8 * legend
    ncols = max(1, min(len(entries), int((width - 16) // col))) if entries else 1
    rows = math.ceil(len(entries) / ncols)
    top = (rows * 1.45 * legend + 0.8 * legend + 4) if entries else 6
    if any(ax.get_title() for ax in axes):
        top += _points("axes.titlesize") * 1.2 + 6
    bottom = 3.5 + 3.5 + 1.2 * tick + 4 + 1.2 * label + 5
    lefts = [_tick_width(ax.yaxis) + 3.5 + 3.5 + 4 + 1.2 * label + 6 for ax in axes]
    gap, right = 14.0, 10.0
    panel = (width - sum(lefts) - right - gap * (len(axes) - 1)) / len(axes)
    x = 0.0
    for ax, left in zip(axes, lefts, strict=True):
        x += left
        ax.set_position((x / width, bottom / height, panel / width, (height - top - bottom) / height))
        x += panel + gap
    if entries:
        handles = [Line2D([], [], **props) for _, props in entries]
        # labels passed explicitly: a variant named '_x' is listed too (matplotlib hides such labels
        # only when it collects them itself)
        fig.legend(handles, [t for t, _ in entries], loc="upper center", bbox_to_anchor=(0.5, 1.0), ncols=ncols,
                   borderaxespad=0.2)


def _variant_entries(looks: dict[str, _Look], variants: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(v, looks[v].props()) for v in variants]


def _time_points(recs: list[Record]) -> list[tuple[float, float, float, float]]:
    return sorted((float(r.size), r.time.median_s, r.time.ci_low_s, r.time.ci_high_s) for r in _timed(recs))


def _memory_points(recs: list[Record]) -> list[tuple[float, float]]:
    return sorted((float(r.size), float(r.memory.peak_bytes)) for r in _timed(recs)
                  if r.memory is not None and _pos(r.memory.peak_bytes))


def _build_time_memory(run: RunResult, spec: FigureSpec) -> Figure:
    recs = _records(run, spec)
    looks, by_variant = _looks(run), _by_variant(recs)
    fits = {f.variant: f for f in fit_series(recs)}
    fig, (ax_t, ax_m) = _figure(2, 7.0, 3.0)
    timed = _timed(recs)
    at = [float(r.size) for r in timed] + [float(r.size) for r in recs if r.status == "oom" and _pos(r.size)]
    x_lims = _log_limits(min(at), max(at), 2.0, right=0.22)  # room for the k labels
    times = [t for r in timed for t in (r.time.ci_low_s, r.time.ci_high_s, r.time.median_s) if _pos(t)]
    t_lims = _log_limits(min(times), max(times), MIN_SPAN["s"])
    mems = [m for _, m in _memory_points(recs)]
    m_lims = _log_limits(min(mems), max(mems), MIN_SPAN["B"]) if mems else (1.0, 2.0**10)
    t_labels, m_labels = [], []
    for variant, rs in by_variant.items():
        look, fit = looks[variant], fits.get(variant)
        pts, mem = _time_points(rs), _memory_points(rs)
        if pts:
            _errorbar(ax_t, look, pts, variant)
            if fit and fit.time_exponent is not None:
                t_labels.append((pts[-1][0], pts[-1][1], f"k={units.fmt_exponent(fit.time_exponent)}", look.color))
        if mem:
            ax_m.plot([m[0] for m in mem], [m[1] for m in mem], label=variant, **look.props())
            if fit and fit.memory_exponent is not None:
                m_labels.append((mem[-1][0], mem[-1][1], f"k={units.fmt_exponent(fit.memory_exponent)}",
                                 look.color))
    _set_log(ax_t, ("size", x_lims, at), ("s", t_lims, ()))
    _set_log(ax_m, ("size", x_lims, at), ("B", m_lims, ()))
    _slope_labels(ax_t, t_labels, t_lims)
    _slope_labels(ax_m, m_labels, m_lims)
    name = recs[0].size_name
    ax_t.set(xlabel=name, ylabel="median time per call (s)")
    _title(ax_t, "time per call (median ± CI)")
    ax_m.set(xlabel=name, ylabel="peak memory (bytes)")
    _title(ax_m, "peak memory above baseline")
    if not mems:
        ax_m.text(0.5, 0.5, "no memory measured", transform=ax_m.transAxes, ha="center", va="center")
    oom = _oom_marks(ax_t, looks, recs) | _oom_marks(ax_m, looks, recs)
    entries = _variant_entries(looks, list(by_variant))
    if oom:
        entries.append(("OOM (not plotted)", {"color": "0.3", "marker": "x", "linestyle": "none"}))
    _place(fig, [ax_t, ax_m], entries)
    return fig


ROOF = {"color": "0.3", "linewidth": 1.2, "marker": "", "zorder": 1}


def _build_roofline(run: RunResult, spec: FigureSpec) -> Figure:
    points = _roofline_points(run, _records(run, spec))
    looks = _looks(run)
    fig, (ax,) = _figure(1, 5.2, 3.8)
    labels = list(dict.fromkeys(p.record.label for p in points))
    markers = [look.marker for look in looks.values()]  # one marker per label when several labels share it
    series: dict[tuple[str, str], list[_RoofPoint]] = {}
    for p in points:
        series.setdefault((p.record.label, p.record.variant), []).append(p)
    peaks = sorted({p.peak for p in points})
    bws = sorted({(p.traffic, p.bandwidth) for p in points})
    flops = [p.flop_per_s for p in points]
    y_lims = _log_limits(min(flops), max(*flops, peaks[-1]) * 1.3, MIN_SPAN["rate"])
    xs = [p.intensity for p in points] + [pk / bw for pk in peaks for _, bw in bws]
    x_lims = _log_limits(min(*xs, y_lims[0] / bws[-1][1]), max(xs), 10.0)
    for (label, variant), pts in series.items():
        look = looks[variant]
        marker = look.marker if len(labels) == 1 else markers[labels.index(label) % len(markers)]
        pts = sorted(pts, key=lambda p: p.record.size)
        ax.plot([p.intensity for p in pts], [p.flop_per_s for p in pts], linewidth=0.8, markersize=5,
                label=variant, **look.props(marker=marker))
    variants = list(dict.fromkeys(v for _, v in series))
    if len(labels) == 1:
        entries = _variant_entries(looks, variants)
    else:  # colour: the variant; marker: the label (a legend of variants x labels would not fit)
        entries = [(v, looks[v].props(marker="")) for v in variants]
        entries += [(label, {"color": "0.3", "marker": markers[i % len(markers)], "linestyle": "none"})
                    for i, label in enumerate(labels)]
    for pk in peaks:  # compute roof: from the ridge of the fastest bandwidth to the right edge
        ax.plot([pk / bws[-1][1], x_lims[1]], [pk, pk], linestyle="-", **ROOF)
        dtypes = ", ".join(sorted({p.dtype for p in points if p.peak == pk}))
        ax.annotate(f"{dtypes} peak {units.fmt_flops(pk)}", xy=(x_lims[1], pk), xytext=(-3, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7.5, color="0.3")
    for traffic, bw in bws:  # bandwidth roof: slope 1, from the bottom edge up to the highest compute roof
        x0, x1 = max(x_lims[0], y_lims[0] / bw), peaks[-1] / bw
        ax.plot([x0, x1], [bw * x0, bw * x1], linestyle="--", **ROOF)
        xm = math.sqrt(x0 * x1)
        ax.annotate(f"{traffic} {units.fmt_rate(bw, 'B')}", xy=(xm, bw * xm), xytext=(5, -3),
                    textcoords="offset points", ha="left", va="top", fontsize=7.5, color="0.3")
    _set_log(ax, ("plain", x_lims, ()), ("FLOP/s", y_lims, ()))
    ax.set(xlabel="arithmetic intensity (FLOP/byte)", ylabel="achieved FLOP/s")
    entries += [("compute roof", {**ROOF, "linestyle": "-"}), ("bandwidth roof", {**ROOF, "linestyle": "--"})]
    _place(fig, [ax], entries)
    return fig


def _ratio_points(recs: list[Record], metric: str) -> list[tuple[float, float, float, float]]:
    """(size, value, low, high) of a metric proportional to 1/time (tokens/s, MFU): its CI is the
    time CI carried through, value * median / ci_high .. value * median / ci_low."""
    out = []
    for r in _timed(recs):
        v = _pos(r.metrics.get(metric))
        if v is not None:
            t = r.time
            low = v * t.median_s / t.ci_high_s if _pos(t.ci_high_s) else v
            high = v * t.median_s / t.ci_low_s if _pos(t.ci_low_s) else v
            out.append((float(r.size), v, low, high))
    return sorted(out)


def _build_model_scaling(run: RunResult, spec: FigureSpec) -> Figure:
    recs = _records(run, spec)
    looks, by_variant = _looks(run), _by_variant(recs)
    fig, (ax_tps, ax_mfu, ax_mem) = _figure(3, 9.0, 3.0)
    at = [float(r.size) for r in _timed(recs)]
    x_lims = _log_limits(min(at), max(at), 4.0)
    tps_all, mfu_all, mem_all = [], [], []
    for variant, rs in by_variant.items():
        look = looks[variant]
        tps, mfu = _ratio_points(rs, "tokens_per_s"), _ratio_points(rs, "mfu_measured")
        if tps:
            _errorbar(ax_tps, look, tps, variant)
            tps_all += [v for p in tps for v in p[1:]]
        if mfu:
            _errorbar(ax_mfu, look, mfu, variant)
            mfu_all += [p[3] for p in mfu]
        measured = _memory_points(rs)
        analytic = sorted((float(r.size), v) for r in _timed(rs)
                          if (v := _pos(r.info.get("mem_analytic_step_bytes"))) is not None)
        for pts, kw in ((measured, {}), (analytic, {"linestyle": "--", "markerfacecolor": "white"})):
            if pts:
                ax_mem.plot([p[0] for p in pts], [p[1] for p in pts], label=variant, **look.props(**kw))
                mem_all += [p[1] for p in pts]
    tps_lims = _log_limits(min(tps_all), max(tps_all), MIN_SPAN["rate"]) if tps_all else (1.0, 10.0)
    mem_lims = _log_limits(min(mem_all), max(mem_all), MIN_SPAN["B"]) if mem_all else (1.0, 2.0**10)
    _set_log(ax_tps, ("size", x_lims, at), ("tok/s", tps_lims, ()))
    _set_log(ax_mem, ("size", x_lims, at), ("B", mem_lims, ()))
    _set_log(ax_mfu, ("size", x_lims, at), None)
    ax_mfu.set_ylim(0.0, max(mfu_all) * 1.15 if mfu_all else 1.0)
    _ticks(ax_mfu.yaxis, "%")
    if not mfu_all:
        ax_mfu.text(0.5, 0.5, "no calibrated peak", transform=ax_mfu.transAxes, ha="center", va="center")
    name = recs[0].size_name
    ax_tps.set(xlabel=name, ylabel="tokens/s")
    _title(ax_tps, "throughput")
    ax_mfu.set(xlabel=name, ylabel="MFU (% of measured peak)")
    _title(ax_mfu, "model FLOPs utilization")
    ax_mem.set(xlabel=name, ylabel="peak memory in a step (bytes)")
    _title(ax_mem, "memory: measured vs analytic")
    entries = _variant_entries(looks, list(by_variant))
    entries += [("measured", {"color": "0.3", "linestyle": "-", "marker": "o"}),
                ("analytic", {"color": "0.3", "linestyle": "--", "marker": "o", "markerfacecolor": "white"})]
    _place(fig, [ax_tps, ax_mfu, ax_mem], entries)
    return fig


def _build_decode_floor(run: RunResult, spec: FigureSpec) -> Figure:
    recs = _records(run, spec)
    looks, by_variant = _looks(run), _by_variant(recs)
    fig, (ax,) = _figure(1, 5.0, 3.6)
    timed = _timed(recs)
    at = [float(r.size) for r in timed]
    x_lims = _log_limits(min(at), max(at), 4.0)
    values = [t for r in timed for t in (r.time.ci_low_s, r.time.ci_high_s, r.metrics.get("bandwidth_floor_s"))
              if _pos(t)]
    y_lims = _log_limits(min(values), max(values), MIN_SPAN["s"])
    for variant, rs in by_variant.items():
        look = looks[variant]
        pts = _time_points(rs)
        if pts:
            _errorbar(ax, look, pts, variant)
        floor = sorted((float(r.size), f) for r in _timed(rs) if (f := _pos(r.metrics.get("bandwidth_floor_s"))))
        if floor:
            ax.plot([p[0] for p in floor], [p[1] for p in floor], label=f"{variant} floor",
                    **look.props(linestyle="--", markerfacecolor="white"))
        for r in _timed(rs):
            if r.metrics.get("cache_resident") and not _pos(r.metrics.get("bandwidth_floor_s")):
                ax.annotate("cache-resident", xy=(float(r.size), r.time.median_s), xytext=(0, -9),
                            textcoords="offset points", ha="center", va="top", fontsize=7, color="0.35")
    _set_log(ax, ("size", x_lims, at), ("s", y_lims, ()))
    ax.set(xlabel=recs[0].size_name, ylabel="time per step (s)")
    _title(ax, "decode step: median ± CI and floor")
    entries = _variant_entries(looks, list(by_variant))
    entries.append(("bandwidth floor", {"color": "0.3", "linestyle": "--", "marker": "o", "markerfacecolor": "white"}))
    _place(fig, [ax], entries)
    return fig


IDEAL = {"color": "0.3", "linewidth": 1.0, "linestyle": "--", "marker": "", "zorder": 1}


def _efficiency_points(recs: list[Record]) -> list[tuple[float, float, float, float]]:
    """(size, efficiency, low, high): the relative CI half-width either side."""
    out = []
    for r in _timed(recs):
        eff = _pos(r.metrics.get("scaling_efficiency"))
        if eff is not None:
            ci = r.metrics.get("scaling_efficiency_ci_rel")
            half = eff * ci if isinstance(ci, int | float) and math.isfinite(ci) else 0.0
            out.append((float(r.size), eff, max(eff - half, 0.0), eff + half))
    return sorted(out)


def _rank_memory_points(recs: list[Record]) -> list[tuple[float, float]]:
    return sorted((float(r.size), p) for r in _timed(recs) if (p := _pos(memory_per_rank(r)[0])) is not None)


def _build_scaling_efficiency(run: RunResult, spec: FigureSpec) -> Figure:
    recs = _records(run, spec)
    looks, by_variant = _looks(run), _by_variant(recs)
    fig, (ax_e, ax_m) = _figure(2, 7.0, 3.0)
    at = [float(r.size) for r in _timed(recs)]
    x_lims = _log_limits(min(at), max(at), 4.0)
    highs, mems, shown = [1.0], [], []
    for variant, rs in by_variant.items():
        look = looks[variant]
        eff, mem = _efficiency_points(rs), _rank_memory_points(rs)
        if eff:
            _errorbar(ax_e, look, eff, variant)
            highs += [p[3] for p in eff]
        if mem:
            ax_m.plot([m[0] for m in mem], [m[1] for m in mem], label=variant, **look.props())
            mems += [m[1] for m in mem]
        if eff or mem:
            shown.append(variant)
    ax_e.plot(x_lims, [1.0, 1.0], **IDEAL)
    _set_log(ax_e, ("size", x_lims, at), None)
    ax_e.set_ylim(0.0, max(highs) * 1.1)
    _ticks(ax_e.yaxis, "plain")
    m_lims = _log_limits(min(mems), max(mems), MIN_SPAN["B"]) if mems else (1.0, 2.0**10)
    _set_log(ax_m, ("size", x_lims, at), ("B", m_lims, ()))
    if not mems:
        ax_m.text(0.5, 0.5, "no memory measured", transform=ax_m.transAxes, ha="center", va="center")
    name = recs[0].size_name
    ax_e.set(xlabel=name, ylabel="scaling efficiency")
    _title(ax_e, "scaling efficiency (± CI)")
    what = "memory per rank" if all(memory_per_rank(r)[1] == "memory/rank" for r in _timed(recs)) else \
        "peak memory per rank"
    ax_m.set(xlabel=name, ylabel=f"{what} (bytes)")
    _title(ax_m, what)
    entries = _variant_entries(looks, shown) + [("linear scaling (1)", IDEAL)]
    _place(fig, [ax_e, ax_m], entries)
    return fig


def _build_bandwidth(run: RunResult, spec: FigureSpec) -> Figure:
    recs = _records(run, spec)
    looks, by_variant = _looks(run), _by_variant(recs)
    fig, (ax_b, ax_t) = _figure(2, 7.0, 3.0)
    timed = _timed(recs)
    at = [float(r.size) for r in timed]
    x_lims = _log_limits(min(at), max(at), 4.0)
    bws, times = [], [t for r in timed for t in (r.time.ci_low_s, r.time.ci_high_s, r.time.median_s) if _pos(t)]
    for variant, rs in by_variant.items():
        look = looks[variant]
        bw = _ratio_points(rs, "busbw_bytes_per_s")
        if bw:
            _errorbar(ax_b, look, bw, variant)
            bws += [v for p in bw for v in p[1:]]
        pts = _time_points(rs)
        if pts:
            _errorbar(ax_t, look, pts, variant)
    b_lims = _log_limits(min(bws), max(bws), MIN_SPAN["rate"]) if bws else (1.0, 10.0)
    _set_log(ax_b, ("B", x_lims, at), ("B/s", b_lims, ()))
    _set_log(ax_t, ("B", x_lims, at), ("s", _log_limits(min(times), max(times), MIN_SPAN["s"]), ()))
    name = recs[0].size_name
    ax_b.set(xlabel=name, ylabel="bus bandwidth (busbw)")
    _title(ax_b, "bus bandwidth (± CI)")
    ax_t.set(xlabel=name, ylabel="median time per call (s)")
    _title(ax_t, "time per call (median ± CI)")
    _place(fig, [ax_b, ax_t], _variant_entries(looks, list(by_variant)))
    return fig


BUILDERS: dict[str, Callable[[RunResult, FigureSpec], Figure]] = {
    "time_memory": _build_time_memory,
    "roofline": _build_roofline,
    "model_scaling": _build_model_scaling,
    "decode_floor": _build_decode_floor,
    "scaling_efficiency": _build_scaling_efficiency,
    "bandwidth": _build_bandwidth,
}


def build_figure(run: RunResult, spec: FigureSpec) -> Figure:
    """The matplotlib Figure of `spec`, drawn once (ticks exist) in the report style.

    For inspection and custom saving; render_figure is what reports use.
    """
    with _styled(spec.key):
        fig = BUILDERS[spec.kind](run, spec)
        fig.draw_without_rendering()
    return fig


# --- output -----------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]*>")  # matplotlib escapes '<' and '>' in text and attributes: this finds tags only
_ID = re.compile(r'\bid="([^"]*)"')
_REF = re.compile(r'(href="#|url\(#)([^")]*)')
_DECIMALS = re.compile(r"(\.\d\d)\d+")


def _id_prefix(key: str) -> str:
    return "f" + hashlib.sha1(key.encode()).hexdigest()[:8] + "-"


def _tidy_svg(svg: str, prefix: str) -> str:
    """Every id of the SVG, and every reference to one, with `prefix` (matplotlib numbers its groups
    'figure_1', 'axes_1', ... in every file, which would clash between two SVGs in one page), and
    coordinates cut to 2 decimals (1/7200 in: a third less to embed, nothing visible lost)."""

    def tag(m: re.Match[str]) -> str:
        t = _ID.sub(lambda i: f'id="{prefix}{i.group(1)}"', m.group(0))
        t = _REF.sub(lambda r: f"{r.group(1)}{prefix}{r.group(2)}", t)
        return _DECIMALS.sub(r"\1", t)

    return _TAG.sub(tag, svg)


def _printable(run: RunResult, spec: FigureSpec) -> tuple[RunResult, FigureSpec]:
    """The run and spec with the control characters of every label, variant and size name made
    visible (reports.sanitize.printable), as the terminal shows them: they come from the results
    file, and raw, an ESC makes the SVG ill-formed XML and warns of a missing glyph. The same run
    and spec when nothing needs it (the common case: no copy)."""
    from .sanitize import is_printable, printable

    def bad(r: Record) -> bool:
        return not (is_printable(r.label, lines=False) and is_printable(r.variant, lines=False)
                    and is_printable(r.size_name, lines=False))

    if not any(bad(r) for r in run.records) and is_printable(spec.title, lines=False):
        return run, spec
    records = [r.model_copy(update={"label": printable(r.label, lines=False),
                                    "variant": printable(r.variant, lines=False),
                                    "size_name": printable(r.size_name, lines=False)}) if bad(r) else r
               for r in run.records]
    label = None if spec.label is None else printable(spec.label, lines=False)
    return (run.model_copy(update={"records": records}),
            replace(spec, title=printable(spec.title, lines=False), label=label))


def render_figure(run: RunResult, spec: FigureSpec, fmt: str = "svg", dpi: int = 150) -> bytes:
    """One figure as `fmt` ('svg', 'pdf' or 'png') bytes; the same results give the same bytes.

    Args:
        run: the results.
        spec: one of figure_specs(run).
        fmt: one of FORMATS.
        dpi: raster resolution (PNG; PDF and SVG only use it for embedded images).
    """
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if spec.kind not in BUILDERS:
        raise ValueError(f"figure kind {spec.kind!r}: choose one of {', '.join(BUILDERS)}")
    buf = io.BytesIO()
    with _styled(spec.key):
        fig = BUILDERS[spec.kind](*_printable(run, spec))
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=METADATA[fmt])
    data = buf.getvalue()
    if fmt == "svg":
        data = _tidy_svg(data.decode("utf-8"), _id_prefix(spec.key)).encode("utf-8")
    return data


# --- many figures at once ----------------------------------------------------------------------
# matplotlib draws on one core; a report of many figures renders them in forked worker processes,
# one per usable core (Linux only), forked once matplotlib is imported here: its import costs
# about as much CPU as four figures, so once rather than in every worker (on 2 cores,
# bench/report_speed.py measured 2.8 s in-process this way against 3.5 s with an import per
# worker). The caller renders the page meanwhile.
# Each figure is the same bytes whichever process drew it (render_figure is deterministic).
BACKENDS = {"svg": "matplotlib.backends.backend_svg", "pdf": "matplotlib.backends.backend_pdf",
            "png": "matplotlib.backends.backend_agg"}
PARALLEL_MIN = 4  # fewer figures than this render in this process: a fork costs more than it saves
_JOBS: tuple[RunResult, list[tuple[FigureSpec, str]], int] | None = None  # set in the parent while forking


def _usable_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def _worker_init() -> None:
    """A forked worker starts with a fresh lock (the parent held its own across the fork) and the
    default SIGTERM, which Pool.terminate sends it (a drawer's handler is not for its workers)."""
    import signal

    global _LOCK
    _LOCK = threading.Lock()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _DRAWER_PID is not None:  # the drawer may be SIGKILLed at its caller's exit (_stop_drawer): go with it
        import ctypes
        import os

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != _DRAWER_PID:  # it died before the request took: no one would kill this one
            os._exit(0)


def _job(i: int) -> bytes:
    run, jobs, dpi = _JOBS
    spec, fmt = jobs[i]
    return render_figure(run, spec, fmt, dpi)


def _parallel(jobs: list[tuple[FigureSpec, str]]) -> bool:
    import sys

    return sys.platform == "linux" and len(jobs) >= PARALLEL_MIN and _usable_cores() >= 2


def _fork_pool(run: RunResult, jobs: list[tuple[FigureSpec, str]], dpi: int):
    """A fork Pool whose workers hold (run, jobs, dpi) and this process's matplotlib."""
    import importlib
    import multiprocessing

    import matplotlib.figure  # noqa: F401  imported once, here: the workers inherit it
    for fmt in dict.fromkeys(fmt for _, fmt in jobs):
        importlib.import_module(BACKENDS[fmt])
    global _JOBS
    _JOBS = (run, jobs, dpi)
    try:
        with _LOCK:  # no other thread is mid-render (rcParams half-set) when the workers fork
            return multiprocessing.get_context("fork").Pool(min(_usable_cores(), len(jobs)),
                                                            initializer=_worker_init)
    finally:
        _JOBS = None  # the workers have their copy


# --- a warm drawer ----------------------------------------------------------------------------
# `xfbench report` calls warm_up() first thing: a forked process imports matplotlib (a second of
# CPU) on the other core while this one loads the results and builds the page; render_many then
# hands it the run (pickled) and it forks the drawing workers itself. Without warm_up, the
# process that renders imports matplotlib and forks them.
_DRAWER: Any = None  # (process, connection) of the warm drawer, once warm_up started it
_DRAWER_PID: int | None = None  # in the drawer process (and the workers it forks): the drawer's pid
PR_SET_PDEATHSIG = 1  # linux/prctl.h: a signal the kernel sends a process when its parent dies


def _drawer_main(conn: Any) -> None:
    import importlib
    import multiprocessing
    import os
    import signal
    import sys

    # In this (child) copy the flag only stops Pool from forking workers; the parent still sees
    # a daemon it will terminate at its exit, and the pipe's end (EOFError) ends the loop before.
    multiprocessing.current_process().daemon = False
    global _DRAWER_PID
    _DRAWER_PID = os.getpid()
    # Its workers hold this process's stdout and stderr, and orphaned they would wait for work
    # forever (each holds both ends of the task pipe): a caller reading this command's output
    # would never see it end. So SIGTERM (what multiprocessing sends a daemon at the parent's
    # exit) leaves through the `with` below, which terminates and joins them first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    import matplotlib.figure  # noqa: F401
    for backend in BACKENDS.values():
        importlib.import_module(backend)
    while True:
        try:
            run, jobs, dpi = conn.recv()
        except EOFError:
            return
        try:
            with _fork_pool(run, jobs, dpi) as pool:
                reply = ("ok", pool.map(_job, range(len(jobs)), chunksize=1))
        except Exception as e:  # noqa: BLE001 - the caller draws them itself and meets the error there
            reply = ("error", repr(e))
        conn.send(reply)  # after the workers are gone: the caller may exit the moment it has this


def warm_up() -> None:
    """Start the warm drawer (Linux, 2+ usable cores; once per process). Call it before the
    results are loaded; figures rendered in this process later use it."""
    import multiprocessing
    import sys

    global _DRAWER
    if _DRAWER is not None or sys.platform != "linux" or _usable_cores() < 2:
        return
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    # A daemon, so this process never waits for it at exit (multiprocessing terminates it then);
    # _drawer_main clears the flag in its own copy so that it may fork the drawing workers.
    proc = ctx.Process(target=_drawer_main, args=(there,), daemon=True, name="xfbench-figures")
    proc.start()
    there.close()
    _DRAWER = (proc, here)
    atexit.register(_stop_drawer, proc, here)


def _stop_drawer(proc: Any, here: Any) -> None:
    """At exit, before multiprocessing's own handler: the closed pipe ends an idle drawer's loop.
    One still busy (drawing, or importing matplotlib) is killed: its workers die with it (they
    asked the kernel for PR_SET_PDEATHSIG), so nothing is left holding this process's output.
    (A SIGTERM would make it stop its Pool from inside a signal handler, which can deadlock, and
    multiprocessing's exit handler then waits for it without a timeout.)"""
    here.close()
    proc.join(timeout=0.5)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=5)


class Pending:
    """Figures being drawn: result() waits for them and gives their bytes in the order asked."""

    def __init__(self, run: RunResult, jobs: list[tuple[FigureSpec, str]], dpi: int):
        self._run, self._jobs, self._dpi = run, jobs, dpi
        self._pool = self._async = self._drawer = None
        self._done: list[bytes] | None = None
        self.where = "here"  # who drew them: 'here', 'workers' (forked here), 'drawer' (warm_up's)
        if not _parallel(jobs):
            self._done = [render_figure(run, spec, fmt, dpi) for spec, fmt in jobs]
        elif _DRAWER is not None and _DRAWER[0].is_alive():
            import threading

            self._drawer, self.where = _DRAWER[1], "drawer"
            # sent from a thread: the drawer reads only once its matplotlib import is done, and a
            # pipe holds far less than a pickled run, so a plain send would wait for that import
            self._send_failed = False
            self._sending = threading.Thread(target=self._send, args=((run, jobs, dpi),), daemon=True)
            self._sending.start()
        else:
            self._pool, self.where = _fork_pool(run, jobs, dpi), "workers"
            self._async = self._pool.map_async(_job, range(len(jobs)), chunksize=1)

    def _send(self, job: tuple) -> None:
        """The sending thread: a send that fails (the drawer died, or this process is exiting and
        _stop_drawer closed the pipe under it) is noted for result(), never a thread's traceback."""
        try:
            self._drawer.send(job)
        except (OSError, TypeError, ValueError):  # a closed Connection's handle is None: TypeError
            self._send_failed = True

    def result(self) -> list[bytes]:
        if self._done is not None:
            return self._done
        if self._drawer is not None:
            self._sending.join()
            try:
                if self._send_failed:
                    raise EOFError
                status, out = self._drawer.recv()
            except (EOFError, OSError):  # the drawer died (killed, out of memory)
                status, out = "gone", None
            if status != "ok":  # the drawer failed: this process draws them, and meets the error itself
                self.where, out = "here", [render_figure(self._run, s, f, self._dpi) for s, f in self._jobs]
            self._done = out
            return self._done
        try:
            self._done = self._async.get()
        finally:
            self._pool.close()
            self._pool.join()
        return self._done


def render_many(run: RunResult, jobs: list[tuple[FigureSpec, str]], dpi: int = 150) -> Pending:
    """Start render_figure for each (spec, format) of `jobs` on every usable core (Linux: forked
    workers); .result() gives the bytes in order. Few figures, one core or no fork: drawn here."""
    return Pending(run, jobs, dpi)


def render_figures(run: RunResult, formats: Sequence[str] = ("svg",), dpi: int = 150) -> dict[str, bytes]:
    """Every figure of the run in every format: {'<key>.<fmt>': bytes}, in figure_specs order."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"figure format {bad[0]!r}: choose one of {', '.join(FORMATS)}")
    jobs = [(spec, fmt) for spec in figure_specs(run) for fmt in formats]
    done = render_many(run, jobs, dpi).result()
    return {f"{spec.key}.{fmt}": data for (spec, fmt), data in zip(jobs, done, strict=True)}


def _inline(svg: bytes) -> str:
    text = svg.decode("utf-8")
    return text[text.index("<svg"):].rstrip() + "\n"


def inline_svg(run: RunResult, spec: FigureSpec) -> str:
    """The figure's SVG as markup to inline in HTML: from <svg> on (no XML prolog or DOCTYPE), ids
    unique to this figure, the same for the same results."""
    return _inline(render_figure(run, spec, "svg"))


def start_inline_svgs(run: RunResult, specs: Sequence[FigureSpec]) -> Callable[[], list[str]]:
    """Start drawing inline_svg of each spec on every usable core (render_many); the function
    returned waits for them and gives them in order."""
    pending = render_many(run, [(spec, "svg") for spec in specs])
    return lambda: [_inline(svg) for svg in pending.result()]
