"""Display units, chosen in exactly one place. Stored values are always SI.

Every helper rounds to the shown significant digits *before* it picks the unit, so 0.9996 s
reads "1 s" (not "1e+03 ms") and 1023.9 KiB reads "1 MiB"; a value with a unit is never in
scientific notation (above the largest unit it gets digit groups, below the smallest, zeros).
None, NaN, infinity and anything not a number print as "-".
"""

from __future__ import annotations

import math

DIGITS = 3  # significant digits shown with a unit


def _finite(x: object) -> bool:
    """A number to show: not None, not a bool, not a string or anything else a hand-edited
    results file may hold where a number belongs, and finite."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _round(x: float, digits: int) -> float:
    """x rounded to `digits` significant digits."""
    return float(f"{x:.{digits}g}")


def plain(x: float, digits: int = DIGITS) -> str:
    """x at `digits` significant digits in positional notation, trailing zeros dropped and digit
    groups from 10,000 on: 0.000123, 1.5, 999, 12,300. Not finite (a figure derived from a
    number near the float limit, e.g. 1e308 FLOP/s times a time): '-', like every helper here."""
    if not _finite(x):
        return "-"
    r = _round(x, digits)
    if r == 0:
        return "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(r))), 0)
    text = f"{r:,.{decimals}f}" if abs(r) >= 1e4 else f"{r:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


TIME_STEPS = [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")]
BYTE_STEPS = [(2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")]
_SI = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")]
ENERGY_STEPS = [(1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")]
KWH_STEPS = [(1e9, "TWh"), (1e6, "GWh"), (1e3, "MWh"), (1.0, "kWh"), (1e-3, "Wh")]
SIZE_STEPS = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"), (1.0, "")]


def _si(unit: str, skip_k: bool = False) -> list[tuple[float, str]]:
    return [(s, f"{p}{unit}") for s, p in _SI if not (skip_k and s == 1e3)]


# unit name (the SI unit a stored value is in) -> its display steps, largest first
STEPS: dict[str, list[tuple[float, str]]] = {
    "s": TIME_STEPS,
    "B": BYTE_STEPS,
    "FLOP": _si("FLOP"),
    "FLOP/s": _si("FLOP/s", skip_k=True),
    "J": ENERGY_STEPS,
    "kWh": KWH_STEPS,
}


def steps_for(unit: str) -> list[tuple[float, str]]:
    """The display steps of `unit`: a name in STEPS, '<X>/s' (a rate of X, k to E), or
    '<unit in STEPS>/<anything>' (per something: 'J/token' shows as 'mJ/token')."""
    if unit in STEPS:
        return STEPS[unit]
    head, sep, tail = unit.partition("/")
    if sep and tail == "s":
        return _si(unit)
    if sep and head in STEPS:
        return [(s, f"{sym}/{tail}") for s, sym in STEPS[head]]
    raise KeyError(f"no display steps for unit {unit!r}")


def _pick(value: float, steps: list[tuple[float, str]], digits: int) -> int:
    """Index of the largest step of `steps` where value rounds to at least 1 at `digits` digits."""
    scales = [scale for scale, _ in steps]
    i = next((i for i, s in enumerate(scales) if abs(_round(value / s, digits)) >= 1), len(steps) - 1)
    if i and abs(_round(value / scales[i], digits)) * scales[i] >= scales[i - 1]:
        i -= 1  # a tie in binary floating point: 0.0009995 s rounds to 0.999 ms, but to 1000 µs
    return i


def scale(value: float, unit: str, digits: int = DIGITS) -> tuple[float, str]:
    """`value` (in SI `unit`) in its display unit: (scaled value, symbol), e.g.
    scale(0.00123, 's') == (1.23, 'ms'). The one place a display unit is chosen; a renderer
    then formats the scaled value its own way (CSV keeps the raw SI value instead)."""
    steps = steps_for(unit)
    if value == 0:
        return 0.0, next(sym for s, sym in steps if s == 1)
    i = _pick(value, steps, digits)
    return value / steps[i][0], steps[i][1]


def _scaled(value: float | None, steps: list[tuple[float, str]], sep: str = " ") -> str:
    """value in the largest unit of `steps` (largest first) where it rounds to at least 1."""
    if not _finite(value):
        return "-"
    if value == 0:
        return f"0{sep}{next(unit for scale, unit in steps if scale == 1)}"
    i = _pick(value, steps, DIGITS)
    return f"{plain(value / steps[i][0])}{sep}{steps[i][1]}"


def fmt_unit(value: float | None, unit: str, digits: int = DIGITS) -> str:
    """value in SI `unit` with its display unit at `digits` significant digits: '1.23 ms'."""
    if not _finite(value):
        return "-"
    scaled, symbol = scale(value, unit, digits)
    return f"{plain(scaled, digits)} {symbol}"


def fmt_many(values: list[float], unit: str, digits: int = DIGITS) -> str:
    """Many values of one quantity in one display unit, picked for their median: '1.23, 1.3, 0.98 ms'
    (a list of samples reads, and is compared, in one unit)."""
    finite = sorted(v for v in values if _finite(v))
    if not finite:
        return "-"
    factor_of = dict((sym, f) for f, sym in steps_for(unit))
    symbol = scale(finite[len(finite) // 2], unit, digits)[1]
    f = factor_of[symbol]
    return ", ".join(_quick_plain(v / f, digits) if _finite(v) else "-" for v in values) + f" {symbol}"


def _quick_plain(x: float, digits: int) -> str:
    """plain(x, digits), faster where '%g' gives the same text (no exponent, below 1,000)."""
    text = f"{x:.{digits}g}"
    return plain(x, digits) if "e" in text or abs(x) >= 1000 else text


def fmt_time(seconds: float | None) -> str:
    return _scaled(seconds, TIME_STEPS)


def fmt_bytes(n: float | None) -> str:
    return _scaled(n, BYTE_STEPS)


def fmt_flop_count(flops: float | None) -> str:
    """A number of FLOPs: '9.01 GFLOP', '2.03 EFLOP'."""
    return _scaled(flops, STEPS["FLOP"])


def fmt_flops(flop_per_s: float | None) -> str:
    """FLOP/s from MFLOP/s to EFLOP/s: '989 TFLOP/s', '6 EFLOP/s'."""
    return _scaled(flop_per_s, STEPS["FLOP/s"])


def fmt_rate(per_s: float | None, unit: str) -> str:
    """A rate of `unit` per second, k to E: '25 ktok/s', '4.2 TB/s'."""
    return _scaled(per_s, steps_for(f"{unit}/s"))


def fmt_energy(joules: float | None) -> str:
    return _scaled(joules, ENERGY_STEPS)


def fmt_kwh(kwh: float | None) -> str:
    """Energy given in kWh: '12.3 MWh', '450 kWh', '3 Wh'."""
    return _scaled(kwh, KWH_STEPS)


SHORT_HOURS = 0.01  # below it (36 s) a duration in hours reads as zeros: fmt_hours prints seconds


def fmt_hours(hours: float | None) -> str:
    """A duration in hours at 4 significant digits, with days or years once it is long, and in
    fmt_time's units below SHORT_HOURS: '375,100 h (42.8 years)', '72 h (3 days)', '0.25 h', '9.72 µs'."""
    if not _finite(hours):
        return "-"
    if 0 < abs(hours) < SHORT_HOURS:
        return fmt_time(hours * 3600.0)
    text = f"{plain(hours, 4)} h"
    if abs(hours) >= 24 * 365:
        return f"{text} ({plain(hours / 24 / 365)} years)"
    if abs(hours) >= 48:
        return f"{text} ({plain(hours / 24)} days)"
    return text


