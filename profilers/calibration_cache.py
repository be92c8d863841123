"""The calibration cache: what a Calibration holds, where its file lives, and what a request still needs.

One small JSON file per (machine, device, torch version, thread count) under the user cache
directory (XFBENCH_CACHE_DIR overrides it), validated on load and rewritten atomically.
Each figure records the level it was measured at: 'quick' (a sweep's first run: one or
two sizes, short timer caps) or 'full' (`xfbench env --calibrate`: every size, the normal
caps). A full figure satisfies a quick request; a full request re-measures a quick figure.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..reports.errors import BadInput
from .contention import usable_cores

# NOTE: bump when the meaning of a cached figure changes; older cache files are re-measured.
# 2: read bandwidth, per-figure level, bandwidth buffers sized beyond the last-level cache.
# 3: the read kernel is named, and is torch.dot on CPU (torch.sum there read ~10% slower).
CALIBRATION_VERSION = 3
CACHE_ENV = "XFBENCH_CACHE_DIR"

Level = Literal["quick", "full"]
LEVELS: tuple[Level, ...] = ("quick", "full")  # weakest first
# Bandwidth figures: 'read' streams a reduction over a buffer (bytes read counted), 'copy'
# copies one half of it into the other (bytes read + written counted).
BANDWIDTHS = ("read", "copy")

# A measured rate or size: finite and positive. A cache file holding NaN, inf, zero or a
# negative figure (hand-edited, or written by a broken build) fails validation and is
# re-measured; accepted, it would print "nan FLOP/s", break the results header's strict
# JSON, or give a negative roofline ridge point.
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
# ... and within physical bounds, per device, checked on load (a fresh measurement is never
# refused). FLOP/s: from 1e6, a thousand times below the slowest figure calibration meets (a
# 16-bit dtype a CPU emulates, ~1e9 on one core), to 1e18, ~200x the densest accelerator's
# dense FP8 peak (~4.5e15, B200). Bytes/s: from 1e6 (1 MB/s, below any DRAM or HBM) to 1e15
# (1 PB/s, ~100x the fastest HBM, ~8e12 on a B200). A figure outside them was not measured
# on a device (hand-edited, or a broken build): the cache is corrupt and measured again.
FLOP_PER_S_BOUNDS = (1e6, 1e18)
BYTES_PER_S_BOUNDS = (1e6, 1e15)


class MatmulPeak(BaseModel):
    """Dense matmul rate of one dtype: 2*n^3 FLOPs per (n, n) @ (n, n) call."""

    model_config = ConfigDict(allow_inf_nan=False)

    dtype: str
    level: Level
    flop_per_s: Positive | None = Field(description="best over sizes of the median per-call rate; None if none ran")
    best_size: PositiveInt | None = None
    by_size: dict[PositiveInt, Positive] = Field(default_factory=dict, description="n -> median FLOP/s at that size")
    skipped: list[str] = Field(default_factory=list, description="sizes not run, with why")
    measured_utc: str | None = None


class Bandwidth(BaseModel):
    """One streaming figure: buffer_bytes moved per call over the median call time."""

    model_config = ConfigDict(allow_inf_nan=False)

    kind: str = Field(description="'read' (a reduction over the buffer) | 'copy' (one half into the other)")
    level: Level
    kernel: str = Field(description="what ran: 'torch.dot(x, x)', 'torch.sum(x)', 'dst.copy_(src)'")
    bytes_per_s: Positive
    buffer_bytes: PositiveInt = Field(description="bytes streamed per call: the buffer (copy: source + destination)")
    measured_utc: str | None = None


class Calibration(BaseModel):
    """Measured peaks of one device at one thread count (the cached file's content)."""

    model_config = ConfigDict(allow_inf_nan=False)

    version: int = CALIBRATION_VERSION
    key: dict[str, Any] = Field(description="machine, device, torch version, threads: what the figures hold for")
    created_utc: str
    device: str
    device_name: str
    threads: PositiveInt
    clock: str = Field(description="timer clock: perf_counter | cuda_event")
    cache_bytes: PositiveInt | None = Field(
        None, description="last-level cache (CPU LLC, GPU L2) the bandwidth buffers are sized beyond"
    )
    matmul: dict[str, MatmulPeak] = Field(default_factory=dict)
    bandwidth: dict[str, Bandwidth] = Field(default_factory=dict, description="'read' | 'copy' -> figure")
    duration_s: float = Field(0.0, ge=0)
    cpu_other_busy_cores: float | None = Field(
        None, ge=0, description="cores other processes kept busy during the last measurement (load spoils peaks)"
    )

    def peak(self, dtype: str) -> float | None:
        m = self.matmul.get(dtype)
        return m.flop_per_s if m else None

    def bytes_per_s(self, kind: str) -> float | None:
        b = self.bandwidth.get(kind)
        return b.bytes_per_s if b else None

    @property
    def level(self) -> Level:
        """'full' if every figure is, else 'quick'."""
        figures = [*self.matmul.values(), *self.bandwidth.values()]
        return "full" if figures and all(f.level == "full" for f in figures) else "quick"


@dataclass
class CalibrationResult:
    """A calibration and where it came from.

    Args:
        calibration: the figures.
        path: the cache file.
        reused: True if every needed figure came from the cache.
        measured: what this call measured ('float32', 'copy', 'read', ...).
        notes: things the user should know (corrupt cache, skipped sizes).
        elapsed_s: wall time of this call.
    """

    calibration: Calibration
    path: Path
    reused: bool
    measured: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def cache_dir() -> Path:
    """XFBENCH_CACHE_DIR, else the platform's user cache directory for xfbench."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("xfbench"))


def make_cache_dir(directory: Path | None = None) -> Path:
    """The cache folder (`directory`, else cache_dir()), made if missing. A folder XFBENCH_CACHE_DIR
    names that cannot be made (a name too long, a file in the way, no permission) is BadInput
    naming the variable: the user set it; the default folder's failure stays an OSError."""
    path = directory or cache_dir()
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if directory is None and os.environ.get(CACHE_ENV):
            why = e.strerror or str(e)
            raise BadInput(f"{CACHE_ENV}={path}: cannot make the calibration cache folder ({why})") from None
        raise
    return path


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from .env import cpu_model

    return cpu_model()


def calibration_key(device: torch.device) -> dict[str, Any]:
    """What a calibration depends on: the machine, the device, torch and the thread count."""
    key: dict[str, Any] = {
        "host": socket.gethostname(),
        "machine": platform.machine(),
        "device_type": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        key["cuda"] = torch.version.cuda
        key["device_uuid"] = str(getattr(torch.cuda.get_device_properties(device), "uuid", "")) or None
    else:
        key["usable_cores"] = usable_cores()
    return key


def cache_path(key: dict[str, Any], directory: Path | None = None) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"calibration-{digest}.json"


def load_cached(path: Path, key: dict[str, Any]) -> tuple[Calibration | None, str | None]:
    """The cached calibration at `path` if it is valid for `key`; otherwise (None, why)."""
    try:
        if not path.exists():
            return None, None
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and raw.get("version") != CALIBRATION_VERSION:
            return None, (
                f"calibration cache {path} has version {raw.get('version')}, not {CALIBRATION_VERSION}; recalibrating"
            )
        cal = Calibration.model_validate(raw)
    except ValidationError as e:  # name the first bad field: "matmul.float32.flop_per_s: ... finite number"
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "top level"
        return None, f"calibration cache {path} is corrupt ({where}: {err['msg']}); recalibrating"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"calibration cache {path} is corrupt ({first}); recalibrating"
    if cal.key != key:
        return None, f"calibration cache {path} was made for another machine or setting; recalibrating"
    bad = implausible(cal)
    if bad:
        return None, f"calibration cache {path} is corrupt ({bad}); recalibrating"
    return cal, None


def implausible(cal: Calibration) -> str | None:
    """The first figure outside FLOP_PER_S_BOUNDS or BYTES_PER_S_BOUNDS, in words; None if all are within."""
    figures = [
        (f"matmul.{d}.{where}", value, "FLOP/s", FLOP_PER_S_BOUNDS)
        for d, m in cal.matmul.items()
        for where, value in (("flop_per_s", m.flop_per_s), *((f"by_size.{n}", v) for n, v in m.by_size.items()))
    ] + [(f"bandwidth.{k}.bytes_per_s", b.bytes_per_s, "B/s", BYTES_PER_S_BOUNDS) for k, b in cal.bandwidth.items()]
    for where, value, unit, (lo, hi) in figures:
        if value is not None and not lo <= value <= hi:
            return f"{where} = {value:g} {unit}, outside the physical bounds {lo:g}..{hi:g} {unit}"
    return None


def save(cal: Calibration, path: Path) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cal.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def to_measure(
    cached: Calibration | None, dtypes: list[str], bandwidths: list[str], level: Level, recalibrate: bool = False
) -> tuple[list[str], list[str]]:
    """(dtypes, bandwidth kinds) a request must measure: those missing from the cache or cached
    at a weaker level than asked (all of them with `recalibrate`)."""

    def weak(figure: MatmulPeak | Bandwidth | None) -> bool:
        return recalibrate or figure is None or LEVELS.index(figure.level) < LEVELS.index(level)

    matmul = cached.matmul if cached else {}
    bandwidth = cached.bandwidth if cached else {}
    return [d for d in dtypes if weak(matmul.get(d))], [k for k in bandwidths if weak(bandwidth.get(k))]
