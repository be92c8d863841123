"""profilers.measure: one entry point, a registry of profilers, a plain-data Measurement."""

import multiprocessing
import pickle

import torch

from xfbench.profilers import measure as measure_mod
from xfbench.profilers.measure import PASS, WINDOW, Contribution, MeasureOptions, measure
from xfbench.reports.schema import Measurement, Record
from xfbench.workloads.attention import AttentionConfig, cases, prepare

from .conftest import fast_policy

CPU = torch.device("cpu")


def _step():
    (case,) = cases(AttentionConfig(seq_lens=[32], impls=["sdpa"], heads=2, head_dim=8), CPU)
    return case, prepare(case, CPU)


class CallsInWindow:
    """A test profiler: counts the step's calls while the timed phase runs."""

    kind = WINDOW

    def __init__(self, ctx):
        self.step, self.calls, self.inside = ctx.step, 0, False
        run = ctx.step.run

        def counted():
            self.calls += self.inside
            run()

        ctx.step.run = counted

    @classmethod
    def enabled(cls, opts):
        return True

    def __enter__(self):
        self.inside = True

    def __exit__(self, *exc):
        self.inside = False

    def result(self, timing):
        return Contribution(info={"calls_in_window": self.calls})


class Marker:
    kind = PASS

    def __init__(self, ctx):
        self.ctx = ctx

    @classmethod
    def enabled(cls, opts):
        return True

    def result(self, timing):
        return Contribution(metrics={"marker": timing.n})


def test_a_registered_profiler_is_one_line_and_windows_bracket_exactly_the_timed_calls(monkeypatch):
    monkeypatch.setitem(measure_mod.PROFILERS, "calls", f"{__name__}:CallsInWindow")
    monkeypatch.setitem(measure_mod.PROFILERS, "marker", f"{__name__}:Marker")
    _, step = _step()
    m = measure(step, CPU, MeasureOptions(policy=fast_policy(), memory=False))
    # every timed call and no warm-up call ran inside the window
    assert m.info["calls_in_window"] == m.time.n * m.time.calls_per_sample
    assert m.metrics["marker"] == m.time.n


def test_measurement_is_plain_data_a_record_can_be_built_from():
    case, step = _step()
    m = measure(step, CPU, MeasureOptions(policy=fast_policy()))
    assert Measurement.model_validate_json(m.model_dump_json()) == m
    assert pickle.loads(pickle.dumps(m)) == m
    assert m.memory is not None and m.metrics["peak_mem_bytes"] == m.memory.peak_bytes
    assert m.metrics["flop_per_s"] == step.flops / m.time.median_s
    assert m.telemetry["cpu_window_s"] > 0 and m.telemetry["reason"]  # CPU contention read, NVML's reason why not
    fake = measure(step, CPU, MeasureOptions(policy=fast_policy(), fake_clock=True))
    # nothing real is read under a fake clock (so a fake run repeats): no memory pass, no telemetry
    assert fake.time.clock == "fake" and fake.memory is None and fake.telemetry is None
    rec = Record(case_id=case.id, workload=case.workload, label=case.label, variant=case.variant, size=case.size,
                 size_name=case.size_name, params=case.params, device=case.device, status="ok", **dict(m))
    assert rec.time == m.time and rec.info["sdpa_backend"] == m.info["sdpa_backend"]


def _measure_in_child(queue):
    _, step = _step()
    queue.put(measure(step, CPU, MeasureOptions(policy=fast_policy(), memory=False)).model_dump_json())


def test_a_child_process_hands_its_measurement_to_the_parent():
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_measure_in_child, args=(queue,))
    child.start()
    m = Measurement.model_validate_json(queue.get(timeout=120))
    child.join(timeout=60)
    assert child.exitcode == 0
    assert m.time.n >= 6 and m.time.median_s > 0 and m.time.clock == "perf_counter"


def test_a_compiled_step_is_not_counted_and_says_why():
    from xfbench.profilers.measure import Context
    from xfbench.profilers.passes import COMPILED_NOT_COUNTED, FlopCount

    _, step = _step()
    step.info["compile"] = "torch.compile(backend=inductor)"
    part = FlopCount(Context(step, CPU, MeasureOptions(count_flops=True))).result(None)
    assert part.info == {"flops_count_error": COMPILED_NOT_COUNTED} and not part.warnings


def test_a_plan_with_nothing_left_writes_no_empty_segment(tmp_path):
    from xfbench.workloads.runner import run_plan

    path = tmp_path / "results.jsonl"
    assert run_plan([], path, command="attention") == [] and not path.exists()
