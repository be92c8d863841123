"""Compute-optimal training estimates: pure math from a parameter count, a shape and a throughput.

  * Tokens: Chinchilla, D = 20·N (Hoffmann et al. 2022: compute-optimal models see about
    20 tokens per parameter; their Table 3 fits give 20.2 at 1B and similar ratios above).
  * Training FLOPs: C = 6·N·D (Kaplan et al. 2020, sec. 2.1: 2N forward + 4N backward per
    token; the attention term is left out, as in both papers), and beside it the FLOPs that
    `xfbench model` counts, (6N + 12·L·d·T)·D (reports.model_flops.train_flops_per_token), at
    the target's shape: its layers L, width d and training context T.
  * Time: device-hours = D / (tokens/s of one device) / 3600; wall-clock hours divide that
    by the device count, assuming perfect scaling. Tokens/s of the target = achieved FLOP/s /
    FLOPs per token of the target (attention included), so a measured rate carries over to
    another size and context only through its FLOP/s.
  * Energy: kWh = D · (J per token) / 3.6e6, when an energy per token is known.

N is every parameter but the position embedding (the N of the FLOP formulas, a record's
info['n_flop_params']). Throughput comes from a measurement (a results file of `xfbench
model`), from a stated MFU and peak, or is given; every number says where it came from and
that it is an extrapolation. Import-light (no torch): the CLI and reports use it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .model_flops import train_flops_per_token
from .schema import Record
from .units import fmt_flop_count, fmt_flops, plain

CHINCHILLA_TOKENS_PER_PARAM = 20.0
CHINCHILLA_SOURCE = "Hoffmann et al. 2022 (Chinchilla): D = 20·N"
FLOPS_SOURCE = "Kaplan et al. 2020: C = 6·N·D (attention left out)"
JOULES_PER_KWH = 3.6e6

# Brown et al. 2020 (GPT-3), Table 2.1: (name, N, n_layers, d_model); every row trains at
# n_ctx = 2048. The shape a target takes when none is given: the row nearest N in log N.
GPT3_SHAPES = [
    ("125M", 125e6, 12, 768),
    ("350M", 350e6, 24, 1024),
    ("760M", 760e6, 24, 1536),
    ("1.3B", 1.3e9, 24, 2048),
    ("2.7B", 2.7e9, 32, 2560),
    ("6.7B", 6.7e9, 32, 4096),
    ("13B", 13e9, 40, 5140),
    ("175B", 175e9, 96, 12288),
]
GPT3_CONTEXT = 2048
# GPT-2 (Radford et al. 2019, Table 2) as nanoGPT's presets, which `xfbench model` runs at
# T = 1024 (their block_size): a target at one of these sizes gets its shape and T, so the
# planner's FLOPs per token are those of the model's MFU.
GPT2_SHAPES = [
    ("124M", 124e6, 12, 768),
    ("350M", 350e6, 24, 1024),
    ("774M", 774e6, 36, 1280),
    ("1.5B", 1.5e9, 48, 1600),
]
GPT2_CONTEXT = 1024
# "At a size": within 5% of it in N. Covers a nominal name and the N xfbench model records
# (GPT-2 1.5B has N = 1.556B without its position table), far below the spacing of the rows.
SAME_SIZE = 1.05


def _log_distance(a: float, b: float) -> float:
    return abs(math.log(a / b))


@dataclass(frozen=True)
class Shape:
    """What sets a model's attention FLOPs besides N.

    Args:
        n_layer: L.
        d_model: d.
        seq_len: training context T.
        convention: attention FLOP convention ('full' as `xfbench model` by default, or 'causal').
        source: why this shape (given, or which default).
    """

    n_layer: int
    d_model: int
    seq_len: int
    convention: str = "full"
    source: str = "given"

    def flops_per_token(self, n_params: float) -> float:
        """Training FLOPs per token, 6N + 12·L·d·T: the FLOPs of `xfbench model`'s MFU."""
        return train_flops_per_token(n_params, self.n_layer, self.d_model, self.seq_len, self.convention)

    def text(self) -> str:
        return f"L = {self.n_layer}, d = {self.d_model}, T = {self.seq_len}, {self.convention} attention"


def _table_row(n_params: float) -> tuple[str, int, int, int]:
    """(name and source, L, d, T) of the row for N: a GPT-2 size's own row, else the nearest
    GPT-3 row (the nearer where both are close, GPT-2 on a tie: 350M is in both tables)."""
    rows = [(f"GPT-2 {name}, nanoGPT's preset, as xfbench model runs it", n, L, d, GPT2_CONTEXT)
            for name, n, L, d in GPT2_SHAPES if _log_distance(n, n_params) <= math.log(SAME_SIZE)]
    rows += [(f"GPT-3 {name}, the row of Brown et al. 2020 Table 2.1 nearest N", n, L, d, GPT3_CONTEXT)
             for name, n, L, d in GPT3_SHAPES]
    row, _, n_layer, d_model, seq_len = min(rows, key=lambda row: _log_distance(row[1], n_params))
    return row, n_layer, d_model, seq_len


