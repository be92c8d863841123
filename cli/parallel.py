"""`xfbench parallel`: data-parallel (DDP, FSDP) against one device, on torch.distributed."""

import typer

from .common import SharedOptions, check_dtype, sweep_command
from .parse import MAX_DIM, MAX_LEN
from .status import ExitStatus

STRATEGY_CHOICES = ("single", "ddp", "fsdp")
COLLECTIVE_CHOICES = ("all_reduce", "all_gather", "reduce_scatter", "none")
MAX_WORLD_SIZE = 4096  # ranks one command launches at most
DEFAULT_SIZES = "1KiB,4KiB,16KiB,64KiB,256KiB,1MiB,4MiB,16MiB,64MiB,256MiB"
# Options that describe how to launch, not what to measure: left out of the printed command.
LAUNCH_OPTIONS = {"--print-launch": 0, "--nnodes": 1, "--nproc-per-node": 1, "--node-rank": 1,
                  "--rdzv-endpoint": 1, "--world-sizes": 1}


@sweep_command
def parallel(
    presets: str | None = typer.Option(
        None, "--presets",
        help="Model sizes, comma-separated (see `xfbench model`) [default: 1M; only the custom model with --layers].",
    ),
    strategy: str = typer.Option(
        "single,ddp,fsdp", "--strategy",
        help="single (plain model, one device: the baseline), ddp (DistributedDataParallel), fsdp (FSDP2 "
        "fully_shard), comma-separated.",
    ),
    world_sizes: str = typer.Option(
        "1,2", "--world-sizes",
        help="Ranks per case, comma-separated or a range (1:8:x2); single runs at 1 only. Under torchrun/srun: "
        "1 and the job's world size [default there: both].",
    ),
    scaling: str = typer.Option(
        "weak", "--scaling", help="weak: --batch per rank (global batch grows); strong: --batch global, split."
    ),
    batch: int = typer.Option(8, "--batch", min=1, max=MAX_LEN, help="Batch B: per rank (weak) or global (strong)."),
    seq_len: int | None = typer.Option(
        None, "--seq-len", min=1, max=MAX_LEN, help="Tokens per sequence T [default: the model's context]."
    ),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16 (autocast; fp32 weights)."),
    bucket_mb: int = typer.Option(25, "--bucket-mb", min=1, max=1 << 16, help="DDP's gradient bucket size (MiB)."),
    layers: int | None = typer.Option(None, "--layers", min=1, max=MAX_DIM, help="Custom model: layers L."),
    d_model: int | None = typer.Option(None, "--d-model", min=1, max=MAX_DIM, help="Custom model: width d."),
    heads: int | None = typer.Option(
        None, "--heads", min=1, max=MAX_DIM, help="Custom model: attention heads (divide d)."
    ),
    vocab: int | None = typer.Option(
        None, "--vocab", min=1, max=MAX_LEN, help="Custom model: vocabulary [default: 50304]."
    ),
    exposed_comm: bool = typer.Option(
        True, "--exposed-comm/--no-exposed-comm",
        help="Also time DDP's step under no_sync (gradient all-reduce skipped): the difference is exposed comm.",
    ),
    collectives: str | None = typer.Option(
        None, "--collectives",
        help="Collective bandwidth sweep: all_reduce, all_gather, reduce_scatter or none [default: all_reduce, "
        "and all_gather,reduce_scatter with fsdp].",
    ),
    message_sizes: str = typer.Option(DEFAULT_SIZES, "--message-sizes", help="Collective message sizes."),
    pg_timeout: float = typer.Option(
        60.0, "--pg-timeout", min=1.0, max=86400.0,
        help="Process-group timeout (s): a rank that hangs ends its case after this long.",
    ),
    print_launch: bool = typer.Option(
        False, "--print-launch", help="Print the torchrun command per node and a SLURM srun line, and exit."
    ),
    nnodes: int = typer.Option(1, "--nnodes", min=1, max=1 << 16, help="Nodes, for --print-launch."),
    nproc_per_node: int | None = typer.Option(
        None, "--nproc-per-node", min=1, max=1024, help="Ranks per node, for --print-launch [default: GPUs or 2]."
    ),
    node_rank: int | None = typer.Option(
        None, "--node-rank", min=0, help="Print only this node's command (--print-launch)."
    ),
    rdzv_endpoint: str | None = typer.Option(
        None, "--rdzv-endpoint", help="HOST:PORT of the rendezvous, for --print-launch [default: this host:29500]."
    ),
    fault: str | None = typer.Option(None, "--fault", hidden=True, help="RANK:raise|kill|hang|oom (tests)."),
    shared: SharedOptions = SharedOptions(),
) -> ExitStatus:
    """Data-parallel (DDP, FSDP) versus one device: tokens/s, scaling efficiency, comm, memory per rank."""
    import sys

    if print_launch:  # the options are checked here too: a bad one is exit 2, not a broken command line
        # (all but --device, which names the nodes' devices, not this machine's)
        plan_inputs(presets=presets, strategy=strategy, world_sizes=world_sizes, scaling=scaling, layers=layers,
                    d_model=d_model, heads=heads, vocab=vocab, collectives=collectives, message_sizes=message_sizes,
                    dtype=dtype)
        _check_device_name(shared.device)
        shared.run_options()
        _fault(fault)
        from ..workloads.launch_lines import launch_lines

        argv = strip_launch_options(sys.argv[sys.argv.index("parallel") + 1:] if "parallel" in sys.argv else [])
        device = shared.device.strip().lower()
        cuda = True if device.startswith("cuda") else False if device == "cpu" else None
        typer.echo(launch_lines(argv, nnodes=nnodes, nproc_per_node=nproc_per_node, node_rank=node_rank,
                                rdzv_endpoint=rdzv_endpoint, cuda=cuda))
        return ExitStatus.OK
    fault_spec = _fault(fault)
    from ..workloads import launch as ln

    job_env = ln.outside_job()
    plan = parallel_plan(
        shared.device, presets=presets, strategy=strategy, world_sizes=world_sizes, scaling=scaling, batch=batch,
        seq_len=seq_len, dtype=dtype, bucket_mb=bucket_mb, layers=layers, d_model=d_model, heads=heads,
        vocab=vocab, exposed_comm=exposed_comm, collectives=collectives, message_sizes=message_sizes,
        job_env=job_env, world_sizes_given="--world-sizes" in sys.argv,
    )
    from .sweep import run_sweep

    job = launch_job(shared, pg_timeout=pg_timeout, fault=fault_spec)
    if job_env is None:
        executor = ln.LaunchExecutor(plan, job, prior=_prior(shared))
        return run_sweep("parallel", plan, shared, extra_tables=_tables, execute=executor, calibrate=False)
    return run_in_job(plan, job, job_env, shared)


