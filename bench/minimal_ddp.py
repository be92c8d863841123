"""A minimal hand-written DDP training loop, the reference bench/ddp_overhead.py holds xfbench against.

What a user would write without a harness: launched by torchrun, gloo ranks on the CPU,
DistributedDataParallel with its defaults, AdamW, a few warm-up steps, then each
step timed with time.perf_counter on every rank (no barriers, no synchronization besides
DDP's own all-reduce). One step = forward + loss, backward (DDP all-reduces the gradients
in buckets), optimizer step, zero_grad(set_to_none=True), as xfbench's train step.

The model is xfbench's own GPT (workloads/gpt.py, the same code xfbench's DDP case
trains), so only the harness differs between the two sides. The rest mirrors what xfbench
sets up and nothing more: AdamW with workloads/model_steps.py's settings (fused, else
foreach), torch threads = usable cores / ranks on this host (workloads/launch.py
threads_per_rank), seed 0 for the weights and 1 + rank for each rank's batch.

After the loop (outside any timing) every rank's step times are all-gathered; a step's
time is the max over ranks, and rank 0 writes one JSON line to --out.

    torchrun --standalone --nproc-per-node 2 bench/minimal_ddp.py --out /tmp/hand.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from xfbench.workloads.gpt import GPT, PRESETS, GPTConfig
from xfbench.workloads.model_steps import make_optimizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file rank 0 writes the step times to")
    ap.add_argument("--preset", default="10M", choices=list(PRESETS))
    ap.add_argument("--batch", type=int, default=8, help="B per rank")
    ap.add_argument("--seq-len", type=int, default=None, help="T [default: the preset's context]")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per rank [default: cores / ranks]")
    args = ap.parse_args()

    rank, local_ranks = int(os.environ["RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
    # xfbench's threads_per_rank: the cores this process may run on, shared out over the host's ranks
    torch.set_num_threads(args.threads or max(1, len(os.sched_getaffinity(0)) // local_ranks))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one host: loopback, as xfbench binds it
    dist.init_process_group("gloo")

    shape = PRESETS[args.preset]
    t = args.seq_len or shape["block_size"]
    cfg = GPTConfig(**{**shape, "block_size": max(shape["block_size"], t)})
    torch.manual_seed(0)
    model = DDP(GPT(cfg)).train()
    opt, opt_path = make_optimizer(model, torch.device("cpu"))  # the same AdamW as xfbench's step
    gen = torch.Generator().manual_seed(1 + rank)
    x, y = (torch.randint(cfg.vocab_size, (args.batch, t), generator=gen) for _ in range(2))

    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)

    # Outside the timing: every rank's times to every rank; a step is as slow as its slowest rank.
    mine = torch.tensor(times, dtype=torch.float64)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    per_rank = [e.tolist() for e in every]
    if rank == 0:
        out = {
            "script": "bench/minimal_ddp.py",
            "preset": args.preset,
            "batch": args.batch,
            "seq_len": t,
            "world_size": dist.get_world_size(),
            "backend": dist.get_backend(),
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "optimizer": opt_path,
            "warmup_steps": args.warmup,
            "steps": args.steps,
            "torch": torch.__version__,
            "clock": "time.perf_counter per step, every rank",
            "step_times_s": [max(col) for col in zip(*per_rank, strict=True)],
            "rank_step_times_s": per_rank,
        }
        with open(args.out, "w") as f:
            f.write(json.dumps(out) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
