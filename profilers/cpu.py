"""CPU specifics: a fixed glibc malloc policy so timings do not depend on case order."""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc <malloc.h> mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX = 32 MiB).
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Keep freed heap memory instead of returning it after every call (the memory pass trims
# explicitly before it reads a baseline).
TRIM_THRESHOLD_BYTES = 2**30


def fix_malloc_policy() -> str:
    """Pin glibc's mmap and trim thresholds; returns what was done, for the record.

    By default glibc moves its mmap threshold whenever a large block is freed and trims
    the heap when its free top exceeds twice that. For tensors of a few MiB (attention
    scores at moderate N) this flips between reusing heap pages and faulting in fresh
    zeroed pages on every call, so the same case times 2x apart depending on what ran
    before it. Fixed thresholds make steady state reproducible; blocks above 32 MiB are
    still mmapped (and faulted in) on every call, as any PyTorch program sees.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default (mallopt unavailable: not glibc)"
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    if not ok:
        return "default (mallopt refused)"
    return f"glibc mmap_threshold={MMAP_THRESHOLD_BYTES} trim_threshold={TRIM_THRESHOLD_BYTES}"
