"""NVML telemetry and energy around a measured window: power, energy, clocks, throttling.

A background thread samples the case's GPU every SAMPLE_INTERVAL_S while the timed phase
runs; the window is synchronized at both ends. Energy is the delta of NVML's total-energy
counter (nvmlDeviceGetTotalEnergyConsumption, mJ, Volta and newer) over the window: an
NVML measurement of the whole board, labelled as such. Where NVML is absent (no driver,
a CPU device, an unsupported counter, a window too short) every figure is None and a
reason says why -- never a silent 0 J, never an exception.

The hardware boundary is the Sampler protocol (NvmlSampler reads a real device); tests
drive the same windows and aggregation with a recorded series.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .device import synchronize

# Background sampling period of power, clocks, reasons, temperature and utilization.
SAMPLE_INTERVAL_S = 0.020
# NVML's power and energy readings refresh every few tens to ~100 ms (GPU and driver
# dependent), so the energy of a window carries up to one refresh of error at each end.
# A window is extended (the step keeps running) until it is at least this long, which
# keeps that error to a few percent; a window that still falls short gets energy=None.
MIN_ENERGY_WINDOW_S = 1.0
# How long the optional idle-power baseline samples the idle device.
IDLE_BASELINE_S = 2.0

# Clocks-event (formerly "throttle") reason bits, nvml.h nvmlClocksEventReason* /
# nvmlClocksThrottleReason* (identical bit values; BoardLimit and Reliability exist only
# in the older ThrottleReasons list).
CLOCKS_EVENT_REASONS = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
# Reasons that mean clocks were held below what the load asked for (power, thermal, or a
# hardware brake). gpu_idle, application clocks, sync boost and display clocks are not.
THROTTLE_REASONS = frozenset(
    {
        "sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
        "hw_power_brake_slowdown", "board_limit", "reliability",
    }
)

ENERGY_METHOD = "NVML total energy counter delta (whole board; nvmlDeviceGetTotalEnergyConsumption)"
POWER_METHOD = "NVML power readings (nvmlDeviceGetPowerUsage) sampled every {:g} ms"


def decode_reasons(mask: int | None) -> list[str]:
    """Names of the set bits of a clocks-event reason mask (unknown bits as hex)."""
    if not mask:
        return []
    names = [name for bit, name in CLOCKS_EVENT_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCKS_EVENT_REASONS)
    if rest:
        names.append(f"unknown_{rest:#x}")
    return names


@dataclass(frozen=True)
class Sample:
    """One reading of the device; None where the query failed or is unsupported."""

    t_s: float  # time.perf_counter() of the reading
    power_mw: float | None = None
    energy_mj: float | None = None  # cumulative since driver load
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    reasons_mask: int | None = None
    temperature_c: float | None = None
    util_gpu_pct: float | None = None
    util_mem_pct: float | None = None
    mem_used_bytes: int | None = None


class Sampler(Protocol):
    """The hardware boundary: one device's readings."""

    unsupported: dict[str, str]  # field -> why it cannot be read

    def read(self) -> Sample: ...

    def processes(self) -> list[tuple[int, int | None]]:
        """(pid, used GPU bytes) of every compute process on the device."""
        ...

    def state(self) -> dict[str, Any]:
        """Static-ish facts: name, uuid, persistence mode, power limit, max clocks."""
        ...


def _mean(xs: list[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def _integrate(points: list[tuple[float, float]]) -> float | None:
    """Trapezoid integral of (t_s, watts) -> joules; None with fewer than two points."""
    if len(points) < 2:
        return None
    return math.fsum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False))


def null_telemetry(reason: str) -> dict[str, Any]:
    """Every telemetry figure None, with the reason (no driver, CPU device, disabled)."""
    out: dict[str, Any] = {key: None for key in TELEMETRY_KEYS}
    out.update(source="nvml", available=False, reason=reason, energy_reason=reason)
    return out


