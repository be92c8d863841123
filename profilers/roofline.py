"""Roofline and MFU of one measured step against the calibrated (and spec-sheet) peaks. Pure.

MFU = achieved FLOP/s / peak FLOP/s of the step's compute dtype (nanoGPT's estimate_mfu,
with the peak passed in instead of its hard-coded 312e12). Arithmetic intensity is
FLOPs per byte of ideal memory traffic (each input read once, each output written once;
Williams, Waterman & Patterson, "Roofline", CACM 2009). A step whose intensity is below
the ridge point peak_flop_per_s / peak_bytes_per_s cannot reach the compute peak: it is
memory-bound, and its floor is bytes_moved / bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .specs import SpecPeaks


@dataclass(frozen=True)
class Peaks:
    """The peaks a sweep's records are measured against.

    Args:
        device_type: 'cpu' or 'cuda'.
        device_name: the device's name (CPU model or GPU name).
        measured_flop_per_s: calibrated dense matmul peak per compute dtype key.
        measured_copy_bytes_per_s: calibrated copy bandwidth (bytes read + written per s).
        spec: datasheet peaks when the GPU is known, else None.
        source: where the measured figures came from (cache file, time, threads).
        threads: torch intra-op threads the calibration ran with.
    """

    device_type: str
    device_name: str
    measured_flop_per_s: dict[str, float] = field(default_factory=dict)
    measured_copy_bytes_per_s: float | None = None
    spec: SpecPeaks | None = None
    source: str = ""
    threads: int | None = None

    def spec_status(self) -> str:
        """How the spec-sheet peak stands: known model, unknown GPU, or none for a CPU."""
        if self.spec is not None:
            return f"spec sheet: {self.spec.name} (dense)" + (f"; {self.spec.note}" if self.spec.note else "")
        if self.device_type == "cuda":
            return f"unknown GPU '{self.device_name}': no spec-sheet peak (give --peak-tflops)"
        return "no spec-sheet peak for CPUs"

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for the results header ('calibration used')."""
        return {
            "source": self.source,
            "device_name": self.device_name,
            "threads": self.threads,
            "measured_flop_per_s": dict(self.measured_flop_per_s),
            "measured_copy_bytes_per_s": self.measured_copy_bytes_per_s,
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
    """
    achieved = flops / time_s if time_s > 0 else None
    measured = peaks.measured_flop_per_s.get(dtype_key) if peaks and dtype_key else None
    bandwidth = peaks.measured_copy_bytes_per_s if peaks else None
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
    floor = _ratio(bytes_moved, bandwidth)
    metrics = {
        "peak_measured_flop_per_s": measured,
        "mfu_measured": _ratio(achieved, measured),
        "peak_spec_flop_per_s": spec,
        "mfu_spec": _ratio(achieved, spec),
        "bytes_moved_per_call": bytes_moved,
        "arithmetic_intensity": intensity,
        "ridge_point": ridge,
        "bound": bound,
        "bandwidth_floor_s": floor,
        "time_over_floor": _ratio(time_s, floor),
    }
    info = {"peak_dtype": dtype_key, "peak_spec_source": spec_source}
    if peaks is not None:
        info["peak_measured_source"] = peaks.source
    return metrics, info
