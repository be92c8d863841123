"""NVML telemetry: decoding and aggregation of a recorded series (telemetry_agg, literal data), the
real no-driver path, MIG matching and labelling, the window extension and the idle baseline, the
device helpers, and measure()'s telemetry. The only fake is a Sampler at the hardware boundary."""

import json
import os
import threading
import time

import pytest
import torch

from xfbench.profilers.device import allocated_bytes, release_cached_memory, reserved_bytes, use_device
from xfbench.profilers.measure import MeasureOptions, measure
from xfbench.profilers.nvml import NvmlGpu, NvmlMatch, init_nvml, match_device, nvml_status, nvml_text, shutdown_nvml
from xfbench.profilers.specs import MIG_NO_SPEC, lookup_spec, spec_for
from xfbench.profilers.telemetry import (
    NullWindow,
    Telemetry,
    Window,
    extension_calls,
    open_telemetry,
    power_settled,
)
from xfbench.profilers.telemetry_agg import (
    MIG_ENERGY_REASON,
    SCOPE_GPU,
    SCOPE_MIG,
    TELEMETRY_KEYS,
    Sample,
    aggregate,
    decode_reasons,
    headline_metrics,
    null_telemetry,
    split_processes,
)
from xfbench.profilers.warnings import MeasurementWarning, window_warnings
from xfbench.workloads.attention import AttentionConfig, cases, prepare
from xfbench.workloads.runner import RunOptions, run_cases

from .conftest import fast_policy

CPU = torch.device("cpu")
FAST = fast_policy(warmup_max_s=0.1)

# A recorded 1.2 s window at 0.3 s spacing (values as NVML reports them: mW, mJ, MHz, bitmask).
START = Sample(t_s=100.0, power_mw=250_000, energy_mj=5_000_000, sm_clock_mhz=1980, mem_clock_mhz=2619,
               reasons_mask=0x1, temperature_c=40, util_gpu_pct=0, util_mem_pct=0, mem_used_bytes=2 * 2**30)
SERIES = [
    Sample(100.3, 690_000, None, 1755, 2619, 0x4, 61, 100, 80, 10 * 2**30),
    Sample(100.6, 700_000, None, 1710, 2619, 0x4 | 0x20, 66, 100, 82, 10 * 2**30),
    Sample(100.9, 680_000, None, 1740, 2619, 0x0, 68, 99, 81, 10 * 2**30),
]
END = Sample(101.2, 300_000, 5_720_000, 1980, 2619, 0x1, 65, 10, 5, 10 * 2**30)


def test_decode_reasons():
    assert decode_reasons(0) == [] and decode_reasons(None) == []
    assert decode_reasons(0x1 | 0x4) == ["gpu_idle", "sw_power_cap"]
    assert decode_reasons(0x40 | 0x80) == ["hw_thermal_slowdown", "hw_power_brake_slowdown"]
    assert decode_reasons(0x800 | 0x8) == ["hw_slowdown", "unknown_0x800"]


