"""The runner as a library: failures are data, records reach the sink in order, threads are set."""

import torch

from xfbench.workloads.attention import AttentionConfig, cases
from xfbench.workloads.base import Case, make_params
from xfbench.workloads.runner import RunOptions, oom_sizes, run_cases

from .conftest import fast_policy

CPU = torch.device("cpu")


def test_an_error_in_one_case_is_a_record_and_the_sweep_goes_on():
    good = cases(AttentionConfig(seq_lens=[32], impls=["sdpa"], heads=2, head_dim=16), CPU)[0]
    # A parameter set the workload rejects: prepare() raises, as a real bug in a case would.
    bad = Case("attention", good.label, "bogus", 32, "N", make_params(**{**good.params, "impl": "bogus"}), "cpu")
    seen = []
    opts = RunOptions(policy=fast_policy(), measure_memory=False, calibrate=False)
    records = run_cases([bad, good], seen.append, opts)
    assert seen == records
    assert [r.status for r in records] == ["error", "ok"]
    assert records[0].reason == "ValueError: unknown attention impl 'bogus'"
    assert records[0].time is None and records[0].metrics == {}
    assert records[1].info["threads"] == torch.get_num_threads()


def test_oom_sizes_seed_from_records():
    good = cases(AttentionConfig(seq_lens=[32, 64, 128], impls=["naive"], heads=2, head_dim=16), CPU)
    opts = RunOptions(policy=fast_policy(), measure_memory=False, calibrate=False)
    # An earlier run's OOM at N=64 makes N=128 a skip, N=32 still runs.
    records = run_cases(good, lambda r: None, opts, oom_at={good[0].series: 64})
    assert [(r.size, r.status) for r in records] == [(32, "ok"), (64, "ok"), (128, "skipped")]
    assert oom_sizes([records[0].model_copy(update={"status": "oom"})]) == {good[0].series: 32}


def test_counted_flops_reach_the_record_with_their_ratio():
    # lstm fwd+bwd: counted through the oneDNN RNN kernels' formulas, against the work it dispatches.
    case = cases(AttentionConfig(seq_lens=[16], impls=["lstm"], modes=["fwdbwd"], heads=2, head_dim=8), CPU)[0]
    opts = RunOptions(policy=fast_policy(), measure_memory=False, count_flops=True, calibrate=False)
    (rec,) = run_cases([case], lambda r: None, opts)
    assert rec.status == "ok"
    assert rec.metrics["flops_counted_per_call"] == rec.metrics["work_flops_per_call"] == rec.metrics["flops_per_call"]
    assert rec.metrics["flops_counted_over_work"] == 1.0 and "flop_count_mismatch" not in rec.warnings