def aggregate(
    start: Sample,
    end: Sample,
    series: list[Sample],
    *,
    calls: int,
    tokens_per_call: float | None,
    idle_power_w: float | None = None,
    unsupported: dict[str, str] | None = None,
    min_window_s: float = MIN_ENERGY_WINDOW_S,
    interval_s: float = SAMPLE_INTERVAL_S,
) -> dict[str, Any]:
    """Summarize one window: `start`/`end` bracket it (after synchronizing), `series` lies between.

    Returns the record's telemetry dict (keys: TELEMETRY_KEYS). Energy comes only from the
    counter delta; `energy_power_integral_j` integrates the power samples as a cross-check.
    """
    unsupported = dict(unsupported or {})
    points = [start, *series, end]
    window_s = end.t_s - start.t_s
    energy_j, why = None, None
    if start.energy_mj is None or end.energy_mj is None:
        why = "energy counter unsupported: " + unsupported.get("energy", "not read")
    elif window_s < min_window_s:
        why = f"window {window_s:.3g} s is shorter than {min_window_s:g} s (the energy counter's resolution)"
    elif end.energy_mj - start.energy_mj <= 0:
        why = f"energy counter did not advance over {window_s:.3g} s"
    else:
        energy_j = (end.energy_mj - start.energy_mj) / 1e3
    tokens = calls * tokens_per_call if tokens_per_call else None

    power_w = [(p.t_s, p.power_mw / 1e3) for p in points if p.power_mw is not None]
    sm = [p.sm_clock_mhz for p in points if p.sm_clock_mhz is not None]
    mem = [p.mem_clock_mhz for p in points if p.mem_clock_mhz is not None]
    masks = [p.reasons_mask for p in points if p.reasons_mask is not None]
    counts: dict[str, int] = {}
    for m in masks:
        for name in decode_reasons(m):
            counts[name] = counts.get(name, 0) + 1
    seen = {name: round(c / len(masks), 4) for name, c in sorted(counts.items())}
    temps = [p.temperature_c for p in points if p.temperature_c is not None]
    used = [p.mem_used_bytes for p in points if p.mem_used_bytes is not None]

    out = null_telemetry("")
    out.update(
        available=True,
        reason=None,
        interval_s=interval_s,
        samples=len(points),
        window_s=window_s,
        calls=calls,
        energy_j=energy_j,
        energy_method=ENERGY_METHOD if energy_j is not None else None,
        energy_reason=why,
        energy_power_integral_j=_integrate(power_w),
        j_per_token=energy_j / tokens if energy_j is not None and tokens else None,
        tokens_per_j=tokens / energy_j if energy_j and tokens else None,
        power_method=POWER_METHOD.format(interval_s * 1e3) if power_w else None,
        power_mean_w=_mean([w for _, w in power_w]),
        power_max_w=max((w for _, w in power_w), default=None),
        sm_clock_min_mhz=min(sm, default=None),
        sm_clock_max_mhz=max(sm, default=None),
        mem_clock_min_mhz=min(mem, default=None),
        temperature_max_c=max(temps, default=None),
        util_gpu_mean_pct=_mean([p.util_gpu_pct for p in points if p.util_gpu_pct is not None]),
        util_mem_mean_pct=_mean([p.util_mem_pct for p in points if p.util_mem_pct is not None]),
        nvml_device_used_max_bytes=max(used, default=None),
        clocks_event_reasons=seen if masks else None,
        throttle_reasons=sorted(r for r in seen if r in THROTTLE_REASONS) if masks else None,
        unsupported=unsupported or None,
    )
    if idle_power_w is not None:
        out["idle_power_w"] = idle_power_w
        if energy_j is not None:
            out["energy_idle_j"] = idle_power_w * window_s
            out["energy_net_j"] = energy_j - out["energy_idle_j"]
            out["j_per_token_net"] = out["energy_net_j"] / tokens if tokens else None
    return out


# Every key of a record's telemetry dict (NOTE: add new keys here and in aggregate()).
TELEMETRY_KEYS = (
    "source", "available", "reason", "device_uuid", "nvml_index", "interval_s", "samples", "window_s",
    "calls", "extra_calls", "energy_j", "energy_method", "energy_reason", "energy_power_integral_j",
    "j_per_token", "tokens_per_j", "idle_power_w", "energy_idle_j", "energy_net_j", "j_per_token_net",
    "power_method", "power_mean_w", "power_max_w", "power_limit_w", "sm_clock_min_mhz", "sm_clock_max_mhz",
    "mem_clock_min_mhz", "temperature_max_c", "util_gpu_mean_pct", "util_mem_mean_pct",
    "clocks_event_reasons", "throttle_reasons", "other_processes", "gpu_memory",
    "nvml_device_used_max_bytes", "unsupported",
)

# Headline figures copied into record.metrics (scalars, for tables and compare).
METRIC_KEYS = (
    "energy_j", "j_per_token", "tokens_per_j", "power_mean_w", "power_max_w", "sm_clock_min_mhz",
    "energy_net_j", "j_per_token_net",
)


