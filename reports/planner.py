"""Compute-optimal training estimates: pure math from a parameter count and a throughput.

  * Tokens: Chinchilla, D = 20·N (Hoffmann et al. 2022: compute-optimal models see about
    20 tokens per parameter; their Table 3 fits give 20.2 at 1B and similar ratios above).
  * Training FLOPs: C = 6·N·D (Kaplan et al. 2020, sec. 2.1: 2N forward + 4N backward per
    token; the attention term is left out, as in both papers).
  * Time: device-hours = D / (tokens/s of one device) / 3600; wall-clock hours divide that
    by the device count, assuming perfect scaling.
  * Energy: kWh = D · (J per token) / 3.6e6, when an energy per token is known.

Throughput comes from a measurement (a results file of `xfbench model`) or from a stated
MFU and peak; every number says where it came from and that it is an extrapolation.
Import-light (no torch): the CLI and reports use it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .schema import Record

CHINCHILLA_TOKENS_PER_PARAM = 20.0
CHINCHILLA_SOURCE = "Hoffmann et al. 2022 (Chinchilla): D = 20·N"
FLOPS_SOURCE = "Kaplan et al. 2020: C = 6·N·D"
JOULES_PER_KWH = 3.6e6


def chinchilla_tokens(n_params: float, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM) -> float:
    """Compute-optimal training tokens D = tokens_per_param · N."""
    return tokens_per_param * n_params


def training_flops(n_params: float, tokens: float) -> float:
    """C = 6·N·D."""
    return 6.0 * n_params * tokens


@dataclass(frozen=True)
class Throughput:
    """Training tokens/s of one device for a model of n_params, and where it came from.

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


def from_mfu(n_params: float, mfu: float, peak_flop_per_s: float) -> Throughput:
    """tokens/s = MFU · peak / 6N (6N training FLOPs per token, attention term left out)."""
    return Throughput(
        mfu * peak_flop_per_s / (6.0 * n_params),
        f"given MFU {mfu:g} x peak {peak_flop_per_s / 1e12:g} TFLOP/s / 6N FLOPs per token",
    )


def train_points(records: list[Record]) -> list[tuple[float, float, float | None, str]]:
    """(params, best tokens/s, J/token of that record, preset) of each model that trained.

    Only `xfbench model` train records that ran; the fastest variant of a preset counts.
    """
    best: dict[float, tuple[float, float, float | None, str]] = {}
    for r in records:
        if r.workload != "model" or r.params.get("mode") != "train" or r.status != "ok":
            continue
        tps = r.metrics.get("tokens_per_s")
        if not isinstance(tps, int | float) or tps <= 0:
            continue
        n = float(r.size)
        jpt = r.metrics.get("j_per_token")
        jpt = float(jpt) if isinstance(jpt, int | float) and jpt > 0 else None
        if n not in best or tps > best[n][1]:
            best[n] = (n, float(tps), jpt, str(r.params.get("preset", n)))
    return sorted(best.values())


def from_results(n_params: float, records: list[Record]) -> Throughput:
    """Tokens/s for n_params from measured train records.

    The interpolated quantity is tokens/s · N, proportional to the achieved FLOP/s (6N
    FLOPs per token). Between two measured sizes it is interpolated linearly in log-log;
    outside them it is held at the nearest measured size's value (constant achieved FLOP/s,
    i.e. constant MFU). Energy per token, when measured, is scaled by N / N_measured from the
    nearest size that has it (constant energy per FLOP). ValueError when no train record ran.
    """
    pts = train_points(records)
    if not pts:
        raise ValueError("the results file has no `xfbench model` train record that ran")
    logn = math.log(n_params)
    below = [p for p in pts if p[0] <= n_params]
    above = [p for p in pts if p[0] >= n_params]
    if below and above and below[-1][0] == above[0][0]:
        lo = below[-1]
        tps, source = lo[1], f"measured at {lo[3]} (train, fastest variant)"
    elif below and above:
        lo, hi = below[-1], above[0]
        w = (logn - math.log(lo[0])) / (math.log(hi[0]) - math.log(lo[0]))
        log_flops = (1 - w) * math.log(lo[1] * lo[0]) + w * math.log(hi[1] * hi[0])
        tps = math.exp(log_flops) / n_params
        source = f"interpolated between {lo[3]} and {hi[3]} (tokens/s·N linear in log-log)"
    else:
        near = below[-1] if below else above[0]
        tps = near[1] * near[0] / n_params
        source = f"extrapolated from {near[3]}: tokens/s·N held constant (constant achieved FLOP/s)"
    energy = [p for p in pts if p[2] is not None]
    jpt = esrc = None
    if energy:
        ref = min(energy, key=lambda p: abs(math.log(p[0]) - logn))
        jpt = ref[2] * n_params / ref[0]
        esrc = f"measured J/token at {ref[3]} x N/N_{ref[3]} (constant energy per FLOP)"
    return Throughput(tps, source, jpt, esrc)


@dataclass
class Plan:
    """A compute-optimal training estimate for one model size.

    Args:
        n_params: N.
        tokens_per_param: D / N.
        tokens: D.
        flops: C = 6·N·D.
        throughput: tokens/s per device and its source.
        devices: devices training in parallel (perfect scaling assumed).
    """

    n_params: float
    tokens_per_param: float
    tokens: float
    flops: float
    throughput: Throughput | None = None
    devices: int = 1
    sources: list[str] = field(default_factory=list)

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
) -> Plan:
    if n_params <= 0 or tokens_per_param <= 0 or devices < 1:
        raise ValueError("parameters and tokens per parameter must be positive, devices at least 1")
    d = chinchilla_tokens(n_params, tokens_per_param)
    given = f"D = {tokens_per_param:g}·N (given --tokens-per-param)"
    src = CHINCHILLA_SOURCE if tokens_per_param == CHINCHILLA_TOKENS_PER_PARAM else given
    return Plan(n_params, tokens_per_param, d, training_flops(n_params, d), throughput, devices, [src, FLOPS_SOURCE])


def preset_plans(
    records: list[Record], tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM
) -> list[tuple[str, Plan]]:
    """For each model that trained: its compute-optimal plan at its own measured rate."""
    out = []
    for n, tps, jpt, preset in train_points(records):
        tp = Throughput(tps, f"measured at {preset}", jpt, f"measured at {preset}" if jpt else None)
        out.append((preset, make_plan(n, tokens_per_param, tp)))
    return out
