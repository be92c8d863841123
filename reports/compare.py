"""`xfbench compare`: two results files matched case by case, each case given the verdict its noise supports.

Cases match by case_id (workload, parameters, device) with status ok on both sides. Each side's
case may have several runs (segments of the file, e.g. `xfbench run --repeat K`): the samples
of every run are pooled, and each run also gives one per-run value (between_runs.repeats).

Per case (time, tokens_per_s):
  - p: two-sided Mann–Whitney U on the pooled raw samples (compare_stats.mann_whitney).
  - ratio CI: current / baseline, Hodges–Lehmann on log values with Lehmann/Moses bounds
    (compare_stats.ratio_ci), from the pooled raw samples.
  - with >= 2 runs on BOTH sides the runs are the unit instead (samples inside one run cannot see
    what moves between runs): the change is the ratio of geometric means of per-run values, its
    CI the 95% t-interval and p Student's two-sample t-test (pooled variance) on log per-run
    values (compare_stats.runs_test), or, when the two sides are the rounds of one `xfbench ab`
    (headers: suite.interleaved), the paired t-test on each round's log ratio
    (compare_stats.paired_runs_test: drift over the job cancels within a round); the noise is
    the critical change, the smallest change significant at alpha over those runs; "slower"
    needs p < alpha, the change beyond the gate and the CI's lower bound beyond the threshold
    (_verdict_runs), the t-test at RUNS_ALPHA
    (0.01; see there for why, and what it gave in simulation).
  - gate = max(threshold, noise_k x noise), noise the first known of
      1. between-run: the critical change above, when BOTH sides have >= 2 runs (peak_mem, which
         has no samples: max of both sides' spread_rel, (max - min) / median of per-run values);
      2. history: history_noise[case_id], the relative band half-width a run of unchanged code
         falls within, computed by the caller (e.g. from the SQLite history);
      3. within-run only: WITHIN_RUN_FENCE x IQR/median of the pooled samples (the larger
         side), flagged: samples of one run cannot see between-run variance, so on this path a
         slower/faster verdict becomes inconclusive (one run a side decides nothing).
  - verdict (one run a side; between runs see _verdict_runs), with changes measured in log
    space in the metric's worse direction (time up, tokens/s down), so a gate g is symmetric:
    worse beyond log(1 + g), better beyond -log(1 + g):
      slower: p < alpha, the CI's bound nearer zero beyond +gate, and the estimate too;
      faster: the same on the better side;
      same: the whole CI within ±gate, and, if p < alpha, within ±threshold too (a significant
            change the user's threshold calls too small to matter);
      inconclusive: anything else, with `why`: significant but within the gate's noise (the
            change may be run-to-run noise: asv's "significant but not beyond the factor"
            distinction, read the other way), the CI straddling the gate, or not significant
            with a CI reaching beyond the gate.
peak_mem has one value per run and no samples: no test and no CI; the verdict compares the
ratio of per-run medians with the gate (between-run or history noise, else the threshold alone).
Its verdict words are larger/smaller in place of slower/faster.

The gate model: between runs, the FPR is the t-test's own bound alpha/2 and the MDC the change
that clears both the critical change and threshold + the CI half-width with 80% power; with a
history band, compare_stats.expected_false_positive_rate and min_detectable_change with the
history's sd; with within-run samples only, sigma is unknown and FPR and MDC are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from .between_runs import METRICS, Repeats, check_metric, repeats
from .compare_stats import (
    CI_LEVEL,
    DEFAULT_ALPHA,
    DEFAULT_POWER,
    EXACT_MAX_PRODUCT,
    expected_false_positive_rate,
    iqr_rel,
    mann_whitney,
    min_detectable_change,
    paired_runs_test,
    pooled_log_sd,
    ratio_ci,
    runs_test,
)
from .errors import BadInput
from .schema import Record, RunResult
from .tables import Cell, Table
from .units import fmt_flops, fmt_size

DEFAULT_THRESHOLD = 0.05  # the change a user cares about; asv's default factor is 1.1, criterion's noise 1%
# Each noise figure is already a band (a range of runs, a band half-width, a fence), so k = 1
# takes it as it is; a caller raises k to demand a change further beyond the noise.
NOISE_K = 1.0
# Within-run only: 3 x IQR/median of the samples, Tukey's "far out" distance (Tukey 1977, EDA
# 2C), as a deliberately wide stand-in for the between-run spread nobody measured: on a 2-core VM
# runs of one case differed by 25% with a within-run CI of ±2%.
WITHIN_RUN_FENCE = 3.0
# Between runs (>= 2 runs a side) the t-test has few degrees of freedom: at 0.002 with 3+3 runs only
# a change beyond ~6 sd of the runs would be significant. 0.01, with the 95% CI also required to
# clear the threshold, gave in simulation (8 cases, this VM's per-case noise, sd 2-10% between
# runs) an alarm in 1.3% of A/A comparisons with 3+3 runs and 0.8% with 5+5, and caught a 10%
# slowdown in 87% and 99%.
RUNS_ALPHA = 0.01
FPR_WARN = 0.05  # warn where the model expects more than 1 false alarm in 20 A/A comparisons
# Calibrated peak FLOP/s of the two machines may differ this much (relative) before they count
# as different machines: quick calibrations of one machine repeat within a few percent.
CALIBRATION_TOLERANCE = 0.10
P_FLOOR = 1e-4  # p-values below it are shown as '< 0.0001'

WITHIN_ONLY = "within-run only: no between-run noise known; use --repeat or history"
# Verdict words per metric: (better, worse).
WORDS = {"time": ("faster", "slower"), "tokens_per_s": ("faster", "slower"), "peak_mem": ("smaller", "larger")}
SAME, INCONCLUSIVE = "same", "inconclusive"
COLUMNS = ("case", "runs", "baseline", "current", "change [CI]", "p", "gate", "FPR", "MDC", "verdict")


@dataclass(frozen=True)
class HistoryNoise:
    """Between-run noise of one case from its history (the caller computes it).

    Args:
        band_rel: the relative band half-width a run of unchanged code falls within.
        n_runs: how many past runs gave it (shown in the noise source).
        sd_rel: sd of their log values, for the FPR/MDC model; None where unknown.
    """

    band_rel: float
    n_runs: int | None = None
    sd_rel: float | None = None


@dataclass(frozen=True)
class Difference:
    """One environment field in which baseline and current differ.

    Args:
        field: what differs ('threads', 'torch', 'calibration peak float32').
        base, current: the two values.
        blocking: whether it makes the timings incomparable (compare refuses without
            allow_different_env); the hostname alone does not (CI runners change name every run).
        unit: 'FLOP/s' to show the values as rates.
        note: how far apart, against which tolerance.
    """

    field: str
    base: object
    current: object
    blocking: bool = True
    unit: str | None = None
    note: str = ""

    @property
    def text(self) -> str:
        """'threads: 2 (baseline) vs 1 (current)'."""
        show = fmt_flops if self.unit == "FLOP/s" else (lambda v: "none" if v is None else str(v))
        note = f" ({self.note})" if self.note else ""
        return f"{self.field}: {show(self.base)} (baseline) vs {show(self.current)} (current){note}"


@dataclass(frozen=True)
class CaseComparison:
    """One case of a comparison. Relative changes are current / baseline - 1 of the metric itself.

    Args:
        case_id, label, variant, size, size_name, device: the case (from its current record).
        metric, unit: what was compared.
        baseline, current: median of each side's per-run values.
        baseline_runs, current_runs: how many runs each side has.
        ratio: current / baseline (the HL ratio, or the ratio of per-run medians; module docstring).
        ci_low, ci_high: the ratio's CI (None for peak_mem); ci_level: asked; ci_coverage: reached.
        change, change_low, change_high: ratio - 1 and its CI's bounds - 1.
        p: two-sided Mann–Whitney p of the pooled samples (None for peak_mem); test: its method.
        threshold: the user's; gate: the one applied; noise_rel: the noise figure (None if none);
        noise_source: where it came from; noise_sd_rel: sigma of the gate model (None if unknown).
        fpr: expected false-alarm rate at the gate; fpr_threshold: at the user's threshold;
            mdc: the smallest slowdown caught with 80% power (None where sigma is unknown).
        verdict: faster | slower | same | inconclusive (peak_mem: smaller | larger | ...).
        regression: the verdict is the worse one.
        why: what decided the verdict. text: the one line, criterion style.
        warnings: about this case's gate.
    """

    case_id: str
    label: str
    variant: str
    size: int | float
    size_name: str
    device: str
    metric: str
    unit: str
    baseline: float
    current: float
    baseline_runs: int
    current_runs: int
    ratio: float
    ci_low: float | None
    ci_high: float | None
    ci_level: float | None
    ci_coverage: float | None
    p: float | None
    test: str | None
    threshold: float
    gate: float
    noise_rel: float | None
    noise_source: str
    noise_sd_rel: float | None
    fpr: float | None
    fpr_threshold: float | None
    mdc: float | None
    verdict: str
    regression: bool
    why: str
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return case_name(self.label, self.variant, self.size_name, self.size)

    @property
    def change(self) -> float:
        return self.ratio - 1

    @property
    def change_low(self) -> float | None:
        return None if self.ci_low is None else self.ci_low - 1

    @property
    def change_high(self) -> float | None:
        return None if self.ci_high is None else self.ci_high - 1

    @property
    def text(self) -> str:
        """'time +11.8% [+10.7%, +12.9%], p = 0.0001, slower'; peak_mem: 'peak_mem +6.0% (1+1 runs), larger'."""
        if self.p is None or self.ci_low is None:
            runs = f"{self.baseline_runs}+{self.current_runs} runs"
            return f"{self.metric} {signed_pct(self.change)} ({runs}), {self.verdict}"
        ci = f"[{signed_pct(self.change_low)}, {signed_pct(self.change_high)}]"
        return f"{self.metric} {signed_pct(self.change)} {ci}, {fmt_p(self.p)}, {self.verdict}"


@dataclass(frozen=True)
class Comparison:
    """Every matched case of baseline vs current.

    Args:
        metric, threshold, alpha, noise_k, ci_level: the settings.
        cases: one per case in common, in the baseline's order.
        differences: environment fields that differ (allowed, or not blocking).
        warnings: what the reader must know: environments, gates widened, FPRs, unmatched cases.
        only_baseline, only_current: case names with no ok match on the other side.
        baseline_runs, current_runs: run ids of each file's segments.
    """

    metric: str
    threshold: float
    alpha: float
    noise_k: float
    ci_level: float
    cases: list[CaseComparison]
    differences: list[Difference] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    only_baseline: list[str] = field(default_factory=list)
    only_current: list[str] = field(default_factory=list)
    baseline_runs: list[str] = field(default_factory=list)
    current_runs: list[str] = field(default_factory=list)
    runs_alpha: float = RUNS_ALPHA
    failed: list[str] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        """A regression, or a case that ran in the baseline and fails (oom, error) in the current: exit 1."""
        return bool(self.regressions or self.failed)

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.regression]

    @property
    def summary(self) -> dict[str, int]:
        """{'cases': N, 'slower': .., 'faster': .., 'same': .., 'inconclusive': ..} (peak_mem: larger, smaller)."""
        better, worse = WORDS[self.metric]
        out = {"cases": len(self.cases)}
        for word in (worse, better, SAME, INCONCLUSIVE):
            out[word] = sum(c.verdict == word for c in self.cases)
        return out


# --- formatting ---------------------------------------------------------------------------


def case_name(label: str, variant: str, size_name: str, size: int | float) -> str:
    return f"{label} · {variant} · {size_name}={fmt_size(size)}"


def pct(x: float) -> str:
    """0.02 -> '2%', 0.091 -> '9.1%'."""
    s = f"{100 * x:.1f}"
    return (s[:-2] if s.endswith(".0") else s) + "%"


def signed_pct(x: float | None) -> str:
    """+11.8%, -9.1%, +0.0%."""
    return "-" if x is None else f"{100 * x:+.1f}%"


def fmt_p(p: float) -> str:
    """'p = 0.0012' (2 significant digits), 'p < 0.0001'."""
    return f"p < {P_FLOOR:g}" if p < P_FLOOR else f"p = {p:.2g}"


# --- comparability ----------------------------------------------------------------------------

_MISSING = object()  # a field an older file does not record: unknown, so never a difference


def _env(run: RunResult, r: Record) -> dict:
    try:
        return run.header_of(r).environment
    except KeyError:
        return run.header.environment


def _gpu_name(env: dict, device: str) -> object:
    """Name of the GPU the case ran on (cuda:N -> the N-th of environment.cuda_devices)."""
    devices = env.get("cuda_devices")
    if not isinstance(devices, list):
        return _MISSING
    index = int(device.split(":")[1]) if ":" in device and device.split(":")[1].isdigit() else 0
    return devices[index].get("name") if index < len(devices) and isinstance(devices[index], dict) else None


def _facts(run: RunResult, r: Record) -> dict[str, tuple[object, bool]]:
    """field -> (value, blocking) for one record and the header of the run that measured it."""
    env = _env(run, r)
    kind = r.device.split(":")[0]
    facts: dict[str, tuple[object, bool]] = {"device": (kind, True)}
    for key in ("cpu_model", "torch", "cuda", "cudnn"):
        facts[key] = (env.get(key, _MISSING), True)
    if kind == "cuda":  # a CPU case does not run on the GPU
        facts["gpu"] = (_gpu_name(env, r.device), True)
    facts["threads"] = (r.info.get("threads", env.get("torch_threads", _MISSING)), True)  # what the case ran with
    facts["dtype"] = (r.info.get("dtype", r.params.get("dtype", _MISSING)), True)
    cal = env.get("calibration")
    if isinstance(cal, dict):
        # How long calibration ran is no property of the machine; its device and peak are.
        facts["calibration level"] = (cal.get("level", _MISSING), False)
        facts["calibration device"] = (cal.get("device_name", _MISSING), True)
    facts["hostname"] = (env.get("hostname", _MISSING), False)  # fresh CI runners get fresh names
    return facts


def _peaks(run: RunResult, r: Record) -> dict[str, float]:
    cal = _env(run, r).get("calibration")
    peaks = cal.get("measured_flop_per_s") if isinstance(cal, dict) else None
    return {k: v for k, v in (peaks or {}).items() if isinstance(v, int | float) and v > 0}


def comparability(base: RunResult, cur: RunResult, pairs: list[tuple[Record, Record]]) -> list[Difference]:
    """The environment fields in which the (baseline, current) record pairs differ, each once:
    device type, CPU model, GPU name (CUDA cases), torch/CUDA/cuDNN versions, threads, dtype,
    calibration (level, device, measured peak FLOP/s beyond CALIBRATION_TOLERANCE), hostname.
    A field one side does not record is unknown, never a difference."""
    out: dict[tuple, Difference] = {}
    for rb, rc in pairs:
        fb, fc = _facts(base, rb), _facts(cur, rc)
        for key, (vb, blocking) in fb.items():
            vc = fc.get(key, (_MISSING, blocking))[0]
            if vb is _MISSING or vc is _MISSING or vb == vc:
                continue
            out.setdefault((key, str(vb), str(vc)), Difference(key, vb, vc, blocking))
        pb, pc = _peaks(base, rb), _peaks(cur, rc)
        for dtype in sorted(pb.keys() & pc.keys()):
            apart = abs(pc[dtype] / pb[dtype] - 1)
            if apart > CALIBRATION_TOLERANCE:
                note = f"{pct(apart)} apart, tolerance {pct(CALIBRATION_TOLERANCE)}"
                d = Difference(f"calibration peak {dtype}", pb[dtype], pc[dtype], True, "FLOP/s", note)
                out.setdefault((d.field, pb[dtype], pc[dtype]), d)
    return list(out.values())


# --- one case -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Noise:
    rel: float | None
    sd: float | None
    source: str
    phrase: str  # how `why` names it: 'between-run noise (spread 25% over 3+3 runs)'


def _noise(b: Repeats, c: Repeats, history: HistoryNoise | float | None, samples: tuple[list, list] | None) -> _Noise:
    if b.n_runs >= 2 and c.n_runs >= 2:
        rel = max(b.spread_rel, c.spread_rel)
        runs = f"{b.n_runs}+{c.n_runs} runs"
        sd = pooled_log_sd([list(b.values), list(c.values)])
        return _Noise(rel, sd, f"between-run spread of {runs}", f"between-run noise (spread {pct(rel)} over {runs})")
    if history is not None:
        h = history if isinstance(history, HistoryNoise) else HistoryNoise(float(history))
        of = f" of {h.n_runs} runs" if h.n_runs else ""
        return _Noise(h.band_rel, h.sd_rel, f"history band{of}", f"the history band (±{pct(h.band_rel)}{of})")
    if samples is not None:
        rel = WITHIN_RUN_FENCE * max(iqr_rel(samples[0]), iqr_rel(samples[1]))
        fence = f"the within-run noise fence ({WITHIN_RUN_FENCE:g}×IQR/median = {pct(rel)})"
        return _Noise(rel, None, WITHIN_ONLY, fence)
    return _Noise(None, None, "none known: one value per run, no repeats or history; the threshold alone", "")


def _verdict_samples(
    w_lo: float, w_hi: float, w_est: float, p: float, g: float, t: float, alpha: float, words, noise: _Noise, ci: str
) -> tuple[str, str]:
    """(verdict, why) from the worse-direction log change CI [w_lo, w_hi], its estimate, p, the
    log gate g and log threshold t."""
    better, worse = words
    gate = pct(math.expm1(g))
    sig = p < alpha
    ps = f"{fmt_p(p)} {'<' if sig else '≥'} alpha {alpha:g}"
    if sig and w_lo > g:  # the HL estimate lies inside its CI: beyond the gate too
        return worse, f"{ps} and the CI {ci} lies beyond the gate ({gate}, {noise.source})"
    if sig and w_hi < -g:
        return better, f"{ps} and the CI {ci} lies beyond the gate ({gate}, {noise.source})"
    within_gate = -g <= w_lo and w_hi <= g
    if within_gate and not sig:
        return SAME, f"the CI {ci} lies within ±{gate} and {ps}"
    if within_gate and -t <= w_lo and w_hi <= t:
        return SAME, f"{ps}, but the CI {ci} lies within the threshold ±{pct(math.expm1(t))}: too small to matter"
    if within_gate:
        return INCONCLUSIVE, f"{ps}, but the CI {ci} lies within {noise.phrase}: it may be run-to-run noise"
    if sig:
        return INCONCLUSIVE, f"{ps}, but the CI {ci} straddles the gate ±{gate}: a change, maybe within it"
    return INCONCLUSIVE, f"{ps} and the CI {ci} reaches beyond the gate ±{gate}: more samples or runs would tell"


def _verdict_runs(
    w_lo: float, w_hi: float, w_est: float, p: float, g: float, t: float, alpha: float, words, ci: str, na: int,
    nb: int,
) -> tuple[str, str]:
    """(verdict, why) between runs: worse-direction log change estimate, its 95% CI [w_lo, w_hi], the
    t-test's p, the log gate g = log(1 + max(threshold, critical change)) and log threshold t.
    A regression: significant between runs (p < alpha, so beyond the critical change) AND beyond the
    threshold, with the CI excluding the threshold."""
    better, worse = words
    gate = pct(math.expm1(g))
    sig = p < alpha
    ps = f"{fmt_p(p)} {'<' if sig else '≥'} alpha {alpha:g} over {na}+{nb} runs"
    if sig and w_est > g and w_lo > t:
        return worse, f"{ps}; the change is beyond the gate {gate} and its CI {ci} excludes the threshold"
    if sig and w_est < -g and w_hi < -t:
        return better, f"{ps}; the change is beyond the gate {gate} and its CI {ci} excludes the threshold"
    threshold = pct(math.expm1(t))
    if -t <= w_lo and w_hi <= t:  # 'same' claims no change that matters: the CI inside the user's threshold
        return SAME, f"the CI {ci} lies within the threshold ±{threshold} and {ps}"
    if sig:
        return INCONCLUSIVE, f"{ps}, but the CI {ci} reaches within the threshold ±{threshold}"
    return INCONCLUSIVE, (f"{ps}: the CI {ci} reaches beyond the threshold ±{threshold}, and a change is "
                          f"significant only beyond the gate ±{gate}: more runs would tell")


def _compare_case(
    b: Repeats, c: Repeats, metric: str, threshold: float, alpha: float, noise_k: float,
    history: HistoryNoise | float | None, runs_alpha: float | None = None,
    paired: tuple[list[float], list[float]] | None = None,
) -> CaseComparison:
    info = METRICS[metric]
    words = WORDS[metric]
    sign = 1.0 if info.smaller_is_better else -1.0  # worse-direction log change = sign * log(ratio)
    a_s, c_s = b.samples(metric), c.samples(metric)
    has_samples = metric != "peak_mem" and bool(a_s) and bool(c_s)
    noise = _noise(b, c, history, (a_s, c_s) if has_samples else None)
    gate = threshold if noise.rel is None else max(threshold, noise_k * noise.rel)
    g, t = math.log1p(gate), math.log1p(threshold)
    between = b.n_runs >= 2 and c.n_runs >= 2
    ci_low = ci_high = ci_level = coverage = p = test = None
    runs = None
    if has_samples and between:  # the runs are the unit: a t-test on per-run log values
        runs = paired_runs_test(*paired) if paired else runs_test(list(b.values), list(c.values))
        alpha = RUNS_ALPHA if runs_alpha is None else runs_alpha
        critical = runs.half_width(1 - alpha)  # the smallest log change significant at alpha
        source = (f"between-run paired t-test of {b.n_runs} interleaved rounds" if paired
                  else f"between-run t-test of {b.n_runs}+{c.n_runs} runs")
        noise = _Noise(math.expm1(critical), runs.sd, source,
                       f"the between-run noise (a change below ±{pct(math.expm1(critical))} is not significant "
                       f"over {b.n_runs}+{c.n_runs} runs)")
        gate = max(threshold, noise_k * noise.rel)
        g = math.log1p(gate)
        hw = runs.half_width(CI_LEVEL)
        ratio, p = math.exp(runs.d), runs.p
        ci_low, ci_high, ci_level, coverage = math.exp(runs.d - hw), math.exp(runs.d + hw), CI_LEVEL, CI_LEVEL
        test = (f"Student's paired t on log ratios of interleaved rounds, {runs.dof} dof (between runs)" if paired
                else f"Student's t on log per-run values, pooled variance, {runs.dof} dof (between runs)")
        w_lo, w_hi = sorted((sign * (runs.d - hw), sign * (runs.d + hw)))
        ci = f"[{signed_pct(ci_low - 1)}, {signed_pct(ci_high - 1)}]"
        verdict, why = _verdict_runs(w_lo, w_hi, sign * runs.d, p, g, t, alpha, words, ci, b.n_runs, c.n_runs)
    elif has_samples:
        rci = ratio_ci(a_s, c_s, CI_LEVEL)
        mw = mann_whitney(a_s, c_s)
        ratio = rci.ratio
        ci_low, ci_high, ci_level, coverage, p = rci.low, rci.high, rci.level, rci.coverage, mw.p
        test = f"Mann–Whitney U, two-sided, {mw.method}"
        w_lo, w_hi = sorted((sign * math.log(rci.low), sign * math.log(rci.high)))
        ci = f"[{signed_pct(rci.low - 1)}, {signed_pct(rci.high - 1)}]"
        verdict, why = _verdict_samples(w_lo, w_hi, sign * math.log(ratio), mw.p, g, t, alpha, words, noise, ci)
        if noise.source == WITHIN_ONLY and verdict in words:
            # One run a side and no history: the samples of one run cannot see between-run noise (on a
            # shared 2-core VM, medians 25% apart with a +-2% CI each), so no alarm rests on them alone.
            why = f"{why}; but {WITHIN_ONLY}: not called {verdict}"
            verdict = INCONCLUSIVE
    else:
        ratio = c.median / b.median
        w = sign * math.log(ratio)
        verdict = words[1] if w > g else words[0] if w < -g else SAME
        where = "beyond" if abs(w) > g else "within"
        why = (
            f"per-run values {signed_pct(ratio - 1)} apart ({b.n_runs}+{c.n_runs} runs), {where} the gate "
            f"±{pct(gate)} ({noise.source}); one value per run: no test, no CI"
        )
    fpr = fpr_t = mdc = None
    warnings = []
    if gate > threshold:
        warnings.append(
            f"threshold {pct(threshold)} is below this case's noise: gate widened to {pct(gate)} ({noise.source})"
        )
    if runs is not None:
        # The rule's own rates: an A/A alarm needs t beyond its alpha/2 quantile (one side), so alpha/2
        # bounds the false-positive rate; a slowdown is caught once it clears both the critical change
        # and threshold + the CI's half-width, plus z(power) standard errors for 80% power.
        fpr = (RUNS_ALPHA if runs_alpha is None else runs_alpha) / 2
        fpr_t = expected_false_positive_rate(threshold, noise.sd, b.n_runs, c.n_runs)
        need = max(critical, t + hw)
        mdc = math.expm1(need + NormalDist().inv_cdf(DEFAULT_POWER) * runs.se)
    elif noise.sd is not None:
        fpr = expected_false_positive_rate(gate, noise.sd)
        fpr_t = expected_false_positive_rate(threshold, noise.sd)
        mdc = min_detectable_change(gate, noise.sd)
    if fpr_t is not None and fpr_t > FPR_WARN:
        warnings.append(
            f"threshold {pct(threshold)} alone would flag {pct(fpr_t)} of A/A comparisons "
            f"(between-run sd {pct(noise.sd)}); the gate {pct(gate)} expects {pct(fpr)}"
        )
    rec = c.records[-1]
    return CaseComparison(
        case_id=c.case_id, label=rec.label, variant=rec.variant, size=rec.size, size_name=rec.size_name,
        device=rec.device, metric=metric, unit=info.unit, baseline=b.median, current=c.median,
        baseline_runs=b.n_runs, current_runs=c.n_runs, ratio=ratio, ci_low=ci_low, ci_high=ci_high,
        ci_level=ci_level, ci_coverage=coverage, p=p, test=test, threshold=threshold, gate=gate,
        noise_rel=noise.rel, noise_source=noise.source, noise_sd_rel=noise.sd, fpr=fpr, fpr_threshold=fpr_t,
        mdc=mdc, verdict=verdict, regression=verdict == words[1], why=why, warnings=tuple(warnings),
    )


# --- the comparison ---------------------------------------------------------------------------


def _rounds(run: RunResult, rep: Repeats) -> list[int] | None:
    """The `xfbench ab` round of each of a case's runs (None unless every run is an interleaved round)."""
    out = []
    for r in rep.records:
        try:
            suite = (run.header_of(r).model_extra or {}).get("suite") or {}
        except KeyError:
            return None
        if not (isinstance(suite, dict) and suite.get("interleaved") and isinstance(suite.get("repeat"), int)):
            return None
        out.append(suite["repeat"])
    return out if len(set(out)) == len(out) else None