def headline_metrics(tel: dict[str, Any]) -> dict[str, Any]:
    """The scalar figures of a telemetry dict for record.metrics (None where absent)."""
    out = {k: tel.get(k) for k in METRIC_KEYS}
    reasons = tel.get("throttle_reasons")
    out["throttle_reasons"] = ",".join(reasons) if reasons else None
    return out


def split_processes(procs: list[tuple[int, int | None]], own_pid: int) -> tuple[int | None, list[dict], str | None]:
    """(this process's NVML bytes, the other processes, a note) from NVML's process list.

    In a container NVML reports host PIDs, so our own PID may be missing: then one entry
    is assumed to be ours and the rest are counted as others, with a note.
    """
    mine = [used for pid, used in procs if pid == own_pid]
    others = [{"pid": pid, "used_bytes": used} for pid, used in procs if pid != own_pid]
    if mine:
        return mine[0], others, None
    if procs:
        return None, others[1:], "own PID not in NVML's process list (PID namespace?); one entry counted as ours"
    return None, [], None


# --- the real device ----------------------------------------------------------------


def _nvml():
    import pynvml

    return pynvml


def _text(x: Any) -> str | None:
    if x is None:
        return None
    return x.decode() if isinstance(x, bytes) else str(x)


def _norm_uuid(u: str | None) -> str | None:
    if not u:
        return None
    u = u.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            u = u[len(prefix):]
    return u


def _permanent_errors(nv) -> tuple[type, ...]:
    """NVML errors that will not go away by asking again."""
    names = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLError_NoPermission")
    return tuple(getattr(nv, n) for n in names if hasattr(nv, n))


