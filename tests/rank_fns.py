"""Functions the tests run as the ranks of a launched job (spawned workers import them by name)."""

from __future__ import annotations

import os


def stop_decision(max_time_rank1: float) -> dict:
    """Each rank times a cheap step with a different time cap; the collective decision must make
    them run the same warm-up calls and windows anyway."""
    import torch.distributed as dist

    from xfbench.profilers.collective import RankGroup
    from xfbench.profilers.timer import CpuClock, TimerPolicy, measure_time

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo")
    try:
        group = RankGroup()
        cap = 0.3 if group.rank == 0 else max_time_rank1
        policy = TimerPolicy(target_ci_rel=1e-9, max_time_s=cap, min_samples=6, min_window_s=0.001,
                             warmup_min_s=0.01 if group.rank == 0 else 0.0, warmup_max_s=0.2)
        calls = [0]

        class Step:
            def run(self):
                calls[0] += 1
                sum(range(2000))

        clock = group.clock(CpuClock())
        t = measure_time(Step(), policy, clock, agree=group)
        return {"rank": group.rank, "n": t.n, "warmup": t.warmup_calls, "calls": calls[0],
                "per_window": len(clock.per_window), "median": t.median_s, "max_s": t.max_s,
                "samples": t.samples_s}
    finally:
        dist.destroy_process_group()
