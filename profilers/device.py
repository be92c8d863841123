"""Device specifics in one place: resolving, selecting, synchronizing, allocator figures, caches, cache policy."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..reports.errors import BadInput
from ..reports.units import fmt_bytes

# Rotate over enough input sets that together they span this many L2 sizes, so each call
# reads its inputs from device memory, not from a cache the previous call warmed.
L2_ROTATE_SPAN = 4
# Inputs under this share of the working set are not rotated: whether they come from the cache
# moves the time by less than that share, while the weights and state, which cannot rotate,
# stay in the cache anyway when the working set fits (e.g. token ids beside a small model's weights).
ROTATE_MIN_SHARE = 0.1
# At most this many input sets: Step.rotate clones every input once per set in Python, so tiny inputs
# (1 KiB would need 204,800 sets to span 4 x a 50 MiB L2) would take seconds of set-up on CUDA.
MAX_INPUT_SETS = 1024
# The input sets together may take at most this fraction of the device's free memory.
ROTATION_MEMORY_FRACTION = 0.25
# Where Linux describes CPU0's caches: index*/{level,type,size}.
CPU_CACHE_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")


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
    if dev.index is not None:
        # torch ignores a CPU index (every core is the one 'cpu' device), so 'cpu:1' would measure
        # the same CPU as 'cpu' under another device name, which --resume and compare then match
        # as a different device. Refused rather than renamed: the index suggests a socket or core
        # this option cannot pick.
        raise BadInput(
            f"--device {name}: the CPU has no index in torch; use cpu (pick cores with taskset or numactl, "
            "and their number with --threads)"
        )
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


def cache_size_bytes(text: str) -> int:
    """A sysfs cache size ('48K', '2048K', '491520K', '32M') in bytes."""
    text = text.strip()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


def largest_data_cache(caches: Iterable[tuple[int, str, int]]) -> int | None:
    """Size of the highest-level data or unified cache among (level, type, bytes); None if none."""
    usable = [(level, size) for level, kind, size in caches if kind in ("Data", "Unified")]
    return max(usable)[1] if usable else None


@functools.cache
def cpu_llc_bytes(root: Path = CPU_CACHE_SYSFS) -> int | None:
    """CPU0's last-level cache from sysfs (shared by the cores of its socket); None where unreadable."""
    caches = []
    for index in sorted(root.glob("index*")):
        try:
            caches.append(
                (
                    int((index / "level").read_text()),
                    (index / "type").read_text().strip(),
                    cache_size_bytes((index / "size").read_text()),
                )
            )
        except (OSError, ValueError):
            continue
    return largest_data_cache(caches)


def last_level_cache_bytes(device: torch.device) -> int | None:
    """The cache a working set can sit in between calls: L2 from a GPU's properties (never a
    constant), the CPU's last-level cache from sysfs; None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).L2_cache_size) or None
    return cpu_llc_bytes()


def cache_name(device_type: str) -> str:
    return "L2" if device_type == "cuda" else "LLC"


def cache_resident(working_set_bytes: int, cache_bytes: int | None) -> bool | None:
    """Whether one call's working set fits in the last-level cache; None when its size is unknown."""
    if cache_bytes is None:
        return None
    return working_set_bytes <= cache_bytes


@dataclass(frozen=True)
class CachePolicy:
    """How the timed loop treats the cache, and what stays in it.

    Args:
        input_sets: distinct input sets the step cycles through (1: no rotation).
        cache_resident: True when the working set (with its rotated input sets) fits in the
            last-level cache, or the part of it that does not rotate is at least ROTATE_MIN_SHARE of it
            and may be served from the cache between calls: bytes over DRAM bandwidth then bound
            nothing, so no bandwidth floor is given. None: cache size unknown.
        description: the policy and the residency in words, stored in each record.
    """

    input_sets: int
    cache_resident: bool | None
    description: str


# Why CPU steps are not rotated (stored in each CPU record's policy).
CPU_NO_ROTATION = "none (CPU steps are timed without rotation, as torch.utils.benchmark times them, so timings compare)"


def cache_policy(device: torch.device, step: Any) -> CachePolicy:
    """The policy for `step` on `device`: its tensor `inputs` rotate (Step.rotate copies only
    those), the rest of its `working_set_bytes` stays."""
    rotating = sum(x.nbytes for x in step.inputs if isinstance(x, torch.Tensor))
    staying = max(0, step.working_set_bytes - rotating)
    cache = last_level_cache_bytes(device)
    if device.type != "cuda":
        return plan_rotation(cache, rotating, staying, 0, rotate=False, cache=cache_name(device.type))
    budget = int(ROTATION_MEMORY_FRACTION * torch.cuda.mem_get_info(device)[0])
    return plan_rotation(cache, rotating, staying, budget)