def parallel_plan(
    device: str, *, presets: str | None, strategy: str, world_sizes: str, scaling: str, batch: int,
    seq_len: int | None, dtype: str, bucket_mb: int, layers: int | None, d_model: int | None, heads: int | None,
    vocab: int | None, exposed_comm: bool, collectives: str | None, message_sizes: str,
    job_env: dict | None = None, world_sizes_given: bool = True,
) -> list:
    """The data-parallel and collective cases these options describe (the command's and a suite case's);
    BadInput if invalid. Under an outside launcher (`job_env`) the world sizes are 1 and the job's."""
    from ..profilers.device import resolve_device
    from ..reports.errors import BadInput
    from ..workloads import launch as ln
    from ..workloads.collectives import CollectiveConfig
    from ..workloads.collectives import cases as collective_cases
    from ..workloads.parallel import ParallelConfig, cases
    from .model import check_gpt_tensors

    strategies, scale, sizes, custom, names, ops, message = plan_inputs(
        presets=presets, strategy=strategy, world_sizes=world_sizes, scaling=scaling, layers=layers, d_model=d_model,
        heads=heads, vocab=vocab, collectives=collectives, message_sizes=message_sizes, dtype=dtype,
    )
    dev = resolve_device(device)
    check_dtype(dtype, dev)
    if job_env is not None:
        allowed = {1, job_env["world_size"]}
        if not world_sizes_given:
            sizes = sorted(allowed)
        elif not set(sizes) <= allowed:
            raise BadInput(f"--world-sizes: under an outside launcher the job has {job_env['world_size']} ranks: "
                           f"give 1 and/or {job_env['world_size']}")
    ln.check_backend(dev, max(sizes), job_env)
    cfg = ParallelConfig(
        presets=names, strategies=strategies, world_sizes=sizes, scaling=scale, batch=batch, seq_len=seq_len,
        dtype=dtype, bucket_mb=bucket_mb, custom=custom, exposed_comm=exposed_comm,
    )
    comm_sizes = [n for n in sizes if n > 1] or sizes
    try:
        plan = cases(cfg, dev) + collective_cases(CollectiveConfig(ops, message, comm_sizes), dev)
    except ValueError as e:
        raise BadInput(str(e)) from None
    check_gpt_tensors([c for c in plan if "n_embd" in c.params])  # the collective cases have no model
    if job_env is not None and job_env["world_size"] > 1:  # one rank alone runs `single`; the rest, all ranks
        plan = [c for c in plan if c.params["world_size"] == job_env["world_size"] or c.variant == "single"]
    return plan