def target_shape(
    n_params: float,
    seq_len: int | None = None,
    n_layer: int | None = None,
    d_model: int | None = None,
    convention: str = "full",
    measured: list[TrainPoint] | None = None,
) -> Shape:
    """The given shape, with defaults where a part is not given.

    With measured train points (train_points of the results the throughput comes from), a
    target at a measured size (within SAME_SIZE) takes that model's L, d and T, and any other
    target the T of the nearest measured size: the FLOPs per token of that run's MFU. Without,
    the row for N (_table_row): GPT-2's at its sizes (T = 1024), GPT-3's nearest otherwise
    (T = 2048). ValueError when only one of n_layer, d_model is given.
    """
    if (n_layer is None) != (d_model is None):
        raise ValueError("--layers and --d-model go together")
    near = min(measured, key=lambda p: _log_distance(p.n_params, n_params)) if measured else None
    at_measured = near is not None and _log_distance(near.n_params, n_params) <= math.log(SAME_SIZE)
    row, row_layer, row_d, row_t = _table_row(n_params)
    if n_layer is not None:
        why = ["L, d given"]
    elif at_measured:
        n_layer, d_model = near.shape.n_layer, near.shape.d_model
        why = [f"L, d as measured at {near.preset} (--layers, --d-model)"]
    else:
        n_layer, d_model = row_layer, row_d
        why = [f"L, d of {row} (--layers, --d-model)"]
    if seq_len is not None:
        why.append("T given")
    elif near is not None:
        seq_len = near.shape.seq_len
        nearest = "" if at_measured else ", the nearest measured size"
        why.append(f"T = {seq_len} as measured at {near.preset}{nearest} (--seq-len)")
    else:
        seq_len = row_t
        why.append(f"T = {seq_len}, that row's context (--seq-len)")
    return Shape(n_layer, d_model, seq_len, convention, "; ".join(why))


@dataclass(frozen=True)
class Throughput:
    """Training tokens/s of one device for the target model, and where it came from.

    Args:
        tokens_per_s: per device.
        source: how it was obtained (measured, interpolated, extrapolated, given).
        j_per_token: energy per training token, if known.
        energy_source: where j_per_token came from.
    """

    tokens_per_s: float
    source: str
    j_per_token: float | None = None
    energy_source: str | None = None


def from_tokens_per_s(tokens_per_s: float) -> Throughput:
    return Throughput(tokens_per_s, "given (--tokens-per-s), per device")


def from_mfu(n_params: float, shape: Shape, mfu: float, peak_flop_per_s: float) -> Throughput:
    """tokens/s = MFU · peak / (6N + 12·L·d·T): the FLOPs per token of `xfbench model`'s MFU."""
    per_token = shape.flops_per_token(n_params)
    return Throughput(
        mfu * peak_flop_per_s / per_token,
        f"given MFU {plain(mfu, 6)} x peak {fmt_flops(peak_flop_per_s)} / {fmt_flop_count(per_token)} per token",
    )


@dataclass(frozen=True)
class TrainPoint:
    """One model that trained, in the planner's terms.

    Args:
        n_params: N (info['n_flop_params']).
        flop_per_s: achieved analytic FLOP/s (metrics['flop_per_s'], attention included), in the
            planner's FLOP convention.
        tokens_per_s: the measured tokens/s.
        shape: the shape it trained at (in the planner's convention).
        j_per_token: measured energy per token, if any.
        preset: its name.
    """

    n_params: float
    flop_per_s: float
    tokens_per_s: float
    shape: Shape
    j_per_token: float | None
    preset: str


