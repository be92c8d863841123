"""CPU contention during a window: how many cores other processes kept busy while we measured.

Read from the kernel's counters at both ends of the window (no sampling thread):
system-wide busy CPU time (/proc/stat via psutil) minus this process's own CPU time
(all its threads). A load average lags by a minute; this is exact for the window.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

# /proc/stat counts in 10 ms ticks per CPU: below this window length a quarter of a core
# cannot be resolved, so the figure is None.
MIN_WINDOW_S = 0.25


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not all cores of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages; None where the OS has none (Windows) or cannot say."""
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return None


def _system() -> tuple[float, float]:
    """(busy seconds, steal seconds) summed over all CPUs since boot."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, getattr(t, "steal", 0.0)


def _own() -> float:
    t = os.times()
    return t.user + t.system


class CpuWindow:
    """Context manager: other processes' CPU use (in cores) over the window it brackets."""

    def __enter__(self) -> CpuWindow:
        self._t0 = time.perf_counter()
        self._sys0, self._steal0 = _system()
        self._own0 = _own()
        self._load = load_average()
        return self

    def __exit__(self, *exc) -> None:
        self.window_s = time.perf_counter() - self._t0
        sys1, steal1 = _system()
        own1 = _own()
        self.own_s = own1 - self._own0
        self.other_s = max(0.0, (sys1 - self._sys0) - self.own_s)
        self.steal_s = max(0.0, steal1 - self._steal0)

    def result(self) -> dict[str, Any]:
        """cpu_other_busy_cores, cpu_own_busy_cores, cpu_steal_cores (None if too short), load_avg_1m."""
        ok = self.window_s >= MIN_WINDOW_S

        def cores(seconds: float) -> float | None:  # 10 ms ticks: more digits would be noise
            return round(seconds / self.window_s, 3) if ok else None

        return {
            "cpu_window_s": self.window_s,
            "cpu_other_busy_cores": cores(self.other_s),
            "cpu_own_busy_cores": cores(self.own_s),
            "cpu_steal_cores": cores(self.steal_s),
            "load_avg_1m": self._load[0] if self._load else None,
            "usable_cores": usable_cores(),
        }
