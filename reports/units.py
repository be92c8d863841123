"""Display units, chosen in exactly one place. Stored values are always SI."""

from __future__ import annotations

import math


def _scaled(value: float, steps: list[tuple[float, str]], digits: int = 3) -> str:
    for scale, unit in steps:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {unit}"
    scale, unit = steps[-1]
    return f"{value / scale:.{digits}g} {unit}"


def fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return _scaled(seconds, [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")])


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    return _scaled(float(n), [(2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")])


def fmt_flops(flop_per_s: float | None) -> str:
    if flop_per_s is None:
        return "-"
    return _scaled(flop_per_s, [(1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s"), (1, "FLOP/s")])


def fmt_rate(per_s: float | None, unit: str) -> str:
    if per_s is None:
        return "-"
    return _scaled(per_s, [(1e9, f"G{unit}/s"), (1e6, f"M{unit}/s"), (1e3, f"k{unit}/s"), (1, f"{unit}/s")])


def fmt_energy(joules: float | None) -> str:
    if joules is None or not math.isfinite(joules):
        return "-"
    return _scaled(joules, [(1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")])


def fmt_pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def fmt_exponent(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_size(n: float) -> str:
    """A swept value (seq_len, params): plain integer, or with K/M/B above 10k."""
    if isinstance(n, float) and not n.is_integer():
        return f"{n:g}"
    n = int(n)
    return str(n) if n < 10_000 else _scaled(n, [(1e9, "B"), (1e6, "M"), (1e3, "K")]).replace(" ", "")


def fmt_time_ci(seconds: float, ci_rel: float, ci_level: float = 0.95) -> str:
    """A median time with its CI as a relative half-width: '1.01 ms ±2.0%'; a CI that covers
    less than 95% (too few samples) says its level: '1.01 ms ±9.0% (75% CI)'."""
    level = f" ({ci_level:.0%} CI)" if ci_level < 0.95 else ""
    return f"{fmt_time(seconds)} ±{100 * ci_rel:.1f}%{level}"


def sci(x: float | None) -> str:
    """A large count in short scientific notation: 2.028e20."""
    if x is None:
        return "-"
    mantissa, _, exp = f"{x:.4g}".partition("e")
    return f"{mantissa}e{int(exp)}" if exp else mantissa