def fmt_pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if _finite(x) else "-"


def fmt_exponent(x: float | None) -> str:
    return f"{x:.2f}" if _finite(x) else "-"


def fmt_size(n: float | None) -> str:
    """A swept value (seq_len, params): plain below 10,000, else with K/M/B/T: 4096, 125M, 1T."""
    if not _finite(n):
        return "-"
    if abs(n) >= 10_000:
        return _scaled(n, SIZE_STEPS[:-1], sep="")
    return str(int(n)) if float(n).is_integer() else plain(n, 6)


def fmt_time_ci(seconds: float, ci_rel: float, ci_level: float = 0.95) -> str:
    """A median time with its CI as a relative half-width: '1.01 ms ±2.0%'; a CI that covers
    less than 95% (too few samples) says its level: '1.01 ms ±9.0% (75% CI)'."""
    level = f" ({ci_level:.0%} CI)" if ci_level < 0.95 else ""
    return f"{fmt_time(seconds)} ±{100 * ci_rel:.1f}%{level}"


def sci(x: float | None) -> str:
    """A large dimensionless count (tokens, FLOPs) in short scientific notation: 2.028e20."""
    if not _finite(x):
        return "-"
    mantissa, _, exp = f"{x:.4g}".partition("e")
    return f"{mantissa}e{int(exp)}" if exp else mantissa