def _positive(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and x > 0 else None


def train_points(records: list[Record], convention: str = "full") -> list[TrainPoint]:
    """The fastest (highest FLOP/s) variant of each model that trained, smallest first.

    Only `xfbench model` train records that ran and carry N and FLOP/s. A record counted under
    the other attention convention has its FLOP/s rescaled to `convention` (same tokens/s).
    """
    best: dict[float, TrainPoint] = {}
    for r in records:
        if r.workload != "model" or r.params.get("mode") != "train" or r.status != "ok":
            continue
        p = r.params
        n, fps, tps, n_layer, d_model, seq_len = (_positive(x) for x in (
            r.info.get("n_flop_params"), r.metrics.get("flop_per_s"), r.metrics.get("tokens_per_s"),
            p.get("n_layer"), p.get("n_embd"), p.get("seq_len")))
        if None in (n, fps, tps, n_layer, d_model, seq_len):
            continue
        shape = Shape(int(n_layer), int(d_model), int(seq_len), convention, "measured")
        own = r.info.get("flop_convention_name", "full")
        if own != convention:
            fps *= shape.flops_per_token(n) / replace(shape, convention=own).flops_per_token(n)
        point = TrainPoint(n, fps, tps, shape, _positive(r.metrics.get("j_per_token")), str(p.get("preset", n)))
        if n not in best or fps > best[n].flop_per_s:
            best[n] = point
    return sorted(best.values(), key=lambda pt: pt.n_params)


def achieved_flop_per_s(n_params: float, points: list[TrainPoint]) -> tuple[float, str]:
    """Achieved FLOP/s at N and how it was obtained: measured, interpolated between the two
    nearest measured sizes (linear in log FLOP/s vs log N), or held at the nearest measured
    size outside them (constant achieved FLOP/s)."""
    below = [p for p in points if p.n_params <= n_params]
    above = [p for p in points if p.n_params >= n_params]
    if below and above and below[-1] is above[0]:
        return below[-1].flop_per_s, f"measured at {below[-1].preset} (train, fastest variant)"
    if below and above:
        lo, hi = below[-1], above[0]
        w = math.log(n_params / lo.n_params) / math.log(hi.n_params / lo.n_params)
        fps = math.exp((1 - w) * math.log(lo.flop_per_s) + w * math.log(hi.flop_per_s))
        return fps, f"interpolated between {lo.preset} and {hi.preset} (linear in log-log)"
    near = below[-1] if below else above[0]
    return near.flop_per_s, f"extrapolated from {near.preset}: constant achieved FLOP/s"


def from_results(n_params: float, shape: Shape, points: list[TrainPoint]) -> Throughput:
    """Tokens/s of the target (N, shape) from measured train points (train_points(records,
    shape.convention)): achieved FLOP/s at N (achieved_flop_per_s) / the target's FLOPs per
    token. Energy per token, when measured, is the nearest measured size's energy per FLOP x
    the target's FLOPs per token (constant energy per FLOP). ValueError when no point."""
    if not points:
        raise ValueError("the results file has no `xfbench model` train record that ran")
    fps, how = achieved_flop_per_s(n_params, points)
    per_token = shape.flops_per_token(n_params)
    source = f"{fmt_flops(fps)} achieved, {how}, / {fmt_flop_count(per_token)} per token"
    energy = [p for p in points if p.j_per_token is not None]
    if not energy:
        return Throughput(fps / per_token, source)
    ref = min(energy, key=lambda p: abs(math.log(p.n_params / n_params)))
    return Throughput(
        fps / per_token, source, ref.j_per_token * per_token / ref.shape.flops_per_token(ref.n_params),
        f"measured J/token at {ref.preset} x FLOPs per token (target / {ref.preset}): constant energy per FLOP",
    )


@dataclass
class Plan:
    """A compute-optimal training estimate for one model size.

    Args:
        n_params: N.
        tokens_per_param: D / N.
        tokens: D.
        flops: C = 6·N·D.
        shape: the target's shape, which sets the FLOPs with attention.
        throughput: tokens/s per device and its source.
        devices: devices training in parallel (perfect scaling assumed).
        sources: where D and C come from.
    """

    n_params: float
    tokens_per_param: float
    tokens: float
    flops: float
    shape: Shape
    throughput: Throughput | None = None
    devices: int = 1
    sources: list[str] = field(default_factory=list)

    @property
    def flops_per_token(self) -> float:
        """6N + 12·L·d·T at the plan's shape."""
        return self.shape.flops_per_token(self.n_params)

    @property
    def flops_with_attention(self) -> float:
        """(6N + 12·L·d·T)·D."""
        return self.flops_per_token * self.tokens

    @property
    def device_hours(self) -> float | None:
        if self.throughput is None or self.throughput.tokens_per_s <= 0:
            return None
        return self.tokens / self.throughput.tokens_per_s / 3600.0

    @property
    def wall_hours(self) -> float | None:
        dh = self.device_hours
        return None if dh is None else dh / self.devices

    @property
    def kwh(self) -> float | None:
        if self.throughput is None or self.throughput.j_per_token is None:
            return None
        return self.tokens * self.throughput.j_per_token / JOULES_PER_KWH


def make_plan(
    n_params: float,
    tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM,
    throughput: Throughput | None = None,
    devices: int = 1,
    shape: Shape | None = None,
) -> Plan:
    """The plan for N; shape defaults to target_shape(N) (the GPT-2 or GPT-3 row for N)."""
    if not (0 < n_params < math.inf and 0 < tokens_per_param < math.inf) or devices < 1:
        raise ValueError("parameters and tokens per parameter must be positive and finite, devices at least 1")
    if throughput is not None and not 0 < throughput.tokens_per_s < math.inf:  # inf would print "0 h"
        raise ValueError(f"the throughput ({throughput.source}) must be a positive, finite number of tokens/s")
    d = tokens_per_param * n_params
    given = f"D = {tokens_per_param:g}·N (given --tokens-per-param)"
    src = CHINCHILLA_SOURCE if tokens_per_param == CHINCHILLA_TOKENS_PER_PARAM else given
    return Plan(
        n_params, tokens_per_param, d, 6.0 * n_params * d, shape or target_shape(n_params), throughput, devices,
        [src, FLOPS_SOURCE],
    )


def preset_plans(
    records: list[Record], tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM
) -> list[tuple[str, Plan]]:
    """For each model that trained: its compute-optimal plan at its own measured rate and shape."""
    out = []
    for p in train_points(records):
        measured = f"measured at {p.preset}"
        tp = Throughput(p.tokens_per_s, measured, p.j_per_token, measured if p.j_per_token else None)
        out.append((p.preset, make_plan(p.n_params, tokens_per_param, tp, shape=p.shape)))
    return out
