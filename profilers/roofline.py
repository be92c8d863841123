"""Roofline and MFU of one measured step against the calibrated (and spec-sheet) peaks. Pure.

MFU = achieved FLOP/s / peak FLOP/s of the step's compute dtype (nanoGPT's estimate_mfu,
with the peak passed in instead of its hard-coded 312e12). Arithmetic intensity is
FLOPs per byte of ideal memory traffic (each input read once, each output written once;
Williams, Waterman & Patterson, "Roofline", CACM 2009). A step whose intensity is below
the ridge point peak_flop_per_s / peak_bytes_per_s cannot reach the compute peak: it is
memory-bound, and its floor is bytes_moved / bandwidth. The bandwidth is of the same kind
as the step's traffic: a read-dominated step (decode reading weights and KV cache) divides
by the read bandwidth, one that reads and writes by the copy bandwidth (read + write
bytes). A step whose working set stays in the last-level cache gets no DRAM floor: DRAM
bandwidth bounds nothing there, and a floor must never lie above the measured time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .specs import SpecPeaks

# A step's traffic kind (workloads Step.traffic) -> the calibrated bandwidth its floor divides by.
TRAFFIC_BANDWIDTH = {"read": "read", "read_write": "copy"}


def bandwidth_kind(traffic: str) -> str:
    """'read' | 'copy' for a traffic kind; ValueError for an unknown one."""
    if traffic not in TRAFFIC_BANDWIDTH:
        raise ValueError(f"unknown traffic kind '{traffic}' (one of {', '.join(TRAFFIC_BANDWIDTH)})")
    return TRAFFIC_BANDWIDTH[traffic]


@dataclass(frozen=True)
class Peaks:
    """The peaks a sweep's records are measured against.

    Args:
        device_type: 'cpu' or 'cuda'.
        device_name: the device's name (CPU model or GPU name).
        measured_flop_per_s: calibrated dense matmul peak per compute dtype key.
        measured_copy_bytes_per_s: calibrated copy bandwidth (bytes read + written per s).
        measured_read_bytes_per_s: calibrated read bandwidth (bytes read per s, streaming sum).
        spec: datasheet peaks when the GPU is known, else None.
        spec_reason: why a CUDA device has no spec peak although its chip may be known (a MIG
            slice: the full chip's datasheet does not apply), else None.
        source: which calibration: level, time, threads, torch, cache file.
        level: 'quick' (a sweep's own first calibration) or 'full' (`xfbench env --calibrate`).
        threads: torch intra-op threads the calibration ran with.
    """

    device_type: str
    device_name: str
    measured_flop_per_s: dict[str, float] = field(default_factory=dict)
    measured_copy_bytes_per_s: float | None = None
    measured_read_bytes_per_s: float | None = None
    spec: SpecPeaks | None = None
    spec_reason: str | None = None
    source: str = ""
    level: str | None = None
    threads: int | None = None

    def bytes_per_s(self, kind: str) -> float | None:
        """The calibrated 'read' or 'copy' bandwidth."""
        return self.measured_read_bytes_per_s if kind == "read" else self.measured_copy_bytes_per_s

    def spec_status(self) -> str:
        """How the spec-sheet peak stands: known model, unknown GPU, or none for a CPU."""
        if self.spec is not None:
            return f"spec sheet: {self.spec.name} (dense)" + (f"; {self.spec.note}" if self.spec.note else "")
        if self.spec_reason is not None:
            return self.spec_reason
        if self.device_type == "cuda":
            return f"unknown GPU '{self.device_name}': no spec-sheet peak (give --peak-tflops)"
        return "no spec-sheet peak for CPUs"

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for the results header ('calibration used')."""
        return {
            "source": self.source,
            "level": self.level,
            "device_name": self.device_name,
            "threads": self.threads,
            "measured_flop_per_s": dict(self.measured_flop_per_s),
            "measured_copy_bytes_per_s": self.measured_copy_bytes_per_s,
            "measured_read_bytes_per_s": self.measured_read_bytes_per_s,
            "spec": self.spec_status(),
            "spec_flop_per_s": dict(self.spec.flop_per_s) if self.spec else None,
            "spec_mem_bytes_per_s": self.spec.mem_bytes_per_s if self.spec else None,
        }


def compute_key(dtype: str | None, device_type: str, tf32_enabled: bool) -> str | None:
    """The peak that applies to a step: float32 matmuls on CUDA use TF32 when torch allows it."""
    if dtype is None:
        return None
    if dtype == "float32" and device_type == "cuda" and tf32_enabled:
        return "tf32"
    return dtype


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def roofline_metrics(
    *,
    flops: float,
    bytes_moved: float | None,
    time_s: float,
    dtype_key: str | None,
    peaks: Peaks | None,
    peak_flops_override: float | None = None,
    traffic: str = "read_write",
    cache_resident: bool | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, info) of one step; every figure whose inputs are missing is None.

    Args:
        flops: analytic FLOPs of one call.
        bytes_moved: ideal memory traffic of one call (None if the workload does not say).
        time_s: median time of one call.
        dtype_key: compute dtype key of the step ('float32', 'tf32', 'bfloat16', ...).
        peaks: the sweep's peaks, or None when no calibration was made.
        peak_flops_override: the user's --peak-tflops (FLOP/s); it replaces the spec-sheet
            peak in mfu_spec (and says so in info).
        traffic: the step's traffic kind, 'read' or 'read_write': the floor and the ridge
            point divide by the read or the copy bandwidth (named in info['floor_bandwidth']).
        cache_resident: whether the working set stays in the last-level cache between calls
            (profilers.device CachePolicy); True gives no floor, None means unknown.
    """
    achieved = flops / time_s if time_s > 0 else None
    measured = peaks.measured_flop_per_s.get(dtype_key) if peaks and dtype_key else None
    kind = bandwidth_kind(traffic)
    bandwidth = peaks.bytes_per_s(kind) if peaks else None
    if peak_flops_override:
        spec, spec_source = peak_flops_override, "user: --peak-tflops"
    elif peaks is not None and peaks.spec is not None and dtype_key:
        spec, spec_source = peaks.spec.flop_per_s.get(dtype_key), peaks.spec_status()
    else:
        spec, spec_source = None, peaks.spec_status() if peaks else None
    intensity = _ratio(flops, bytes_moved)
    ridge = _ratio(measured, bandwidth)
    bound = None
    if intensity is not None and ridge is not None:
        bound = "compute" if intensity >= ridge else "memory"
    floor = None if cache_resident else _ratio(bytes_moved, bandwidth)
    over = _ratio(time_s, floor)
    metrics = {
        "peak_measured_flop_per_s": measured,
        "mfu_measured": _ratio(achieved, measured),
        "peak_spec_flop_per_s": spec,
        "mfu_spec": _ratio(achieved, spec),
        "bytes_moved_per_call": bytes_moved,
        "arithmetic_intensity": intensity,
        "ridge_point": ridge,
        "bound": bound,
        "cache_resident": cache_resident,
        "bandwidth_floor_s": floor,
        "time_over_floor": over,
    }
    info = {"peak_dtype": dtype_key, "peak_spec_source": spec_source}
    if bytes_moved is not None:
        info["floor_bandwidth"] = kind
        if cache_resident:
            info["floor_note"] = (
                "no bandwidth floor: the working set stays in the last-level cache between calls (cache-resident), "
                "so DRAM bandwidth bounds nothing"
            )
        elif over is not None and over < 1:
            info["floor_note"] = (
                f"time below the {kind} bandwidth floor: bytes_moved overstates the traffic, or part of it came "
                "from a cache the residency check did not see"
            )
    if peaks is not None:
        info["peak_measured_source"] = peaks.source
    return metrics, info