class NvmlSampler:
    """Reads one NVML device handle. NVML must be initialised (NvmlTelemetry does it)."""

    def __init__(self, handle: Any):
        self.nv = _nvml()
        self.handle = handle
        self.unsupported: dict[str, str] = {}

    def _get(self, name: str, fn, *args):
        if name in self.unsupported:
            return None
        try:
            return fn(self.handle, *args)
        except self.nv.NVMLError as e:
            # Only a field the device or driver cannot give is dropped for the rest of the sweep;
            # a transient error (timeout, unknown) just misses this one sample.
            if isinstance(e, _permanent_errors(self.nv)):
                self.unsupported[name] = f"{fn.__name__}: {e}"
            return None
        except getattr(self.nv, "NVMLLibraryMismatchError", ()) as e:  # driver lacks this call's version
            self.unsupported[name] = f"{fn.__name__}: {e}"
            return None

    def _reasons(self):
        if "reasons" in self.unsupported:
            return None
        for fn_name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            fn = getattr(self.nv, fn_name, None)
            if fn is None:
                continue
            try:
                return int(fn(self.handle))
            except self.nv.NVMLError as e:  # older drivers lack the newer name
                self.unsupported["reasons"] = f"{fn_name}: {e}"
        return None

    def read(self) -> Sample:
        nv = self.nv
        t = time.perf_counter()
        util = self._get("utilization", nv.nvmlDeviceGetUtilizationRates)
        mem = self._get("memory", nv.nvmlDeviceGetMemoryInfo)
        reasons = self._reasons()
        if reasons is not None:
            self.unsupported.pop("reasons", None)
        return Sample(
            t_s=t,
            power_mw=self._get("power", nv.nvmlDeviceGetPowerUsage),
            energy_mj=self._get("energy", nv.nvmlDeviceGetTotalEnergyConsumption),
            sm_clock_mhz=self._get("sm_clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
            mem_clock_mhz=self._get("mem_clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_MEM),
            reasons_mask=reasons,
            temperature_c=self._get("temperature", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU),
            util_gpu_pct=util.gpu if util is not None else None,
            util_mem_pct=util.memory if util is not None else None,
            mem_used_bytes=int(mem.used) if mem is not None else None,
        )

    def processes(self) -> list[tuple[int, int | None]]:
        procs = self._get("processes", self.nv.nvmlDeviceGetComputeRunningProcesses) or []
        return [(int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory is not None else None) for p in procs]

    def state(self) -> dict[str, Any]:
        nv = self.nv
        limit = self._get("power_limit", nv.nvmlDeviceGetEnforcedPowerLimit)
        persistence = self._get("persistence_mode", nv.nvmlDeviceGetPersistenceMode)
        return {
            "name": _text(self._get("name", nv.nvmlDeviceGetName)),
            "uuid": _text(self._get("uuid", nv.nvmlDeviceGetUUID)),
            "persistence_mode": None if persistence is None else bool(persistence == nv.NVML_FEATURE_ENABLED),
            "power_limit_w": limit / 1e3 if limit is not None else None,
            "sm_clock_max_mhz": self._get("sm_clock_max", nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_SM),
            "mem_clock_max_mhz": self._get("mem_clock_max", nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM),
        }


def nvml_index_for(device: torch.device) -> tuple[int | None, str | None, str | None]:
    """(NVML index, device UUID, why not) of a CUDA device, matched by UUID.

    torch's index counts only CUDA_VISIBLE_DEVICES, in CUDA's order; NVML sees every GPU in
    PCI order. The UUID is the same in both, so match on it; never assume equal indices.
    NVML must be initialised.
    """
    nv = _nvml()
    props = torch.cuda.get_device_properties(device)
    want = _norm_uuid(str(getattr(props, "uuid", "") or ""))
    # Fallback key: PCI (domain, bus, device), which torch and NVML both report.
    pci = tuple(getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device"))
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        uuid = _text(nv.nvmlDeviceGetUUID(h))
        if want and _norm_uuid(uuid) == want:
            return i, uuid, None
        if None not in pci:
            info = nv.nvmlDeviceGetPciInfo(h)
            if (int(info.domain), int(info.bus), int(info.device)) == pci:
                return i, uuid, None
    return None, want, f"device UUID {want} / PCI {pci} not among NVML's devices (a MIG instance?)"


class Window:
    """One sampled window: enter before the timed phase, exit after it.

    Args:
        sampler: the device's readings.
        device: synchronized at both ends.
        run: one more call of the step, used to extend a window shorter than
            `min_window_s`; None: a short window is only flagged.
        min_window_s: energy needs at least this long.
        interval_s: background sampling period.
        meta: static facts copied into the result (NVML index, UUID, power limit).
    """

    def __init__(self, sampler: Sampler, device: torch.device, run=None, *,
                 min_window_s: float = MIN_ENERGY_WINDOW_S, interval_s: float = SAMPLE_INTERVAL_S,
                 meta: dict[str, Any] | None = None):
        self.sampler, self.device, self.run = sampler, device, run
        self.meta = dict(meta or {})
        self.min_window_s, self.interval_s = min_window_s, interval_s
        self.series: list[Sample] = []
        self.extra_calls = 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.series.append(self.sampler.read())

    def __enter__(self) -> Window:
        synchronize(self.device)
        self.start = self.sampler.read()
        self._thread = threading.Thread(target=self._loop, name="xfbench-nvml", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None and self.run is not None:
                synchronize(self.device)
                while time.perf_counter() - self.start.t_s < self.min_window_s:
                    self.run()
                    self.extra_calls += 1
                    synchronize(self.device)
            synchronize(self.device)
        finally:
            self._stop.set()
            self._thread.join()
        self.end = self.sampler.read()
        self.procs = self.sampler.processes()

    def result(self, calls: int, tokens_per_call: float | None, idle_power_w: float | None = None) -> dict[str, Any]:
        """The telemetry dict of this window; `calls` counts the timed calls (extra ones are added)."""
        out = aggregate(
            self.start, self.end, self.series, calls=calls + self.extra_calls, tokens_per_call=tokens_per_call,
            idle_power_w=idle_power_w, unsupported=self.sampler.unsupported, min_window_s=self.min_window_s,
            interval_s=self.interval_s,
        )
        own, others, note = split_processes(self.procs, os.getpid())
        out.update(self.meta)
        out["extra_calls"] = self.extra_calls
        out["other_processes"] = others
        out["gpu_memory"] = gpu_memory(self.device, own, self.end.mem_used_bytes, note)
        return out


def gpu_memory(
    device: torch.device, nvml_process_bytes: int | None, nvml_device_bytes: int | None, note: str | None = None
) -> dict[str, Any]:
    """The four GPU memory figures side by side, read at the same moment (window end)."""
    cuda = device.type == "cuda"
    return {
        "torch_allocated_bytes": torch.cuda.memory_allocated(device) if cuda else None,
        "torch_reserved_bytes": torch.cuda.memory_reserved(device) if cuda else None,
        "nvml_process_used_bytes": nvml_process_bytes,
        "nvml_device_used_bytes": nvml_device_bytes,
        "note": note,
    }


class NullWindow:
    """The window of a device without telemetry: runs nothing extra, reports the reason."""

    def __init__(self, reason: str):
        self.reason = reason
        self.extra_calls = 0

    def __enter__(self) -> NullWindow:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def result(self, calls: int, tokens_per_call: float | None, idle_power_w: float | None = None) -> dict[str, Any]:
        return null_telemetry(self.reason)


@dataclass
class Telemetry:
    """Telemetry of one device for a whole sweep: open once, a Window per case, close.

    Args:
        device: the case's device.
        sampler: None when telemetry is unavailable; `reason` then says why.
        reason: why there is no telemetry.
        nvml_index, device_uuid: which NVML device the torch device maps to.
    """

    device: torch.device
    sampler: Sampler | None = None
    reason: str | None = None
    nvml_index: int | None = None
    device_uuid: str | None = None
    _owns_nvml: bool = field(default=False, repr=False)
    _limit_w: float | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        return self.sampler is not None

    def window(self, run=None, **kw) -> Window | NullWindow:
        if self.sampler is None:
            return NullWindow(self.reason or "no telemetry")
        if self._limit_w is None:
            self._limit_w = self.sampler.state().get("power_limit_w")
        meta = {"nvml_index": self.nvml_index, "device_uuid": self.device_uuid, "power_limit_w": self._limit_w}
        return Window(self.sampler, self.device, run, meta=meta, **kw)

    def idle_power(self, seconds: float = IDLE_BASELINE_S) -> tuple[float | None, str]:
        """Mean board power of the idle device over `seconds` (energy counter if it works)."""
        if self.sampler is None:
            return None, f"no idle baseline: {self.reason}"
        synchronize(self.device)
        with Window(self.sampler, self.device, None, min_window_s=seconds) as w:
            time.sleep(seconds)
        agg = aggregate(w.start, w.end, w.series, calls=0, tokens_per_call=None, min_window_s=seconds * 0.9)
        if agg["energy_j"] is not None:
            return agg["energy_j"] / agg["window_s"], f"energy counter over {agg['window_s']:.2f} s idle"
        if agg["power_mean_w"] is not None:
            return agg["power_mean_w"], f"mean of {agg['samples']} power readings over {agg['window_s']:.2f} s idle"
        return None, f"no idle baseline: {agg['energy_reason']}"

    def state(self) -> dict[str, Any]:
        """Device facts for `doctor` and the environment header; reason when unavailable."""
        if self.sampler is None:
            return {"available": False, "reason": self.reason}
        s = self.sampler.read()
        own, others, note = split_processes(self.sampler.processes(), os.getpid())
        return {
            "available": True,
            "reason": None,
            "nvml_index": self.nvml_index,
            **self.sampler.state(),
            "sm_clock_mhz": s.sm_clock_mhz,
            "mem_clock_mhz": s.mem_clock_mhz,
            "power_w": s.power_mw / 1e3 if s.power_mw is not None else None,
            "temperature_c": s.temperature_c,
            "clocks_event_reasons": decode_reasons(s.reasons_mask),
            "other_processes": others,
            "processes_note": note,
            "unsupported": dict(self.sampler.unsupported) or None,
        }

    def close(self) -> None:
        if self._owns_nvml:
            self._owns_nvml = False
            try:
                _nvml().nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down must never fail a sweep
                pass


def open_telemetry(device: torch.device, enabled: bool = True) -> Telemetry:
    """NVML telemetry for the device a case runs on; unavailable (with the reason) otherwise.

    NVML is initialised for real whatever the device, so the reason names what the library
    itself says (no driver, no library) as well as the device type.
    """
    if not enabled:
        return Telemetry(device, reason="telemetry disabled (--no-telemetry)")
    try:
        nv = _nvml()
    except ImportError as e:
        return Telemetry(device, reason=f"nvidia-ml-py is not installed ({e})")
    try:
        nv.nvmlInit()
    except nv.NVMLError as e:
        why = f"NVML init failed: {e} ({type(e).__name__})"
        if device.type != "cuda":
            why = f"device '{device}' has no NVML telemetry (NVML measures NVIDIA GPUs); {why}"
        return Telemetry(device, reason=why)
    except OSError as e:
        return Telemetry(device, reason=f"NVML init failed: {e}")
    tel = Telemetry(device, _owns_nvml=True)
    if device.type != "cuda":
        tel.reason = f"device '{device}' has no NVML telemetry (NVML measures NVIDIA GPUs)"
        tel.close()
        return tel
    try:
        index, uuid, why = nvml_index_for(device)
        if index is None:
            tel.reason = why
            tel.close()
            return tel
        tel.nvml_index, tel.device_uuid = index, uuid
        tel.sampler = NvmlSampler(nv.nvmlDeviceGetHandleByIndex(index))
    except nv.NVMLError as e:
        tel.reason = f"NVML query failed: {e}"
        tel.close()
    return tel
