"""The commands that start `xfbench parallel` as a multi-node job: torchrun per node, and SLURM.

Pure text (no torch): `xfbench parallel --print-launch --nnodes 2 --nproc-per-node 8 ...`
prints them; each started rank then finds RANK, WORLD_SIZE and LOCAL_RANK in its
environment and runs as one rank of that job (workloads.launch.InJobExecutor).
"""

from __future__ import annotations

import shlex
import socket

RDZV_PORT = 29500


def _torchrun(nnodes: int, nproc: int, endpoint: str, run_id: str, node_rank: str | None) -> list[str]:
    cmd = ["torchrun", "--nnodes", str(nnodes), "--nproc-per-node", str(nproc)]
    if node_rank is not None:
        cmd += ["--node-rank", node_rank]
    return cmd + ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
                  "--max-restarts", "0", "-m", "xfbench", "parallel"]


def launch_lines(
    argv: list[str], *, nnodes: int = 1, nproc_per_node: int | None = None, node_rank: int | None = None,
    rdzv_endpoint: str | None = None, gpus: int | None = None, cuda: bool | None = None,
) -> str:
    """The torchrun command for each node (or only `node_rank`'s) and one srun line, with the
    user's measurement options `argv` appended. The job's world size is nnodes · nproc_per_node;
    it measures `single` (rank 0 alone) and every strategy at that size. `cuda` (the --device asked
    for; None: whether this host has GPUs) adds one GPU per rank to the srun line."""
    if gpus is None:
        gpus = _gpu_count()
    nproc = nproc_per_node or (gpus or 2)
    if cuda is None:
        cuda = gpus > 0
    # This host by name (getfqdn may resolve to 'localhost', which other nodes cannot reach).
    endpoint = rdzv_endpoint or f"{socket.gethostname()}:{RDZV_PORT}"
    run_id = "xfbench-parallel"
    tail = [shlex.quote(a) for a in argv]
    world = nnodes * nproc
    lines = [f"# {nnodes} node(s) x {nproc} rank(s) = world size {world}; rendezvous at {endpoint} "
             f"(c10d, hosted by node 0{'' if rdzv_endpoint else ': this host; --rdzv-endpoint names another'}); "
             "run one command on each node:"]
    nodes = [node_rank] if node_rank is not None else list(range(nnodes))
    for r in nodes:
        lines.append(f"# node {r}:")
        lines.append(" ".join(_torchrun(nnodes, nproc, endpoint, run_id, str(r)) + tail))
    head = '"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'
    srun = ["srun", "--nodes", str(nnodes), "--ntasks-per-node", "1"]
    if cuda:
        srun += ["--gpus-per-node", str(nproc)]
    slurm = _torchrun(nnodes, nproc, f"{head}:{RDZV_PORT}", '"$SLURM_JOB_ID"', None)
    lines.append("# SLURM (one task per node; torchrun starts its ranks; inside an sbatch allocation):")
    lines.append(" ".join(srun + slurm + tail))
    return "\n".join(lines)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0
