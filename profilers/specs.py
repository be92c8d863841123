"""Spec-sheet DENSE peaks of known NVIDIA GPUs, matched by device name; unknown devices say so.

These are vendor datasheet numbers, never measurements: MFU against them is labelled
"spec" and sits beside MFU against the measured peak (profilers.calibrate). A MIG slice
gets none: it has only part of the chip (spec_for says so). Tensor-core
figures are the dense ones; datasheets print 2:4 structured-sparsity figures (2x) first,
and those are never used here. Units: FLOP/s and bytes/s (SI).

Sources (dense columns of each table):
- H100 SXM / PCIe / NVL: NVIDIA H100 Tensor Core GPU datasheet (2023), "Technical
  Specifications" table; sparse figures carry an asterisk there and are halved here.
- H200 SXM / NVL: NVIDIA H200 Tensor Core GPU datasheet (2024): same SM as H100 SXM.
  (GH200 is not matched on purpose: its name contains "H200" but its GPU is H100-class.)
- A100 SXM4 / PCIe: NVIDIA A100 Tensor Core GPU datasheet (2021), and the A100 whitepaper
  table 1 (FP32 19.5, TF32 156, BF16/FP16 312 TFLOPS dense).
- L4: NVIDIA L4 Tensor Core GPU datasheet (2023): FP32 30.3, TF32 60, BF16/FP16 121 dense.
- A10G: AWS's variant of the A10 (EC2 G5). NVIDIA A10 datasheet: FP32 31.2, TF32 62.5,
  BF16/FP16 125 dense. AWS publishes no separate tensor table; the A10 figures are used and
  the entry says so.
- RTX 4090: NVIDIA Ada Lovelace architecture whitepaper v1.0, appendix table 2: FP32 82.6;
  TF32 82.6; BF16 and FP16 with FP32 accumulate 165.2 dense (PyTorch accumulates in FP32).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

TFLOPS = 1e12
GBPS = 1e9


@dataclass(frozen=True)
class SpecPeaks:
    """Datasheet peaks of one GPU model.

    Args:
        name: the model as the datasheet names it.
        flop_per_s: dense peak per compute dtype key ('float32' = non-tensor FP32,
            'tf32', 'bfloat16', 'float16').
        mem_bytes_per_s: memory bandwidth from the datasheet.
        note: caveats (e.g. a variant that borrows another model's table).
    """

    name: str
    flop_per_s: dict[str, float]
    mem_bytes_per_s: float | None
    note: str | None = None


def _peaks(fp32: float, tf32: float, bf16: float, fp16: float | None = None) -> dict[str, float]:
    return {
        "float32": fp32 * TFLOPS,
        "tf32": tf32 * TFLOPS,
        "bfloat16": bf16 * TFLOPS,
        "float16": (fp16 if fp16 is not None else bf16) * TFLOPS,
    }


# (pattern on the lower-cased torch/NVML device name, peaks). First match wins, so more
# specific names (PCIe, NVL) come before the generic one.
SPEC_TABLE: list[tuple[str, SpecPeaks]] = [
    (r"\bh100.*pcie", SpecPeaks("NVIDIA H100 PCIe", _peaks(51, 378, 756), 2000 * GBPS)),
    (r"\bh100.*nvl", SpecPeaks("NVIDIA H100 NVL", _peaks(60, 417.5, 835.5), 3900 * GBPS)),
    (r"\bh100", SpecPeaks("NVIDIA H100 SXM", _peaks(67, 494.5, 989.5), 3350 * GBPS)),
    (r"\bh200.*nvl", SpecPeaks("NVIDIA H200 NVL", _peaks(60, 417.5, 835.5), 4800 * GBPS)),
    (r"\bh200", SpecPeaks("NVIDIA H200 SXM", _peaks(67, 494.5, 989.5), 4800 * GBPS)),
    (r"a100.*80\s*gb.*pcie|a100.*pcie.*80", SpecPeaks("NVIDIA A100 80GB PCIe", _peaks(19.5, 156, 312), 1935 * GBPS)),
    (r"a100.*80\s*gb", SpecPeaks("NVIDIA A100 80GB SXM", _peaks(19.5, 156, 312), 2039 * GBPS)),
    (r"a100", SpecPeaks("NVIDIA A100 40GB", _peaks(19.5, 156, 312), 1555 * GBPS)),
    (r"\bl4\b", SpecPeaks("NVIDIA L4", _peaks(30.3, 60, 121), 300 * GBPS)),
    (
        r"a10g",
        SpecPeaks(
            "NVIDIA A10G", _peaks(31.2, 62.5, 125), 600 * GBPS,
            note="AWS variant of the A10; NVIDIA A10 datasheet figures",
        ),
    ),
    (r"\ba10\b", SpecPeaks("NVIDIA A10", _peaks(31.2, 62.5, 125), 600 * GBPS)),
    (r"rtx 4090", SpecPeaks("NVIDIA GeForce RTX 4090", _peaks(82.6, 82.6, 165.2), 1008 * GBPS)),
]


# CUDA and NVML name a MIG slice after its parent plus its profile, e.g.
# "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "NVIDIA H100 80GB HBM3 MIG 3g.40gb".
_MIG_NAME = re.compile(r"\bmig\s+\d+g\.\d+gb\b", re.IGNORECASE)
MIG_NO_SPEC = (
    "MIG slice: it has a fraction of the chip's SMs and memory bandwidth, so the full chip's datasheet "
    "peak does not apply (MFU is against the measured peak only)"
)


def is_mig_name(device_name: str | None) -> bool:
    """Does the device name say it is a MIG slice (its profile, e.g. 'MIG 1g.5gb')?"""
    return bool(device_name and _MIG_NAME.search(device_name))


class SpecMatch(NamedTuple):
    """The datasheet entry for a device, or None with the reason."""

    spec: SpecPeaks | None
    reason: str | None


def spec_for(device_name: str | None, mig: bool = False) -> SpecMatch:
    """The datasheet entry of a device; none for a MIG slice (`mig`, or a MIG name), an unknown
    device or a CPU, with the reason."""
    if mig or is_mig_name(device_name):
        return SpecMatch(None, MIG_NO_SPEC)
    name = (device_name or "").lower()
    for pattern, spec in SPEC_TABLE:
        if name and re.search(pattern, name):
            return SpecMatch(spec, None)
    return SpecMatch(None, f"no datasheet entry for '{device_name}'" if device_name else "no device name")


def lookup_spec(device_name: str | None) -> SpecPeaks | None:
    """The datasheet entry for a device name (None for an unknown device, a CPU or a MIG slice)."""
    return spec_for(device_name).spec
