"""Pure parsers for option values (lists, ranges, byte sizes). Errors are BadInput lines."""

from __future__ import annotations

import re

from ..reports.errors import BadInput

# A sweep never needs more points than this; a typo like 1:100000:+1 is caught early.
MAX_SWEEP_POINTS = 10_000
# Tensor dimensions past 32 bits are out of reach of every kernel measured here.
MAX_SWEEP_VALUE = 2**31 - 1


def _positive_int(text: str, option: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"\+?\d+", text):
        raise BadInput(f"{option}: '{text}' is not a positive integer")
    value = int(text)
    if value <= 0:
        raise BadInput(f"{option}: '{text}' is not a positive integer")
    if value > MAX_SWEEP_VALUE:
        raise BadInput(f"{option}: {value} is larger than {MAX_SWEEP_VALUE}")
    return value


def parse_int_sweep(text: str, option: str = "--seq-lens") -> list[int]:
    """'512,1024' | '256:4096:x2' (geometric) | '128:1024:+128' (arithmetic), mixed by commas.

    Returns the sorted distinct values; both range ends are included when reached.
    """
    values: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        if ":" not in part:
            values.add(_positive_int(part, option))
            continue
        pieces = part.split(":")
        if len(pieces) != 3:
            raise BadInput(f"{option}: range '{part}' must be START:STOP:xFACTOR or START:STOP:+STEP")
        start, stop = _positive_int(pieces[0], option), _positive_int(pieces[1], option)
        step = pieces[2].strip().lower()
        if stop < start:
            raise BadInput(f"{option}: range '{part}' ends before it starts")
        if step.startswith("x") or step.startswith("*"):
            factor = _positive_int(step[1:], option)
            if factor < 2:
                raise BadInput(f"{option}: range '{part}' needs a factor of at least 2")
            v = start
            while v <= stop:
                values.add(v)
                v *= factor
        elif step.startswith("+"):
            inc = _positive_int(step[1:], option)
            if (stop - start) // inc + 1 > MAX_SWEEP_POINTS:
                raise BadInput(f"{option}: range '{part}' has more than {MAX_SWEEP_POINTS} points")
            values.update(range(start, stop + 1, inc))
        else:
            raise BadInput(f"{option}: range step '{pieces[2]}' must be xFACTOR or +STEP")
        if len(values) > MAX_SWEEP_POINTS:
            raise BadInput(f"{option}: more than {MAX_SWEEP_POINTS} values")
    if not values:
        raise BadInput(f"{option}: no values given")
    return sorted(values)


def parse_choices(text: str, choices: tuple[str, ...] | list[str], option: str) -> list[str]:
    """A comma-separated list of names from `choices`, order kept, duplicates dropped."""
    picked = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not picked:
        raise BadInput(f"{option}: no values given (choose from {', '.join(choices)})")
    for p in picked:
        if p not in choices:
            raise BadInput(f"{option}: unknown value '{p}' (choose from {', '.join(choices)})")
    return list(dict.fromkeys(picked))


def parse_bytes(text: str, option: str) -> int:
    """'2GiB', '500MB', '1.5g', '1048576' -> bytes (pydantic's ByteSize: SI and IEC units)."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        value = int(TypeAdapter(ByteSize).validate_python(text.strip()))
    except ValidationError:
        raise BadInput(f"{option}: '{text}' is not a size (e.g. 512MiB, 2GB, 1048576)") from None
    if value <= 0:
        raise BadInput(f"{option}: '{text}' must be more than 0 bytes")
    return value


def parse_peak_tflops(value: float | None, option: str = "--peak-tflops") -> float | None:
    """A user's peak in TFLOP/s -> FLOP/s; it must be a positive, finite number."""
    if value is None:
        return None
    if not (value > 0 and value != float("inf")):  # also rejects NaN
        raise BadInput(f"{option}: must be a positive number of TFLOP/s, got {value:g}")
    return value * 1e12


MAX_PROFILE_STEPS = 100


def parse_schedule(text: str, option: str) -> tuple[int, int, int]:
    """WAIT,WARMUP,ACTIVE: torch.profiler.schedule's step counts (ACTIVE at least 1)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise BadInput(f"{option}: '{text}' is not WAIT,WARMUP,ACTIVE (three whole numbers, e.g. 1,1,3)")
    wait, warmup, active = map(int, parts)
    if active < 1:
        raise BadInput(f"{option}: ACTIVE must be at least 1 (the steps recorded)")
    if wait + warmup + active > MAX_PROFILE_STEPS:
        raise BadInput(f"{option}: {wait + warmup + active} steps in all is more than {MAX_PROFILE_STEPS}")
    return wait, warmup, active