def _paired(base: RunResult, cur: RunResult, b: Repeats, c: Repeats) -> tuple[list[float], list[float]] | None:
    """Both sides' per-run values in round order when they are the rounds of one `xfbench ab` (each
    round ran A and B next to each other in time, in alternating order), else None (the runs are then
    unpaired)."""
    rb, rc = _rounds(base, b), _rounds(cur, c)
    if rb is None or rc is None or sorted(rb) != sorted(rc) or len(rb) < 2:
        return None
    vb, vc = dict(zip(rb, b.values, strict=True)), dict(zip(rc, c.values, strict=True))
    order = sorted(rb)
    return [vb[i] for i in order], [vc[i] for i in order]


def _side(name: str, reps: dict[str, Repeats], metric: str) -> str:
    workloads = sorted({r.workload for rep in reps.values() for r in rep.records})
    if not reps:
        return f"the {name} has no ok case with {metric}"
    return f"the {name} has {len(reps)} ok case{'s' * (len(reps) != 1)} ({', '.join(workloads)})"


def compare(
    base: RunResult,
    cur: RunResult,
    *,
    metric: str = "time",
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    noise_k: float = NOISE_K,
    history_noise: dict[str, HistoryNoise | float] | None = None,
    allow_different_env: bool = False,
    thresholds: dict[str, float] | None = None,
    runs_alpha: float = RUNS_ALPHA,
) -> Comparison:
    """Compare `cur` with `base` case by case (module docstring: statistics and verdict rule).

    `thresholds` gives cases their own relative threshold (a suite case's, by case_id); the rest
    take `threshold`.

    Raises BadInput when no case is in common, when the environments differ in a blocking field
    and not allow_different_env (the message names the fields), or on bad settings.
    """
    check_metric(metric)
    for t in [threshold, *(thresholds or {}).values()]:
        if not (math.isfinite(t) and t >= 0):
            raise BadInput(f"threshold must be a relative change >= 0 (0.05 = 5%), got {t}")
    if not (0 < alpha < 1 and 0 < runs_alpha < 1):
        raise BadInput(f"alpha must be between 0 and 1, got {alpha if not 0 < alpha < 1 else runs_alpha}")
    if not (math.isfinite(noise_k) and noise_k >= 0):
        raise BadInput(f"noise_k must be >= 0, got {noise_k}")
    rb, rc = repeats(base, metric), repeats(cur, metric)
    common = [cid for cid in rb if cid in rc]
    if not common:
        raise BadInput(
            f"no case in common to compare {metric}: {_side('baseline', rb, metric)}, {_side('current', rc, metric)}; "
            "cases match by case_id (the same workload, parameters and device)"
        )
    pairs = [(rb[cid].records[-1], rc[cid].records[-1]) for cid in common]
    diffs = comparability(base, cur, pairs)
    blocking = [d for d in diffs if d.blocking]
    if blocking and not allow_different_env:
        raise BadInput(
            "baseline and current ran in different environments: "
            + "; ".join(d.text for d in blocking)
            + "; pass --allow-different-env to compare them anyway"
        )
    warnings = [f"environments differ: {d.text}" for d in diffs]
    history_noise = history_noise or {}
    cases = [
        _compare_case(rb[cid], rc[cid], metric, (thresholds or {}).get(cid, threshold), alpha, noise_k,
                      history_noise.get(cid), runs_alpha, _paired(base, cur, rb[cid], rc[cid]))
        for cid in common
    ]

    def names(reps: dict[str, Repeats], other: dict[str, Repeats]) -> list[str]:
        recs = [rep.records[-1] for cid, rep in reps.items() if cid not in other]
        return [case_name(r.label, r.variant, r.size_name, r.size) for r in recs]

    only_b, only_c = names(rb, rc), names(rc, rb)
    now = {r.case_id: r for r in cur.records}  # the latest record of each case in the current run
    failed = [
        f"{case_name(r.label, r.variant, r.size_name, r.size)}: ok in the baseline, {r.status} now ({r.reason})"
        for cid in rb if cid not in rc and (r := now.get(cid)) is not None and r.status in ("oom", "error")
    ]
    if only_b or only_c:
        warnings.append(
            f"not compared: {len(only_b)} case(s) only in the baseline, {len(only_c)} only in the current"
        )
    within = sum(c.noise_source == WITHIN_ONLY for c in cases)
    if within:
        warnings.append(f"{within} of {len(cases)} cases: {WITHIN_ONLY}")
    warnings += [f"{c.name}: {w}" for c in cases for w in c.warnings]
    return Comparison(
        metric=metric, threshold=threshold, alpha=alpha, noise_k=noise_k, ci_level=CI_LEVEL, cases=cases,
        differences=diffs, warnings=warnings, only_baseline=only_b, only_current=only_c,
        baseline_runs=[h.run_id for h in base.headers or [base.header]],
        current_runs=[h.run_id for h in cur.headers or [cur.header]], runs_alpha=runs_alpha, failed=failed,
    )