def test_aggregate_a_recorded_series():
    t = aggregate(START, END, SERIES, calls=90, tokens_per_call=4096, idle_power_w=60.0, interval_s=0.3)
    assert t["window_s"] == pytest.approx(1.2) and t["samples"] == 5 and t["calls"] == 90
    assert t["energy_j"] == pytest.approx(720.0)  # (5_720_000 - 5_000_000) mJ
    assert "NVML total energy counter" in t["energy_method"] and t["energy_reason"] is None
    assert t["j_per_token"] == pytest.approx(720.0 / (90 * 4096))
    assert t["tokens_per_j"] == pytest.approx(90 * 4096 / 720.0)
    assert t["power_mean_w"] == pytest.approx((250 + 690 + 700 + 680 + 300) / 5)
    assert t["power_max_w"] == pytest.approx(700.0)
    # trapezoid over 0.3 s steps: 0.3 * (250+690 + 690+700 + 700+680 + 680+300) / 2
    assert t["energy_power_integral_j"] == pytest.approx(0.15 * (940 + 1390 + 1380 + 980))
    assert t["sm_clock_min_mhz"] == 1710 and t["sm_clock_max_mhz"] == 1980 and t["mem_clock_min_mhz"] == 2619
    assert t["temperature_max_c"] == 68
    assert t["util_gpu_mean_pct"] == pytest.approx((0 + 100 + 100 + 99 + 10) / 5)
    assert t["clocks_event_reasons"] == {"gpu_idle": 0.4, "sw_power_cap": 0.4, "sw_thermal_slowdown": 0.2}
    assert t["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert t["nvml_device_used_max_bytes"] == 10 * 2**30 and t["scope"] == SCOPE_GPU
    assert t["idle_power_w"] == 60.0 and t["energy_idle_j"] == pytest.approx(72.0)
    assert t["energy_net_j"] == pytest.approx(648.0)
    assert t["j_per_token_net"] == pytest.approx(648.0 / (90 * 4096))
    assert set(t) == set(TELEMETRY_KEYS)
    head = headline_metrics(t)
    assert head["energy_j"] == pytest.approx(720.0) and head["throttle_reasons"] == "sw_power_cap,sw_thermal_slowdown"


def test_short_window_unsupported_and_stuck_counters_give_none_with_a_reason():
    short = aggregate(START, Sample(100.2, 700_000, 5_100_000), [], calls=10, tokens_per_call=1)
    assert short["energy_j"] is None and "shorter than 1 s" in short["energy_reason"]
    assert short["power_mean_w"] == pytest.approx(475.0)  # power is still reported
    no_counter = aggregate(
        Sample(0.0, 100_000), Sample(2.0, 100_000), [], calls=1, tokens_per_call=1,
        unsupported={"energy": "nvmlDeviceGetTotalEnergyConsumption: Not Supported"},
    )
    assert no_counter["energy_j"] is None and "Not Supported" in no_counter["energy_reason"]
    assert no_counter["j_per_token"] is None and no_counter["tokens_per_j"] is None
    stuck = aggregate(Sample(0.0, energy_mj=10.0), Sample(2.0, energy_mj=10.0), [], calls=1, tokens_per_call=1)
    assert stuck["energy_j"] is None and "did not advance" in stuck["energy_reason"]


def test_split_processes():
    me = os.getpid()
    assert split_processes([(me, 100), (42, 7)], me) == (100, [{"pid": 42, "used_bytes": 7}], None)
    own, others, note = split_processes([(1001, 100), (1002, 7)], me)  # host PIDs in a container
    assert own is None and others == [{"pid": 1002, "used_bytes": 7}] and "PID namespace" in note
    assert split_processes([], me) == (None, [], None)


def test_no_driver_path_with_the_real_library():
    tel = open_telemetry(CPU)
    assert tel.sampler is None and "has no NVML telemetry" in tel.reason
    if not nvml_status().usable:  # this machine: no NVIDIA driver, the library says why
        assert "NVML" in tel.reason and "init failed" in tel.reason
    with tel.window(run=lambda: None) as w:
        pass
    out = w.result(calls=5, tokens_per_call=10)
    assert set(out) == set(TELEMETRY_KEYS) and out["available"] is False
    assert all(out[k] is None for k in ("energy_j", "j_per_token", "power_mean_w", "sm_clock_min_mhz"))
    assert out["reason"] == out["energy_reason"] == tel.reason
    watts, why = tel.idle_power(0.01)
    assert watts is None and tel.reason in why
    assert tel.state() == {"available": False, "reason": tel.reason}
    tel.close()
    assert open_telemetry(CPU, enabled=False).sampler is None


def test_nvml_start_up_has_one_wording():
    nv, why = init_nvml()
    if nv is not None:  # a machine with a working driver: nothing to compare
        shutdown_nvml(nv)
        pytest.skip("NVML works here")
    status = nvml_status()
    assert not status.usable and status.reason == why and ("NVML init failed" in why or "not installed" in why)
    # a CUDA device asked for by name gets the library's own words, not a second phrasing
    assert open_telemetry(torch.device("cuda:0")).reason == why
    assert open_telemetry(CPU).reason.endswith(f"; {why}")


def test_nvml_text_decodes_bytes_and_str():
    assert nvml_text(b"GPU-1234") == nvml_text("GPU-1234") == "GPU-1234"
    assert nvml_text(None) is None and nvml_text(535) == "535"


def test_device_helpers_are_no_ops_on_cpu():
    use_device(CPU)
    release_cached_memory(CPU)
    assert reserved_bytes(CPU) is None and allocated_bytes(CPU) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_helpers_on_cuda():
    dev = torch.device("cuda", torch.cuda.device_count() - 1)
    use_device(dev)
    assert torch.cuda.current_device() == dev.index
    x = torch.empty(2**20, device=dev)
    assert reserved_bytes(dev) >= allocated_bytes(dev) >= x.nbytes
    del x
    cached = reserved_bytes(dev)
    release_cached_memory(dev)
    assert reserved_bytes(dev) <= cached  # the freed block may share a segment with live tensors


def test_null_telemetry_never_says_zero():
    out = null_telemetry("why")
    assert out["energy_j"] is None and out["reason"] == "why" and json.dumps(out)


class RecordedSampler:
    """The hardware boundary replaced by a recorded series: real clock, replayed NVML values."""

    def __init__(self, series, processes=()):
        self.series, self.procs, self.i = series, list(processes), 0
        self.energy_mj = 1_000_000.0
        self.last_t = None
        self.unsupported = {}

    def read(self) -> Sample:
        s = self.series[self.i % len(self.series)]
        self.i += 1
        t = time.perf_counter()
        if self.last_t is not None:  # the counter integrates the replayed power
            self.energy_mj += s.power_mw * (t - self.last_t)
        self.last_t = t
        return Sample(t, s.power_mw, self.energy_mj, s.sm_clock_mhz, s.mem_clock_mhz, s.reasons_mask,
                      s.temperature_c, s.util_gpu_pct, s.util_mem_pct, s.mem_used_bytes)

    def processes(self):
        return self.procs

    def state(self):
        return {"power_limit_w": 700.0, "persistence_mode": True}


class BackgroundSignallingSampler(RecordedSampler):
    """Sets `background` once a thread other than the one that made it reads a sample."""

    def __init__(self, series):
        super().__init__(series)
        self.owner, self.background = threading.get_ident(), threading.Event()

    def read(self) -> Sample:
        if threading.get_ident() != self.owner:
            self.background.set()
        return super().read()


def test_window_samples_in_the_background_and_extends_a_short_window():
    calls = []
    sampler = BackgroundSignallingSampler([START, *SERIES, END])

    def run():  # an extra call of the step; the first one waits for a background reading
        calls.append(1)
        sampler.background.wait(10)
        time.sleep(0.001)

    with Window(sampler, CPU, run=run, min_window_s=0.15, interval_s=0.01) as w:
        pass  # the timed phase took no time at all: the window must be extended
    out = w.result(calls=3, tokens_per_call=100)
    assert out["window_s"] >= 0.15 and out["extra_calls"] == len(calls) > 0 and out["calls"] == 3 + len(calls)
    # one timed call, then chunks sized from its time: far fewer synchronizes than calls
    assert 2 <= out["extension_chunks"] < out["extra_calls"]
    assert sampler.background.is_set()
    assert out["samples"] >= 3  # start, end and at least one background reading (run() waited for it)
    assert out["energy_j"] > 0 and out["energy_reason"] is None
    assert out["energy_j"] == pytest.approx(out["power_mean_w"] * out["window_s"], rel=0.5)
    assert out["gpu_memory"]["nvml_device_used_bytes"] == w.end.mem_used_bytes > 0
    assert out["gpu_memory"]["torch_allocated_bytes"] is None  # a CPU device has no CUDA allocator


def test_window_without_run_flags_a_short_window():
    with Window(RecordedSampler([START]), CPU, run=None, min_window_s=10.0, interval_s=0.01) as w:
        pass
    out = w.result(calls=1, tokens_per_call=1)
    assert out["energy_j"] is None and "shorter than 10 s" in out["energy_reason"]


def _tiny_step():
    (case,) = cases(AttentionConfig(seq_lens=[32], impls=["sdpa"], heads=2, head_dim=16), CPU)
    return case, prepare(case, CPU)


def test_measure_records_fake_device_telemetry_and_its_warnings():
    case, step = _tiny_step()
    sampler = RecordedSampler(SERIES, processes=[(os.getpid(), 2**20), (4242, 2**30)])
    opts = MeasureOptions(
        policy=FAST, memory=False, telemetry=Telemetry(CPU, sampler=sampler), idle_power_w=50.0, idle_method="test"
    )
    m = measure(step, CPU, opts)
    t = m.telemetry
    assert t["available"] and t["window_s"] >= 1.0  # extended to MIN_ENERGY_WINDOW_S (if it was shorter)
    assert t["calls"] == m.time.n * m.time.calls_per_sample + t["extra_calls"]
    assert m.metrics["energy_j"] > 0 and m.metrics["j_per_token"] > 0 and m.metrics["power_max_w"] == 700.0
    assert m.metrics["throttle_reasons"] == "sw_power_cap,sw_thermal_slowdown"
    assert t["other_processes"] == [{"pid": 4242, "used_bytes": 2**30}]
    assert t["gpu_memory"]["nvml_process_used_bytes"] == 2**20
    assert t["idle_power_w"] == 50.0 and t["energy_net_j"] < t["energy_j"] and t["idle_method"] == "test"
    assert MeasurementWarning.THROTTLED in m.warnings  # sw_thermal_slowdown
    assert MeasurementWarning.OTHER_GPU_PROCESSES in m.warnings


def test_cpu_records_carry_null_energy_with_the_nvml_reason():
    case, _ = _tiny_step()
    (rec,) = run_cases([case], lambda r: None, RunOptions(policy=FAST, measure_memory=False, calibrate=False))
    assert rec.status == "ok"
    for key in ("energy_j", "j_per_token", "tokens_per_j", "power_mean_w", "power_max_w", "sm_clock_min_mhz"):
        assert key in rec.metrics and rec.metrics[key] is None
    assert rec.telemetry["available"] is False and "NVML" in rec.telemetry["energy_reason"]
    assert rec.telemetry["usable_cores"] >= 1 and "cpu_other_busy_cores" in rec.telemetry
    assert isinstance(NullWindow("x").result(1, 1), dict)


# --- clocks-event reasons: a power cap is recorded, only slowdowns warn ---------------------

def _reasons_window(mask: int) -> dict:
    """A recorded 1.2 s window of a large GEMM at the board's power limit, every reading with `mask`."""
    at_limit = [Sample(100.0 + 0.3 * i, 700_000, 5_000_000 + 210_000 * i, 1650, 2619, mask) for i in range(5)]
    return aggregate(at_limit[0], at_limit[-1], at_limit[1:-1], calls=10, tokens_per_call=1)


def _warns(tel: dict) -> list:
    return window_warnings(
        throttle_reasons=tel["throttle_reasons"], other_gpu_processes=None, other_busy_cores=None,
        demand_cores=1, usable_cores=4,
    )


def test_power_capping_at_the_limit_is_recorded_but_does_not_warn():
    capped = _reasons_window(0x4)
    assert capped["clocks_event_reasons"] == {"sw_power_cap": 1.0}
    assert capped["throttle_reasons"] == ["sw_power_cap"]
    assert headline_metrics(capped)["throttle_reasons"] == "sw_power_cap"
    assert _warns(capped) == []
    for mask, name in [(0x8, "hw_slowdown"), (0x20, "sw_thermal_slowdown"), (0x40, "hw_thermal_slowdown"),
                       (0x80, "hw_power_brake_slowdown")]:
        hot = _reasons_window(0x4 | mask)
        assert hot["throttle_reasons"] == sorted(["sw_power_cap", name])
        assert _warns(hot) == [MeasurementWarning.THROTTLED], name


# --- MIG ----------------------------------------------------------------------------------

PARENT = "GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f"
SLICE = "MIG-7e2b1f0a-1c3d-5e6f-8a9b-0c1d2e3f4a5b"
GPUS = [
    NvmlGpu(0, "GPU-11111111-2222-3333-4444-555555555555", (0, 0x17, 0)),
    NvmlGpu(1, PARENT, (0, 0x65, 0), mig_enabled=True, mig_uuids=(None, SLICE)),
]


def test_a_torch_device_matches_its_nvml_gpu_or_mig_slice():
    # torch reports UUIDs without NVML's GPU-/MIG- prefix
    whole = match_device("11111111-2222-3333-4444-555555555555", (0, 0x17, 0), "NVIDIA H100 80GB HBM3", GPUS)
    assert whole == NvmlMatch(0, "GPU-11111111-2222-3333-4444-555555555555")
    by_uuid = match_device(SLICE.removeprefix("MIG-"), (0, 0x65, 0), "NVIDIA H100 80GB HBM3 MIG 1g.10gb", GPUS)
    assert by_uuid == NvmlMatch(1, SLICE, mig=True, mig_index=1)
    # an older driver's MIG UUID that torch's does not match: the parent's PCI address, MIG mode on
    by_pci = match_device("0b0e5e3a-aaaa-bbbb-cccc-000000000000", (0, 0x65, 0), "NVIDIA H100 80GB HBM3", GPUS)
    assert by_pci.index == 1 and by_pci.mig and by_pci.mig_index is None
    missing = match_device("deadbeef", (1, 2, 3), "NVIDIA A100-SXM4-40GB MIG 1g.5gb", GPUS)
    assert missing.index is None and missing.mig and "not among NVML's devices" in missing.reason


def test_a_mig_slice_has_no_spec_peak_and_no_energy_of_its_own():
    assert spec_for("NVIDIA A100-SXM4-40GB MIG 1g.5gb") == (None, MIG_NO_SPEC)
    assert spec_for("NVIDIA H100 80GB HBM3", mig=True) == (None, MIG_NO_SPEC)
    assert spec_for("NVIDIA H100 80GB HBM3").spec.name == "NVIDIA H100 SXM"
    assert lookup_spec("NVIDIA A100-SXM4-40GB MIG 1g.5gb") is None  # used to match the whole A100
    t = aggregate(START, END, SERIES, calls=90, tokens_per_call=4096, idle_power_w=60.0, mig=True)
    assert t["scope"] == SCOPE_MIG and t["energy_reason"] == MIG_ENERGY_REASON
    for key in ("energy_j", "j_per_token", "tokens_per_j", "power_mean_w", "power_max_w", "energy_power_integral_j",
                "idle_power_w", "energy_net_j", "power_method", "energy_method"):
        assert t[key] is None, key
    assert t["sm_clock_min_mhz"] == 1710 and t["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    tel = Telemetry(CPU, sampler=RecordedSampler(SERIES), mig=True)
    with tel.window() as w:
        pass
    assert w.result(calls=1, tokens_per_call=1)["scope"] == SCOPE_MIG
    assert tel.idle_power(0.01) == (None, f"no idle baseline: {MIG_ENERGY_REASON}")


# --- window extension and idle baseline ---------------------------------------------------

def test_extension_chunks_are_sized_from_the_measured_call():
    assert extension_calls(0.9, None) == 1  # the first call is timed alone
    assert extension_calls(0.9, 0.002) == 450
    assert extension_calls(0.0001, 0.002) == 1
    assert extension_calls(0.9, 0.0) == 1


def test_power_has_settled_when_the_last_readings_stop_falling():
    assert not power_settled([300.0, 200.0])  # too few readings
    assert not power_settled([150.0, 120.0, 110.0])
    assert power_settled([108.0, 107.5, 107.4])  # 0.56% over the last three
    assert power_settled([100.0, 101.0, 100.5])  # noise, not a fall
    assert not power_settled([110.0, 108.0, 107.5])  # 2.3%


def test_idle_baseline_waits_for_a_hot_device_to_settle_and_says_so():
    cooling = [Sample(0.0, mw) for mw in (300_000, 200_000, 150_000, 120_000, 110_000, 108_000, 107_500, 107_400)]
    tel = Telemetry(CPU, sampler=RecordedSampler(cooling + [Sample(0.0, 107_400)] * 50))
    watts, how = tel.idle_power(0.05, settle_step_s=0.0)
    assert how.startswith("settled: power 300 -> 107 W over 8 readings 0 s apart (the last 3 within 2%); ")
    assert "energy counter over" in how and watts == pytest.approx(107.4, rel=0.05)
    hot = Telemetry(CPU, sampler=RecordedSampler(cooling))
    _, how = hot.idle_power(0.05, settle_max_s=0.0, settle_step_s=0.0)
    assert how.startswith("not settled within 0 s: power 300 -> 300 W over 1 readings")
