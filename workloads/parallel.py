"""Data-parallel versus one device: the GPT train step as `single`, `ddp` and `fsdp` over world sizes.

A Case here is one strategy at one world size; it runs as that many ranks of a
torch.distributed job (workloads/launch.py starts them, or an outside torchrun/srun did),
each rank building its Step with prepare_rank(). `single` is the plain model on one device
with no wrapper, the baseline scaling efficiency divides by; `ddp` is
DistributedDataParallel; `fsdp` is FSDP2's fully_shard (per block, then the root).

Weak scaling keeps the batch per rank (the global batch grows with the world size);
strong scaling splits one global batch over the ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..profilers.device import DTYPES, resolve_dtype
from .base import Case, SkipCase, Step, make_params
from .gpt import GPT, PRESETS, GPTConfig
from .model import CUSTOM_SEQ_LEN, model_shapes

NAME = "parallel"
STRATEGIES = ("single", "ddp", "fsdp")
SCALINGS = ("weak", "strong")
DDP_BUCKET_MB = 25  # DistributedDataParallel's default bucket_cap_mb
GRAD_BYTES = 4  # gradients are fp32: weights stay fp32 (16-bit dtypes run under autocast)
COMM_FORMULAS = {
    "ddp": "ring all-reduce of every gradient: each rank sends 2(n-1)/n · G bytes, G = params · 4 B",
    "fsdp": "all-gather of the parameters in forward and again in backward, reduce-scatter of the gradients: "
    "each rank sends 3(n-1)/n · P bytes, P = params · 4 B",
}
TOKENS_DEFINITION = (
    "global tokens/s = world_size · B · T / step time, B the batch per rank (nanoGPT's tokens_per_iter); "
    "step time = median over windows of the slowest rank's window"
)


@dataclass
class ParallelConfig:
    """One data-parallel sweep: every (model, strategy, world size) is a Case.

    `single` runs at world size 1 only (it is the one-device baseline).
    """

    presets: list[str] = field(default_factory=lambda: ["1M"])  # names in workloads.gpt.PRESETS
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    world_sizes: list[int] = field(default_factory=lambda: [1, 2])
    scaling: str = "weak"  # weak: batch is per rank; strong: batch is global, split over ranks
    batch: int = 8  # B per rank (weak) or global (strong)
    seq_len: int | None = None  # T; None: the preset's context
    dtype: str = "auto"
    bucket_mb: int = DDP_BUCKET_MB  # DDP's gradient bucket size
    custom: dict | None = None  # n_layer, n_head, n_embd, vocab_size of a custom model
    exposed_comm: bool = True  # also time DDP's step under no_sync (gradient sync skipped)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def models(cfg: ParallelConfig) -> list[tuple[str, GPTConfig]]:
    out = []
    for name, shape in model_shapes(cfg.presets, cfg.custom).items():
        t = cfg.seq_len or shape["block_size"]
        gc = GPTConfig(**{**shape, "block_size": max(shape["block_size"], t)})
        gc.check()
        out.append((name, gc))
    return out


def cases(cfg: ParallelConfig, device: torch.device) -> list[Case]:
    """Strategies are series (the variant), world sizes their sizes; `single` first, the baseline."""
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.scaling not in SCALINGS:
        raise ValueError(f"unknown scaling '{cfg.scaling}' (choose from {', '.join(SCALINGS)})")
    for s in cfg.strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy '{s}' (choose from {', '.join(STRATEGIES)})")
    if cfg.batch < 1 or any(n < 1 for n in cfg.world_sizes):
        raise ValueError("batch and world sizes must be at least 1")
    out = []
    for name, gc in models(cfg):
        t = cfg.seq_len or PRESETS.get(name, {}).get("block_size", CUSTOM_SEQ_LEN)
        for strategy in sorted(cfg.strategies, key=STRATEGIES.index):
            sizes = [1] if strategy == "single" else sorted(set(cfg.world_sizes))
            for n in sizes:
                if cfg.scaling == "strong" and cfg.batch % n:
                    raise ValueError(f"strong scaling splits the global batch {cfg.batch} over {n} ranks: "
                                     f"choose a batch divisible by every world size")
                per_rank = cfg.batch // n if cfg.scaling == "strong" else cfg.batch
                params = make_params(
                    preset=name, strategy=strategy, world_size=n, scaling=cfg.scaling, batch=per_rank,
                    global_batch=per_rank * n, seq_len=t, dtype=dtype, n_layer=gc.n_layer, n_head=gc.n_head,
                    n_embd=gc.n_embd, vocab_size=gc.vocab_size, block_size=gc.block_size,
                    bucket_mb=cfg.bucket_mb if strategy == "ddp" else None, backend=backend_for(device),
                    exposed_comm=cfg.exposed_comm and strategy == "ddp",
                )
                out.append(Case(NAME, label(name, dtype, cfg.scaling, cfg.batch, t), strategy, n, "ranks",
                                params, str(device)))
    return out


def label(preset: str, dtype: str, scaling: str, batch: int, t: int) -> str:
    per = f"B={batch}/rank" if scaling == "weak" else f"B={batch} global"
    return f"parallel train {preset} · {dtype} · {scaling} scaling · {per} · T={t}"


@dataclass
class RankStep:
    """What one rank measures for a case: the step, and optionally the same step with the
    gradient synchronization skipped (DDP's no_sync), whose difference is the exposed
    communication.

    Args:
        step: the synchronized train step.
        nosync: the step under no_sync, or None.
        model: the wrapped model (DDP's logging data is read from it after timing).
    """

    step: Step
    nosync: Step | None
    model: Any


def wrap(model: torch.nn.Module, strategy: str, device: torch.device, world_size: int, bucket_mb: int | None):
    """The model as the strategy runs it; returns (module, info)."""
    if strategy == "single":
        if world_size != 1:
            raise SkipCase("single is the one-device baseline: it runs at world size 1 only")
        return model, {"wrapper": "none (plain module)"}
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids, bucket_cap_mb=bucket_mb), {
            "wrapper": f"torch.nn.parallel.DistributedDataParallel(bucket_cap_mb={bucket_mb})"
        }
    if strategy == "fsdp":
        fully_shard, api = fsdp_api()
        from torch.distributed.device_mesh import init_device_mesh

        # gloo needs the CPU mesh spelled out: a mesh's device type decides the collectives' devices.
        mesh = init_device_mesh(device.type, (world_size,))
        for block in model.transformer.h:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model, {"wrapper": f"{api}: fully_shard per block, then the root (mesh {device.type} × {world_size})"}
    raise ValueError(f"unknown strategy '{strategy}'")


def fsdp_api():
    """FSDP2's fully_shard: torch.distributed.fsdp from torch 2.6, the _composable path before."""
    try:
        from torch.distributed.fsdp import fully_shard

        return fully_shard, "torch.distributed.fsdp.fully_shard (FSDP2)"
    except ImportError:
        try:
            from torch.distributed._composable.fsdp import fully_shard

            return fully_shard, "torch.distributed._composable.fsdp.fully_shard (FSDP2)"
        except ImportError:
            raise SkipCase(f"FSDP2 (fully_shard) is not in torch {torch.__version__}") from None


def prepare_rank(case: Case, device: torch.device, rank: int) -> RankStep:
    """This rank's train step of the case (the process group is already set up)."""
    from ..reports import model_flops as mf
    from . import model_steps as ms
    from .model import TOKENS_DEFINITION as MODEL_TOKENS

    p = case.params
    gc = GPTConfig(p["n_layer"], p["n_head"], p["n_embd"], p["vocab_size"], p["block_size"])
    b, t, n = p["batch"], p["seq_len"], p["world_size"]
    dtype = DTYPES[p["dtype"]]
    torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
    with torch.device(device):
        model = GPT(gc)
    n_params = model.num_params()
    n_flop = model.num_params(non_embedding=True)
    module, winfo = wrap(model, p["strategy"], device, n, p.get("bucket_mb"))
    gen = torch.Generator(device=device).manual_seed(1 + rank)  # each rank its own batch
    x, y = (torch.randint(gc.vocab_size, (b, t), device=device, generator=gen) for _ in range(2))
    per_token = mf.train_flops_per_token(n_flop, gc.n_layer, gc.n_embd, t, "full")
    grad_bytes = n_params * GRAD_BYTES
    info: dict[str, Any] = {
        "preset": p["preset"], "n_params": n_params, "n_flop_params": n_flop, "dtype": p["dtype"],
        "strategy": p["strategy"], **winfo, "flop_convention": mf.convention_text("train", "full"),
        "tokens_definition": MODEL_TOKENS, "grad_bytes_per_step": grad_bytes,
    }
    step = ms.train_step(
        module.train(), info, device=device, dtype=dtype, compile=False, x=x, y=y, flops=per_token * b * t,
        tokens=b * t,
    )
    step.working_set_bytes = 16 * n_params  # weights, grads and AdamW's two states, fp32
    nosync = None
    if p.get("exposed_comm") and p["strategy"] == "ddp":
        synced = step.fn

        def unsynced(x, y):  # the same step (model, optimizer, batch) with DDP's all-reduce skipped
            with module.no_sync():
                synced(x, y)

        nosync = Step(fn=unsynced, inputs=(x, y), flops=step.flops, tokens=step.tokens,
                      working_set_bytes=step.working_set_bytes, info=dict(info))
    return RankStep(step, nosync, module)


STATE_DEFINITION = (
    "state/rank: the bytes this rank keeps between steps, counted from its own tensors: weights and AdamW's two "
    "moments, each the size of the rank's parameters (its local shards under FSDP), 3 · 4 B per element; "
    "memory/rank = state + the step's peak above it (gradients, activations, communication buffers)"
)


def state_bytes(module) -> int:
    """Weights + AdamW's two moments this rank holds (STATE_DEFINITION), from its local tensors."""
    total = 0
    for p in module.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p  # FSDP2: a DTensor's shard on this rank
        total += local.numel() * local.element_size()
    return 3 * total


def comm_bytes_per_rank(strategy: str, n_params: int, world_size: int) -> float:
    """Bytes each rank sends per step in a ring (COMM_FORMULAS); 0 alone or without a wrapper."""
    if strategy == "single" or world_size == 1:
        return 0.0
    share = (world_size - 1) / world_size
    return (2 if strategy == "ddp" else 3) * share * n_params * GRAD_BYTES


def ddp_logging(module) -> dict[str, float]:
    """DDP's own sampled timings of backward (ns -> s) where the reducer recorded them."""
    get = getattr(module, "_get_ddp_logging_data", None)
    if get is None:
        return {}
    try:
        data = get()
    except Exception:  # noqa: BLE001 - private API: absent is fine
        return {}
    keys = {
        "avg_backward_compute_time": "ddp_backward_compute_s",
        "avg_backward_comm_time": "ddp_backward_comm_s",
        "avg_backward_compute_comm_overlap_time": "ddp_backward_overlap_s",
    }
    return {name: data[k] / 1e9 for k, name in keys.items() if data.get(k)}


def finish(case: Case, m, extras: dict) -> None:
    """Rank 0, after gathering: the per-rank Step's figures become the job's (global tokens and
    FLOPs over the slowest rank's time), plus communication: bytes per step and, for DDP, the
    exposed part (synchronized step minus the same step under no_sync)."""
    p, n, t = case.params, case.params["world_size"], m.time.median_s
    tokens, flops = m.metrics.get("tokens_per_call") or 0, m.metrics.get("flops_per_call") or 0.0
    n_params = m.info.get("n_params", 0)
    m.metrics.update(
        tokens_per_call=tokens * n, tokens_per_call_per_rank=tokens, tokens_per_s=tokens * n / t,
        tokens_per_s_per_rank=tokens / t, flops_per_call=flops * n, flop_per_s=flops * n / t,
        grad_bytes_per_step=n_params * GRAD_BYTES,
        comm_bytes_per_rank_per_step=comm_bytes_per_rank(p["strategy"], n_params, n),
    )
    for key in ("work_flops_per_call", "flops_counted_per_call"):  # per rank -> the job's, as flops_per_call
        if m.metrics.get(key) is not None:
            m.metrics[key] = m.metrics[key] * n
    if m.metrics.get("state_bytes_per_rank") is not None:
        m.info["memory_per_rank"] = STATE_DEFINITION
    m.info.update(tokens_definition=TOKENS_DEFINITION, world_size=n, scaling=p["scaling"],
                  batch_per_rank=p["batch"], global_batch=p["global_batch"], backend=p["backend"])
    if p["strategy"] in COMM_FORMULAS:
        m.info["comm_bytes_formula"] = COMM_FORMULAS[p["strategy"]]
    nosync = extras.get("nosync")
    if nosync is not None:
        t0 = nosync.time.median_s
        # 95% CI half-width of the difference: the two medians' half-widths in quadrature.
        half = math.hypot(m.time.ci_rel * t, nosync.time.ci_rel * t0)
        m.metrics.update(nosync_time_s=t0, exposed_comm_s=t - t0, exposed_comm_frac=(t - t0) / t,
                         exposed_comm_ci_s=half)
        m.info["exposed_comm"] = ("synchronized step minus the same step under DDP's no_sync (all-reduce "
                                  "skipped), both the max over ranks")
    elif p["strategy"] == "fsdp":
        m.info["exposed_comm"] = ("not measured for FSDP: its all-gathers cannot be skipped (see the "
                                  "all-gather and reduce-scatter bandwidth)")
    if extras.get("ddp"):
        m.metrics.update(extras["ddp"])
        m.info["ddp_logging"] = ("DDP's own sampled timings of backward (DistributedDataParallel."
                                 "_get_ddp_logging_data: avg backward compute, comm and their overlap), rank 0")


def prepare(case: Case, device: torch.device) -> Step:
    raise SkipCase("a data-parallel case runs as the ranks of a job (xfbench parallel), not in one process")