# --- the table --------------------------------------------------------------------------------


def _verdict_cell(c: CaseComparison) -> Cell:
    status = "bad" if c.regression else "warn" if c.verdict == INCONCLUSIVE else "dim" if c.verdict == SAME else None
    return Cell(c.verdict, status=status, note=c.why)


def _change_cell(c: CaseComparison) -> Cell:
    ci = "" if c.ci_low is None else f" [{signed_pct(c.change_low)}, {signed_pct(c.change_high)}]"
    return Cell(c.change, "%", label="+" if c.change > 0 else "", suffix=ci)


def _p_cell(c: CaseComparison) -> Cell:
    if c.p is None:
        return Cell(None, note="one value per run: no test")
    return Cell(c.p, note=c.test) if c.p >= P_FLOOR else Cell(f"< {P_FLOOR:g}", note=c.test)


def comparison_table(cmp: Comparison) -> Table:
    """The comparison as a Table: case, baseline, current, change [CI], p, gate, FPR, MDC, verdict."""
    rows = []
    for c in cmp.cases:
        unknown = "unknown: no between-run sd (within-run samples only)"
        rows.append([
            # the table's label on a line of its own: long labels would squeeze every number column
            Cell(c.label, more=(Cell(f"{c.variant} · {c.size_name}={fmt_size(c.size)}"),), note=c.case_id),
            Cell(f"{c.baseline_runs}+{c.current_runs}", note="runs (segments) measured on each side"),
            Cell(c.baseline, c.unit),
            Cell(c.current, c.unit),
            _change_cell(c),
            _p_cell(c),
            Cell(c.gate, "%", note=c.noise_source, status="warn" if c.noise_source == WITHIN_ONLY else None),
            Cell(c.fpr, "%", status="warn" if c.fpr is not None and c.fpr > FPR_WARN else None,
                 note=None if c.fpr is not None else unknown),
            Cell(c.mdc, "%", note=None if c.mdc is not None else unknown),
            _verdict_cell(c),
        ])
    better, worse = WORDS[cmp.metric]
    info = METRICS[cmp.metric]
    notes = [f"{cmp.metric}: {info.what}; change = current / baseline - 1"]
    if cmp.metric == "peak_mem":
        notes.append("one value per run: no test and no CI; the verdict compares per-run medians with the gate")
    else:
        runs = any(c.test and "between runs" in c.test for c in cmp.cases)
        paired = any(c.test and "paired" in c.test for c in cmp.cases)
        if runs:
            how = ("Student's paired t-test on the log ratio of each interleaved `xfbench ab` round" if paired
                   else "Student's two-sample t-test (pooled variance) on log per-run values")
            notes.append(
                f"with >= 2 runs on both sides (the runs are the unit): change = ratio of the geometric means of "
                f"per-run values, [CI] its {cmp.ci_level:.0%} t-interval, p {how}, significant below alpha = "
                f"{cmp.runs_alpha:g}; the noise is the critical change, the smallest significant over those runs; "
                f"FPR: the test's own bound alpha/2; MDC: the change that clears both the critical change and the "
                f"threshold + the CI's half-width with 80% power"
            )
        pooled = any(c.test and "Mann" in c.test for c in cmp.cases)
        if runs:
            notes.append(
                f"with >= 2 runs on both sides (the runs are the unit): change = ratio of the geometric means of "
                f"per-run values, [CI] its {cmp.ci_level:.0%} t-interval, p Student's two-sample t-test (pooled "
                f"variance) on log per-run values, significant below alpha = {cmp.runs_alpha:g}; the noise is the "
                "critical change, the smallest significant over those runs"
            )
        if pooled:
            notes += [
                f"within one run a side: [CI] {cmp.ci_level:.0%} CI of the ratio current / baseline, Hodges–Lehmann "
                "on log values with Lehmann/Moses bounds, from the raw samples; p: two-sided Mann–Whitney U on the "
                f"raw samples (exact null distribution where n_a·n_b <= {EXACT_MAX_PRODUCT} without ties, else "
                f"normal with tie and continuity correction); significant below alpha = {cmp.alpha:g} (asv's level)",
            ]
    notes += [
        f"gate = max(threshold {_thresholds(cmp)}, {cmp.noise_k:g} × noise), noise the first known of: the "
        "between-run critical change (both sides >= 2 runs), the history band (median ± 3×IQR of past runs), "
        f"{WITHIN_RUN_FENCE:g}×IQR/median of the samples (within-run only: cannot see between-run noise)",
        *(f"noise: {src} ({n} case{'s' * (n != 1)})" for src, n in _count(c.noise_source for c in cmp.cases)),
        "FPR (one run a side, with a history band): expected share of A/A comparisons flagged at the gate, "
        "1 - Φ(log(1+gate) / (σ√2)), σ = the history's sd of log per-run values; MDC: the smallest change caught "
        "with 80% power, exp(log(1+gate) + z(0.8)·σ√2) - 1; '-' where σ is unknown (within-run only)",
        f"verdict: {worse} = p < alpha, the change beyond the gate and its CI beyond the threshold; {better} = the "
        f"same on the other side; {SAME} = the CI within ±gate (between runs: within ±threshold); else "
        f"{INCONCLUSIVE} (the cell says why)",
    ]
    title = f"compare {cmp.metric}: current vs baseline, change [{cmp.ci_level:.0%} CI] and verdict per case"
    return Table(title, list(COLUMNS), rows, notes)


def _thresholds(cmp: Comparison) -> str:
    """The threshold(s) the cases were held to: one figure, or each (suite cases may set their own)."""
    used = sorted({c.threshold for c in cmp.cases} or {cmp.threshold})
    return pct(used[0]) if len(used) == 1 else "per case: " + ", ".join(pct(t) for t in used)


def _count(items) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return list(out.items())