def plan_rotation(
    cache_bytes: int | None, rotating_bytes: int, staying_bytes: int, budget_bytes: int, *,
    rotate: bool = True, cache: str = "L2",
) -> CachePolicy:
    """Pure policy: a working set under L2_ROTATE_SPAN x the cache rotates its inputs over enough sets
    that they span that much, as many as the byte budget and MAX_INPUT_SETS allow; and whether the step
    is cache-resident (no bandwidth floor).

    Args:
        cache_bytes: size of the last-level cache (None: unknown).
        rotating_bytes: bytes of one input set (what Step.rotate copies).
        staying_bytes: the rest of the working set (weights, outputs, state): never rotated.
        budget_bytes: the input sets together may take at most this many bytes.
        rotate: False keeps one set whatever the sizes (CPU, see CPU_NO_ROTATION).
        cache: the cache's name in the description ('L2', 'LLC').
    """
    working = rotating_bytes + staying_bytes
    fits = cache_resident(working, cache_bytes)
    if fits is None:
        return CachePolicy(1, None, f"none ({cache} size unknown; working set {fmt_bytes(working)})")
    size = f"the {cache} ({fmt_bytes(cache_bytes)})"
    where = f"working set {fmt_bytes(working)} {'fits in' if fits else 'exceeds'} {size}"
    # Between 1x and L2_ROTATE_SPAN x the cache, part of what is not rotated hits there between calls.
    resident = ": cache-resident" if fits else ", partly served from it between calls: the floor may be optimistic"
    if not rotate:
        return CachePolicy(1, fits, f"{CPU_NO_ROTATION}; {where}" + (": cache-resident" if fits else ""))
    span = L2_ROTATE_SPAN * cache_bytes
    if working >= span:
        return CachePolicy(
            1, False, f"none: working set {fmt_bytes(working)} is at least {L2_ROTATE_SPAN} x {size}, so each call "
            "streams it from device memory",
        )
    if not rotating_bytes:
        return CachePolicy(1, fits, f"none (no tensor inputs to rotate); {where}{resident}")
    if rotating_bytes < ROTATE_MIN_SHARE * working:
        return CachePolicy(
            1, fits, f"none (tensor inputs {fmt_bytes(rotating_bytes)} are under {ROTATE_MIN_SHARE:.0%} of the working "
            f"set; the other {fmt_bytes(staying_bytes)}, weights and state, cannot rotate); {where}{resident}",
        )
    by_budget = budget_bytes // rotating_bytes
    sets = min(math.ceil(span / rotating_bytes), by_budget, MAX_INPUT_SETS)
    if sets <= 1:
        return CachePolicy(
            1, fits, f"none (two input sets of {fmt_bytes(rotating_bytes)} exceed the rotation budget "
            f"{fmt_bytes(budget_bytes)}); {where}{resident}",
        )
    total = sets * rotating_bytes
    if total >= span:
        capped = ""
    elif sets < by_budget:
        capped = f", capped at {MAX_INPUT_SETS} sets, short of {L2_ROTATE_SPAN} x {size}"
    else:
        capped = f", capped by the {fmt_bytes(budget_bytes)} budget"
    why = "" if fits else f"; the {fmt_bytes(working)} working set is under {L2_ROTATE_SPAN} x {size}"
    rotated = f"rotate {sets} input sets of {fmt_bytes(rotating_bytes)} ({fmt_bytes(total)}{capped}{why})"
    if total + staying_bytes <= cache_bytes:
        others = f"with the other {fmt_bytes(staying_bytes)} " if staying_bytes else ""
        return CachePolicy(sets, True, f"{rotated}: {others}they still fit in {size}: cache-resident")
    inputs = f"{rotated}, more than {size} holds: each call reads its inputs from device memory"
    if not staying_bytes:
        return CachePolicy(sets, False, inputs)
    others = f"the other {fmt_bytes(staying_bytes)} (weights, outputs) do not rotate and may be served from {size}"
    if staying_bytes >= ROTATE_MIN_SHARE * working:
        return CachePolicy(sets, True, f"{inputs}, but {others}: cache-resident")
    return CachePolicy(
        sets, False, f"{inputs}; {others}, so the floor may be optimistic by up to their "
        f"{staying_bytes / working:.1%} of the working set",
    )
