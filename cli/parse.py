"""Parsers and checks for option values (lists, ranges, byte sizes, shapes, the run folder).

Errors are BadInput lines (exit code 2), raised before anything is calibrated or measured.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..reports.errors import BadInput

# A sweep never needs more points than this; a typo like 1:100000:+1 is caught early.
MAX_SWEEP_POINTS = 10_000
# Tensor dimensions past 32 bits are out of reach of every kernel measured here.
MAX_SWEEP_VALUE = 2**31 - 1
# Bounds of the shape options of every command (--batch, --seq-len, --vocab: MAX_LEN; --heads,
# --head-dim, --layers, --d-model: MAX_DIM) and of suite files' keys: defined here once.
MAX_LEN = 1 << 20  # tokens, batch, vocabulary: a million
MAX_DIM = 1 << 16  # heads, head_dim, layers, width
# --snapshot-entries and a suite's snapshot_entries: the CUDA allocator's history keeps a stack
# trace per event in host memory (around a kilobyte), so ten million is already ~10 GB; past
# 2^63 the value does not even reach torch (its max_entries is a C size_t).
MAX_SNAPSHOT_ENTRIES = 10_000_000
# No tensor a case makes may hold more elements than this: its bytes (at most 4 per element,
# float32) then stay within int64, where torch counts them. Past it torch fails inside the
# case ("numel ... overflow"), an error record and exit 3 for what is an option error.
MAX_TENSOR_ELEMENTS = 2**60
# A user's peak of one device may be at most this many TFLOP/s (1e18 FLOP/s, ~200x the
# densest accelerator's FP8 peak). NOTE: profilers.calibration_cache.FLOP_PER_S_BOUNDS
# has the same upper end (tests/test_option_reliability.py checks it).
MAX_PEAK_TFLOPS = 1e6


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


# A size as parse_bytes takes it: ASCII digits with at most one decimal point, then a unit. pydantic's
# ByteSize alone reads '1.5.5GB' as 1 byte and '5.GB' as 5 bytes (its pattern is not anchored at the
# number's end), and int() behind it takes '1_000' and Arabic-Indic digits.
_SIZE = re.compile(r"\s*(?:\d+(?:\.\d+)?|\.\d+)\s*[A-Za-z]*\s*", re.ASCII)
# No size an option takes is past an exbibyte (2^60 B): a larger one is a typo, and a memory cap
# of it overflows the rlimit (an unsigned 64-bit count).
MAX_BYTES = 2**60


def parse_bytes(text: str, option: str) -> int:
    """'2GiB', '500MB', '1.5g', '1048576' -> bytes (pydantic's ByteSize: SI and IEC units)."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    if not _SIZE.fullmatch(text):
        raise BadInput(f"{option}: '{text}' is not a size (e.g. 512MiB, 2GB, 1048576)")
    try:
        value = int(TypeAdapter(ByteSize).validate_python(text.strip()))
    except ValidationError:
        raise BadInput(f"{option}: '{text}' is not a size (e.g. 512MiB, 2GB, 1048576)") from None
    if value <= 0:
        raise BadInput(f"{option}: '{text}' must be more than 0 bytes")
    if value > MAX_BYTES:
        raise BadInput(f"{option}: '{text}' is more than 1 EiB (2^60 bytes)")
    return value


def parse_peak_tflops(value: float | None, option: str = "--peak-tflops") -> float | None:
    """A user's peak in TFLOP/s -> FLOP/s; it must be a positive, finite number."""
    if value is None:
        return None
    if not (value > 0 and value != float("inf")):  # also rejects NaN
        raise BadInput(f"{option}: must be a positive number of TFLOP/s, got {value:g}")
    if value > MAX_PEAK_TFLOPS:
        raise BadInput(f"{option}: {value:g} TFLOP/s is more than any device does (at most {MAX_PEAK_TFLOPS:g})")
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


def check_elements(shape: Sequence[int], what: str, case: str) -> None:
    """BadInput if a tensor of `shape` would hold more than MAX_TENSOR_ELEMENTS elements
    (`what` names the tensor, `case` the case it belongs to)."""
    n = math.prod(shape)
    if n > MAX_TENSOR_ELEMENTS:
        dims = " x ".join(str(d) for d in shape)
        raise BadInput(
            f"{case}: its {what} = {dims} would hold {n:.3g} elements, more than torch can count in bytes "
            f"(2^{int(math.log2(MAX_TENSOR_ELEMENTS))}): lower --batch, --heads, --head-dim or the lengths"
        )


def folder_path(text: str) -> Path:
    """Typer's parser of a folder option (--out): an empty value is refused where it is typed.
    Without it Typer turns '' into Path('.'), and a run would write into the working directory."""
    import typer

    if text == "":
        raise typer.BadParameter("give a folder ('' would be the working directory)")
    return Path(text)


def check_out(path: Path | None, option: str = "--out") -> None:
    """BadInput unless `path` can be a run folder, checked before anything is measured: not a file,
    its results.jsonl (if there) a file, every name within the system's limits, and the nearest
    folder that exists one this process can write in. None (the default folder) passes."""
    if path is None:
        return
    from ..reports.store import RESULTS_NAME

    if str(path) == "":
        raise BadInput(f"{option}: give a folder")
    try:
        _check_name_lengths(path, option)
        if path.exists() and not path.is_dir():
            raise BadInput(f"{option} {path}: is a file; give a folder")
        results = path / RESULTS_NAME
        if results.exists() and not results.is_file():
            raise BadInput(f"{option} {path}: {results} is not a file; give another folder")
        nearest = next((p for p in (path, *path.parents) if p.exists()), Path("."))
        if not nearest.is_dir():
            raise BadInput(f"{option} {path}: {nearest} is a file, not a folder")
        if not os.access(nearest, os.W_OK | os.X_OK):
            raise BadInput(f"{option} {path}: cannot write in {nearest} (permission denied)")
    except OSError as e:  # e.g. ENAMETOOLONG, ELOOP, EACCES from a stat
        raise BadInput(f"{option} {path}: {e.strerror or e}") from None


def _check_name_lengths(path: Path, option: str) -> None:
    """BadInput for a name longer than NAME_MAX or a path longer than PATH_MAX (ENAMETOOLONG)."""
    name_max, path_max = _limit("PC_NAME_MAX", 255), _limit("PC_PATH_MAX", 4096)
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise BadInput(f"{option}: a name in the path is {len(os.fsencode(part))} bytes, more than the "
                           f"{name_max} this system allows (File name too long)")
    full = len(os.fsencode(os.path.abspath(path)))
    if full >= path_max:
        raise BadInput(f"{option}: the path is {full} bytes, more than the {path_max - 1} this system allows "
                       "(File name too long)")


def _limit(name: str, default: int) -> int:
    try:
        return int(os.pathconf("/", name))
    except (OSError, ValueError, AttributeError):
        return default


@contextlib.contextmanager
def interrupt_says(what: str) -> Iterator[None]:
    """Give a Ctrl-C (KeyboardInterrupt) inside the block the message `what`: what was interrupted
    and what that lost; the CLI prints it as its one error line. One that already says something
    (raised deeper, e.g. by a calibration) keeps its own message."""
    try:
        yield
    except KeyboardInterrupt as e:
        if str(e):
            raise
        raise KeyboardInterrupt(what) from None
