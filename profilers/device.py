"""Device specifics in one place: resolving, selecting, synchronizing, allocator figures, L2 size, cache policy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..reports.errors import BadInput

# Rotate over enough input sets that together they span this many L2 sizes, so each call
# reads its inputs from device memory, not from a cache the previous call warmed.
L2_ROTATE_SPAN = 4
# Never allocate more copies than this (the GPU reference used 64 sets).
MAX_INPUT_SETS = 64


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' to a torch.device; BadInput if it cannot be used."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BadInput(f"--device: unknown device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
            raise BadInput(
                f"--device {name}: no CUDA device is available (torch {torch.__version__} built "
                f"{built}); use --device cpu"
            )
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise BadInput(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise BadInput(f"--device {name}: only cpu and cuda are supported")
    return dev


# Storage dtypes a workload can run in, by name; 'auto' picks per device (resolve_dtype).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def resolve_dtype(name: str, device: torch.device) -> str:
    """'auto' (bfloat16 on CUDA, float32 on CPU), a name in DTYPES, or an alias; ValueError otherwise."""
    name = DTYPE_ALIASES.get(name, name)
    if name == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    if name not in DTYPES:
        raise ValueError(f"unknown dtype '{name}' (choose from auto, {', '.join(DTYPES)})")
    return name


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on `device` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def use_device(device: torch.device) -> None:
    """Make `device` the current CUDA device: streams, events and graph capture use it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def release_cached_memory(device: torch.device) -> None:
    """Return the caching allocator's unused blocks to the driver, so the next case starts clean (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reserved_bytes(device: torch.device) -> int | None:
    """Bytes the CUDA caching allocator holds on `device` (in use or cached); None on CPU."""
    return torch.cuda.memory_reserved(device) if device.type == "cuda" else None


def allocated_bytes(device: torch.device) -> int | None:
    """Bytes of live tensors on `device` per the CUDA caching allocator; None on CPU."""
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def l2_cache_bytes(device: torch.device) -> int | None:
    """The device's L2 size from its properties (never a constant); None on CPU."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).L2_cache_size)


@dataclass(frozen=True)
class CachePolicy:
    """How the timed loop keeps a small working set from being served out of L2."""

    input_sets: int
    description: str


def cache_policy(device: torch.device, working_set_bytes: int) -> CachePolicy:
    """Rotate over several input sets when one set fits in the device's L2 cache."""
    return plan_rotation(l2_cache_bytes(device), working_set_bytes)


def plan_rotation(l2_bytes: int | None, working_set_bytes: int) -> CachePolicy:
    """Pure policy: enough input sets to span L2_ROTATE_SPAN x L2, capped at MAX_INPUT_SETS."""
    if l2_bytes is None:
        return CachePolicy(1, "none (cpu)")
    if working_set_bytes <= 0 or working_set_bytes > l2_bytes:
        return CachePolicy(1, f"none (working set {working_set_bytes} B > L2 {l2_bytes} B)")
    sets = min(MAX_INPUT_SETS, math.ceil(L2_ROTATE_SPAN * l2_bytes / working_set_bytes))
    return CachePolicy(sets, f"rotate {sets} input sets (working set {working_set_bytes} B <= L2 {l2_bytes} B)")