def plan_inputs(
    *, presets: str | None, strategy: str, world_sizes: str, scaling: str, layers: int | None, d_model: int | None,
    heads: int | None, vocab: int | None, collectives: str | None, message_sizes: str, dtype: str,
) -> tuple:
    """The options of parallel_plan that need no device, parsed and checked (BadInput if invalid): strategies,
    scaling, world sizes, the custom model, preset names, collectives and message sizes (and the dtype's name)."""
    import torch

    from ..reports.errors import BadInput
    from ..workloads.gpt import PRESETS
    from .model import custom_model, parse_presets
    from .parse import parse_bytes, parse_choices

    strategies, scale, sizes = parallel_plan_options(strategy=strategy, world_sizes=world_sizes, scaling=scaling)
    custom = custom_model(layers, d_model, heads, vocab)
    names = []
    if presets is not None or custom is None:  # --presets "" is not the default: parse_presets refuses it
        names = parse_presets("1M" if presets is None else presets, list(PRESETS))
    if collectives is None:
        ops = ["all_reduce"] + (["all_gather", "reduce_scatter"] if "fsdp" in strategies else [])
    else:
        ops = [o for o in parse_choices(collectives, COLLECTIVE_CHOICES, "--collectives") if o != "none"]
    message = sorted({parse_bytes(s, "--message-sizes") for s in message_sizes.split(",") if s.strip()})
    if not message and ops:
        raise BadInput("--message-sizes: no sizes given")
    check_dtype(dtype, torch.device("cpu"))  # its name (what 'auto' becomes depends on the device)
    return strategies, scale, sizes, custom, names, ops, message


def parallel_plan_options(*, strategy: str, world_sizes: str, scaling: str) -> tuple[list[str], str, list[int]]:
    """--strategy, --scaling and --world-sizes parsed and checked (BadInput if invalid)."""
    from ..reports.errors import BadInput
    from .parse import parse_choices, parse_int_sweep

    strategies = parse_choices(strategy, STRATEGY_CHOICES, "--strategy")
    scale = parse_choices(scaling, ("weak", "strong"), "--scaling")
    if len(scale) != 1:
        raise BadInput("--scaling: give one of weak, strong")
    sizes = parse_int_sweep(world_sizes, "--world-sizes")
    if max(sizes) > MAX_WORLD_SIZE:
        raise BadInput(f"--world-sizes: {max(sizes)} ranks is more than this command launches ({MAX_WORLD_SIZE})")
    return strategies, scale[0], sizes


