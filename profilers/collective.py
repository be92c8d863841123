"""The timer across data-parallel ranks: collective stop decisions, window times gathered per rank.

A rank of a data-parallel job runs the same adaptive timer as one process, with two
changes (DESIGN.md, measurement rules):

- Every decision the timer makes (stop warming up, how many calls a window holds, stop
  sampling) is rank 0's, broadcast to all: ranks whose clocks or caps differ would
  otherwise run different numbers of steps, and the one still stepping waits forever in
  an all-reduce the others stopped calling.
- After each window every rank's time is all-gathered; the window's sample is the max
  over ranks (the step is as slow as its slowest rank: Megatron's timers, minmax), and
  each rank's own times are kept to show stragglers.

The broadcast and the gather run between windows, outside the clock's brackets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from .timer import Clock

# Key prefix of the progress marks each rank leaves in the job's store, read to name the
# rank that stopped answering when a collective times out.
MARK_PREFIX = "xfbench/mark/"


@dataclass
class GatheredClock:
    """A Clock whose stop() returns the max over ranks of the window's time.

    Args:
        base: this rank's own clock (perf_counter, CUDA events or fake).
        group: the ranks (RankGroup) to gather over.
    """

    base: Clock
    group: RankGroup
    per_window: list[list[float]] = field(default_factory=list)  # every window: each rank's per-call time

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def enqueue_s(self) -> float | None:
        return self.base.enqueue_s

    def start(self) -> None:
        self.base.start()

    def stop(self, calls: int) -> float:
        local = self.base.stop(calls)
        times = self.group.all_gather_float(local)
        self.per_window.append([t / calls for t in times])
        return max(times)

    def now(self) -> float:
        return self.base.now()


class RankGroup:
    """This process's view of the job's ranks, as the timer needs it (timer.Agreement).

    Args:
        group: the process group (None: the default one, set up by init_process_group).
    """

    def __init__(self, group: dist.ProcessGroup | None = None):
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.backend = dist.get_backend(group)
        # Collectives of small control tensors: on the GPU for NCCL, on the CPU for gloo.
        nccl = self.backend == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        self.phase = "starting"
        self.decisions = 0  # timer decisions taken so far (the progress marks count them)

    def mark(self, phase: str) -> None:
        """Name what this rank does now, in the job's store (see lagging_ranks)."""
        self.phase = phase
        mark(f"{phase} (after {self.decisions} timer decisions)", self.decisions)

    def _broadcast_int(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0, group=self.group)
        return int(t.item())

    def stop(self, stop: bool) -> bool:
        self.decisions += 1
        mark(f"{self.phase} (timer decision {self.decisions})", self.decisions)
        return bool(self._broadcast_int(int(stop)))

    def calls(self, calls: int) -> int:
        return self._broadcast_int(calls)

    def all_gather_float(self, value: float) -> list[float]:
        mine = torch.tensor([value], dtype=torch.float64, device=self.device)
        out = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(out, mine, group=self.group)
        return [float(t.item()) for t in out]

    def clock(self, base: Clock) -> GatheredClock:
        return GatheredClock(base, self)

    def gather_object(self, obj: object) -> list | None:
        """Every rank's `obj` on rank 0 (None elsewhere)."""
        out = [None] * self.size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def barrier(self) -> None:
        dist.barrier(group=self.group)


def rank_window_times(clock: GatheredClock, warmup_calls: int) -> list[list[float]]:
    """Each rank's per-call time of every timed window: rank -> samples (warm-up left out)."""
    timed = clock.per_window[warmup_calls:]
    return [[w[r] for w in timed] for r in range(len(timed[0]) if timed else 0)]


def mark(text: str, count: int) -> None:
    """Leave this rank's progress in the job's store (read by lagging_ranks after a timeout)."""
    store = _store()
    if store is not None:
        store.set(f"{MARK_PREFIX}{dist.get_rank()}", f"{count}|{text}")


def lagging_ranks(timeout_s: float = 2.0) -> dict[int, tuple[int, str]]:
    """Each rank's last progress mark, (count, text): the store survives a collective's timeout
    (gloo's pairs do not), so a timed-out rank can name the rank that fell behind."""
    store = _store()
    if store is None:
        return {}
    out = {}
    store.set_timeout(timedelta(seconds=timeout_s))
    for r in range(dist.get_world_size()):
        try:
            count, _, text = store.get(f"{MARK_PREFIX}{r}").decode().partition("|")
            out[r] = (int(count), text)
        except Exception:  # noqa: BLE001 - a rank that never marked, or a store that is gone
            out[r] = (-1, "no progress recorded")
    return out


def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - private API: without it, timeouts just do not name ranks
        return None
