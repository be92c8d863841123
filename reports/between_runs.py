"""Repeats of a case across the runs (segments) of one results file, and their between-run spread.

`xfbench run --repeat K` appends K fresh-process runs to one file, each with its own header and
run_id; a case measured in several segments has one value per run. Samples inside one run cannot
see the variance between runs (on a 2-core VM naive attention gave medians of 36.8, 46.7 and
44.2 ms in three back-to-back runs, each with a ±2% CI of its own); these per-run values can.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import NamedTuple

from .compare_stats import log_sd, range_rel
from .errors import BadInput
from .schema import Record, RunResult


class Metric(NamedTuple):
    """A metric `xfbench compare` can compare.

    Args:
        unit: its SI unit (a Cell unit).
        smaller_is_better: True for time and memory, False for throughput.
        what: how one run's value is obtained.
    """

    unit: str
    smaller_is_better: bool
    what: str


METRICS: dict[str, Metric] = {
    "time": Metric("s", True, "median per-call time of the run's timed windows (time.median_s)"),
    "tokens_per_s": Metric("tok/s", False, "tokens per call / median per-call time (metrics.tokens_per_s)"),
    "peak_mem": Metric("B", True, "peak memory above baseline in the memory pass (metrics.peak_mem_bytes)"),
}


def check_metric(metric: str) -> Metric:
    """The Metric named `metric`; BadInput naming the choices otherwise."""
    if metric not in METRICS:
        raise BadInput(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return METRICS[metric]


def _peak_mem(record: Record) -> float | None:
    peak = record.metrics.get("peak_mem_bytes")
    if peak is None and record.memory is not None:
        peak = record.memory.peak_bytes
    return float(peak) if isinstance(peak, int | float) and not isinstance(peak, bool) else None


def metric_samples(record: Record, metric: str) -> list[float]:
    """The raw samples of `metric` in one record: time: samples_s (per-call time of each window);
    tokens_per_s: tokens_per_call / each sample; peak_mem: [peak_mem_bytes] (one per run).
    Empty where the record lacks them."""
    check_metric(metric)
    if metric == "peak_mem":
        peak = _peak_mem(record)
        return [] if peak is None else [peak]
    if record.time is None:
        return []
    samples = [s for s in record.time.samples_s if s > 0]
    if metric == "time":
        return samples
    tokens = record.metrics.get("tokens_per_call")
    if not isinstance(tokens, int | float) or isinstance(tokens, bool) or tokens <= 0:
        return []
    return [tokens / s for s in samples]


def metric_value(record: Record, metric: str) -> float | None:
    """One run's value of `metric` (see METRICS[metric].what); None where the record lacks it."""
    check_metric(metric)
    if metric == "peak_mem":
        return _peak_mem(record)
    if record.time is None:
        return None
    if metric == "time":
        return record.time.median_s
    rate = record.metrics.get("tokens_per_s")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        return float(rate)
    tokens = record.metrics.get("tokens_per_call")
    if isinstance(tokens, int | float) and not isinstance(tokens, bool) and record.time.median_s > 0:
        return tokens / record.time.median_s
    return None


@dataclass(frozen=True)
class Repeats:
    """One case's runs in a results file.

    Args:
        case_id: the case.
        records: per run (segment, by run_id), the latest ok record with a positive value of the
            metric, in file order.
        values: each run's value of the metric (metric_value), in the same order.
        spread_rel: (max - min) / median of `values`; None with fewer than 2 runs (one run shows
            no spread, which is not the same as none).
        sd_rel: sample sd of log(values), ~ the relative sd between runs; None with fewer than 2.
    """

    case_id: str
    records: tuple[Record, ...]
    values: tuple[float, ...]
    spread_rel: float | None
    sd_rel: float | None

    @property
    def n_runs(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        """Median of the per-run values (the one value with one run)."""
        return statistics.median(self.values)

    def samples(self, metric: str) -> list[float]:
        """Every run's raw samples of `metric`, pooled in run order."""
        return [s for r in self.records for s in metric_samples(r, metric)]


def repeats(run: RunResult, metric: str = "time") -> dict[str, Repeats]:
    """Per case_id, its runs in `run`: the latest ok record of each segment that has `metric`.

    A value that is not positive (a peak of 0 bytes above baseline) has no relative change, so
    its record is left out like one without the metric."""
    check_metric(metric)
    per_case: dict[str, dict[str | None, Record]] = {}
    for r in run.records:
        value = metric_value(r, metric) if r.status == "ok" else None
        if value is not None and value > 0:
            per_case.setdefault(r.case_id, {})[r.run_id] = r  # a later record of the segment wins
    out = {}
    for cid, by_run in per_case.items():
        recs = tuple(by_run.values())
        values = tuple(float(metric_value(r, metric)) for r in recs)
        out[cid] = Repeats(cid, recs, values, range_rel(list(values)), log_sd(list(values)))
    return out