def launch_job(shared: SharedOptions, *, pg_timeout: float, fault=None):
    """The Job every launched case of `plan` runs as (timer policy, passes, timeout, threads)."""
    from ..workloads import launch as ln

    opts = shared.run_options()
    return ln.Job(cases=[], policy=opts.policy, fake_clock=opts.fake_clock, memory=opts.measure_memory,
                  count_flops=opts.count_flops, pg_timeout_s=pg_timeout, threads=shared.threads, fault=fault)


def _tables(run) -> list:
    """The data-parallel and collective tables (reports.parallel_report) in place of the generic ones."""
    from ..reports.parallel_report import collective_tables, parallel_tables

    return parallel_tables(run) + collective_tables(run)


def _prior(shared: SharedOptions) -> list:
    """With --resume, the records already in the run folder (their `single` cases are the baselines
    of the cases still to run)."""
    from ..reports.store import RESULTS_NAME, load_results

    path = shared.out / RESULTS_NAME if shared.out is not None else None
    if not shared.resume or path is None or not path.exists():
        return []
    return load_results(path).records


def run_in_job(plan, job, job_env: dict, shared: SharedOptions) -> ExitStatus:
    """This process is one rank of an outside job (torchrun, srun): every rank runs the plan in the
    same order; rank 0 alone prints and writes the results."""
    from ..workloads import launch as ln
    from ..workloads.runner import run_cases
    from .sweep import run_sweep

    executor = ln.InJobExecutor(plan, job, job_env)
    if job_env["rank"] == 0:
        for r in _prior(shared):
            executor.keep_baseline(r)
    try:
        if job_env["rank"] == 0:
            executor.agree_plan(_pending(plan, shared))  # run_sweep finds the same pending cases
            return run_sweep("parallel", plan, shared, extra_tables=_tables, execute=executor, calibrate=False)
        todo = executor.agree_plan(None)
        run_cases(todo, lambda record: None, _quiet(shared.run_options()), execute=executor)
        return ExitStatus.OK
    finally:
        executor.close()


def _pending(plan, shared: SharedOptions):
    from ..reports.errors import BadInput
    from ..reports.store import RESULTS_NAME
    from ..workloads.runner import pending_cases

    if not shared.resume:
        return plan
    if shared.out is None:
        raise BadInput("--resume needs --out: the run folder to resume")
    return pending_cases(plan, shared.out / RESULTS_NAME)


def _quiet(opts):
    import dataclasses

    return dataclasses.replace(opts, calibrate=False, telemetry=False)


def strip_launch_options(argv: list[str]) -> list[str]:
    """The user's options minus those that describe the launch (the printed commands set them)."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = LAUNCH_OPTIONS[name] if "=" not in a else 0
            continue
        out.append(a)
    return out


def _check_device_name(name: str) -> None:
    """BadInput for a --device no node can have (cpu, cuda, cuda:N or auto are the spellings); whether
    this machine has it is not asked: with --print-launch it names the nodes' devices."""
    import torch

    from ..reports.errors import BadInput

    text = name.strip().lower()
    if text == "auto":
        return
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise BadInput(f"--device: unknown device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index is not None):
        raise BadInput(f"--device {name}: use cpu, cuda, cuda:N or auto")


def _fault(text: str | None):
    if text is None:
        return None
    from ..reports.errors import BadInput
    from ..workloads.launch import FAULT_KINDS, Fault

    rank, _, kind = text.partition(":")
    if not rank.isdigit() or kind not in FAULT_KINDS:
        raise BadInput(f"--fault: '{text}' must be RANK:{'|'.join(FAULT_KINDS)}")
    return Fault(int(rank), kind)
