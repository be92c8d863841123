"""NVML telemetry and energy around a measured window: sampling the device, one Window per case.

A background thread samples the case's GPU every SAMPLE_INTERVAL_S while the timed phase
runs; the window is synchronized at both ends. Energy is the delta of NVML's total-energy
counter (nvmlDeviceGetTotalEnergyConsumption, mJ, Volta and newer) over the window: an
NVML measurement of the whole board, labelled as such. Where NVML is absent (no driver,
a CPU device, an unsupported counter, a window too short) every figure is None and a
reason says why -- never a silent 0 J, never an exception. A MIG slice is found among
its parent GPU's MIG devices; it gets the parent's clocks and reasons, the slice's memory,
and no power or energy (the board's is shared by every slice), with the reason.

The hardware boundary is the Sampler protocol (NvmlSampler reads a real device); the
summary of a window is pure and lives in telemetry_agg.py, so tests drive the same
windows and aggregation with a recorded series.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .device import allocated_bytes, reserved_bytes, synchronize
from .nvml import init_nvml, list_gpus, match_device, nvml_text, query_failed, shutdown_nvml
from .telemetry_agg import (
    MIG_ENERGY_REASON,
    MIN_ENERGY_WINDOW_S,
    SAMPLE_INTERVAL_S,
    Sample,
    aggregate,
    decode_reasons,
    null_telemetry,
    split_processes,
)

# How long the optional idle-power baseline samples the idle device.
IDLE_BASELINE_S = 2.0
# Before it, wait for a warm device to cool down: read power every SETTLE_STEP_S until the
# last SETTLE_READINGS readings fell by at most SETTLE_DROP_REL in all (NVML power is an
# average over up to ~1 s, so the readings span more than that), or SETTLE_MAX_S passed.
SETTLE_STEP_S = 0.5
SETTLE_READINGS = 3
SETTLE_DROP_REL = 0.02
SETTLE_MAX_S = 20.0


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


# --- the real device ----------------------------------------------------------------


def _permanent_errors(nv) -> tuple[type, ...]:
    """NVML errors that will not go away by asking again."""
    names = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLError_NoPermission")
    return tuple(getattr(nv, n) for n in names if hasattr(nv, n))


class NvmlSampler:
    """Reads one NVML device handle (and, for a MIG slice, the slice's own handle).

    Args:
        nv: the initialised pynvml module (from init_nvml; open_telemetry does it).
        handle: the GPU's NVML handle (a MIG slice's parent): clocks, reasons, power, temperature.
        slice_handle: a MIG slice's handle, for what NVML reads per slice (memory, processes).
    """

    def __init__(self, nv: Any, handle: Any, slice_handle: Any = None):
        self.nv = nv
        self.handle = handle
        self.slice_handle = slice_handle if slice_handle is not None else handle
        self.unsupported: dict[str, str] = {}

    def _get(self, name: str, fn, *args, handle: Any = None):
        if name in self.unsupported:
            return None
        try:
            return fn(self.handle if handle is None else handle, *args)
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
        mem = self._get("memory", nv.nvmlDeviceGetMemoryInfo, handle=self.slice_handle)
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
        procs = self._get("processes", self.nv.nvmlDeviceGetComputeRunningProcesses, handle=self.slice_handle) or []
        return [(int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory is not None else None) for p in procs]

    def state(self) -> dict[str, Any]:
        nv = self.nv
        limit = self._get("power_limit", nv.nvmlDeviceGetEnforcedPowerLimit)
        persistence = self._get("persistence_mode", nv.nvmlDeviceGetPersistenceMode)
        return {
            "name": nvml_text(self._get("name", nv.nvmlDeviceGetName)),
            "uuid": nvml_text(self._get("uuid", nv.nvmlDeviceGetUUID)),
            "persistence_mode": None if persistence is None else bool(persistence == nv.NVML_FEATURE_ENABLED),
            "power_limit_w": limit / 1e3 if limit is not None else None,
            "sm_clock_max_mhz": self._get("sm_clock_max", nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_SM),
            "mem_clock_max_mhz": self._get("mem_clock_max", nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM),
        }


def torch_identity(device: torch.device) -> tuple[str | None, tuple, str]:
    """(UUID, PCI (domain, bus, device), name) of a CUDA device as torch reports it."""
    props = torch.cuda.get_device_properties(device)
    pci = tuple(getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device"))
    return str(getattr(props, "uuid", "") or "") or None, pci, props.name


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
        mig: the device is a MIG slice (no power or energy of its own).
    """

    def __init__(self, sampler: Sampler, device: torch.device, run=None, *,
                 min_window_s: float = MIN_ENERGY_WINDOW_S, interval_s: float = SAMPLE_INTERVAL_S,
                 meta: dict[str, Any] | None = None, mig: bool = False):
        self.sampler, self.device, self.run = sampler, device, run
        self.meta = dict(meta or {})
        self.min_window_s, self.interval_s, self.mig = min_window_s, interval_s, mig
        self.series: list[Sample] = []
        self.extra_calls = 0
        self.extension_chunks = 0
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
                self._extend()
            synchronize(self.device)
        finally:
            self._stop.set()
            self._thread.join()
        self.end = self.sampler.read()
        self.procs = self.sampler.processes()

    def _extend(self) -> None:
        """Run the step until the window lasts min_window_s: one call first to time it, then chunks
        sized to the time left at the measured per-call time, one synchronize per chunk."""
        synchronize(self.device)
        per_call_s = None
        while (left_s := self.min_window_s - (time.perf_counter() - self.start.t_s)) > 0:
            calls = extension_calls(left_s, per_call_s)
            t0 = time.perf_counter()
            for _ in range(calls):
                self.run()
            synchronize(self.device)
            per_call_s = (time.perf_counter() - t0) / calls
            self.extra_calls += calls
            self.extension_chunks += 1

    def result(self, calls: int, tokens_per_call: float | None, idle_power_w: float | None = None) -> dict[str, Any]:
        """The telemetry dict of this window; `calls` counts the timed calls (extra ones are added)."""
        out = aggregate(
            self.start, self.end, self.series, calls=calls + self.extra_calls, tokens_per_call=tokens_per_call,
            idle_power_w=idle_power_w, unsupported=self.sampler.unsupported, min_window_s=self.min_window_s,
            interval_s=self.interval_s, mig=self.mig,
        )
        own, others, note = split_processes(self.procs, os.getpid())
        out.update(self.meta)
        out["extra_calls"] = self.extra_calls
        out["extension_chunks"] = self.extension_chunks
        out["other_processes"] = others
        out["gpu_memory"] = gpu_memory(self.device, own, self.end.mem_used_bytes, note)
        return out


def extension_calls(left_s: float, per_call_s: float | None) -> int:
    """Calls of the next extension chunk: one while the per-call time is unknown, else enough for `left_s`."""
    return 1 if per_call_s is None or per_call_s <= 0 else max(1, math.ceil(left_s / per_call_s))


def power_settled(watts: list[float]) -> bool:
    """Pure: the last SETTLE_READINGS power readings fell by at most SETTLE_DROP_REL in all."""
    if len(watts) < SETTLE_READINGS:
        return False
    first = watts[-SETTLE_READINGS]
    return first - watts[-1] <= SETTLE_DROP_REL * first


def gpu_memory(
    device: torch.device, nvml_process_bytes: int | None, nvml_device_bytes: int | None, note: str | None = None
) -> dict[str, Any]:
    """The four GPU memory figures side by side, read at the same moment (window end)."""
    return {
        "torch_allocated_bytes": allocated_bytes(device),
        "torch_reserved_bytes": reserved_bytes(device),
        "nvml_process_used_bytes": nvml_process_bytes,
        "nvml_device_used_bytes": nvml_device_bytes,
        "note": note,
    }


class NullWindow:
    """The window of a device without telemetry: runs nothing extra, reports the reason."""

    def __init__(self, reason: str):
        self.reason = reason

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
        nvml_index, device_uuid: which NVML device the torch device maps to (MIG: the parent's
            index and the slice's UUID).
        mig: the device is a MIG slice.
        nv: the pynvml module while this object holds an NVML initialisation (close() ends it).
    """

    device: torch.device
    sampler: Sampler | None = None
    reason: str | None = None
    nvml_index: int | None = None
    device_uuid: str | None = None
    mig: bool = False
    nv: Any = field(default=None, repr=False)
    _limit_w: float | None = field(default=None, repr=False)

    def window(self, run=None, **kw) -> Window | NullWindow:
        if self.sampler is None:
            return NullWindow(self.reason or "no telemetry")
        if self._limit_w is None:
            self._limit_w = self.sampler.state().get("power_limit_w")
        meta = {"nvml_index": self.nvml_index, "device_uuid": self.device_uuid, "power_limit_w": self._limit_w}
        return Window(self.sampler, self.device, run, meta=meta, mig=self.mig, **kw)

    def idle_power(
        self, seconds: float = IDLE_BASELINE_S, *, settle_max_s: float = SETTLE_MAX_S,
        settle_step_s: float = SETTLE_STEP_S,
    ) -> tuple[float | None, str]:
        """Mean board power of the idle device over `seconds` (energy counter if it works), after
        waiting (at most settle_max_s) for a warm device's power to stop falling."""
        if self.sampler is None:
            return None, f"no idle baseline: {self.reason}"
        if self.mig:
            return None, f"no idle baseline: {MIG_ENERGY_REASON}"
        synchronize(self.device)
        settle = self._settle(settle_max_s, settle_step_s)
        with Window(self.sampler, self.device, None, min_window_s=seconds) as w:
            time.sleep(seconds)
        agg = aggregate(w.start, w.end, w.series, calls=0, tokens_per_call=None, min_window_s=seconds * 0.9)
        if agg["energy_j"] is not None:
            return agg["energy_j"] / agg["window_s"], f"{settle}; energy counter over {agg['window_s']:.2f} s idle"
        if agg["power_mean_w"] is not None:
            return agg["power_mean_w"], (
                f"{settle}; mean of {agg['samples']} power readings over {agg['window_s']:.2f} s idle"
            )
        return None, f"no idle baseline: {agg['energy_reason']}"

    def _settle(self, max_s: float, step_s: float) -> str:
        """Read power until it stops falling (power_settled) or max_s passed; says which."""
        watts: list[float] = []
        t0 = time.perf_counter()
        while True:
            mw = self.sampler.read().power_mw
            if mw is None:
                return "power not read, so not waited for to settle"
            watts.append(mw / 1e3)
            span = f"power {watts[0]:.0f} -> {watts[-1]:.0f} W over {len(watts)} readings {step_s:g} s apart"
            if power_settled(watts):
                return f"settled: {span} (the last {SETTLE_READINGS} within {SETTLE_DROP_REL:.0%})"
            if time.perf_counter() - t0 >= max_s:
                return f"not settled within {max_s:g} s: {span}, still falling"
            time.sleep(step_s)

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
            "mig": self.mig,
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
        if self.nv is not None:
            nv, self.nv = self.nv, None
            shutdown_nvml(nv)


def open_telemetry(device: torch.device, enabled: bool = True) -> Telemetry:
    """NVML telemetry for the device a case runs on; unavailable (with the reason) otherwise.

    NVML is initialised for real whatever the device, so the reason names what the library
    itself says (no driver, no library) as well as the device type.
    """
    if not enabled:
        return Telemetry(device, reason="telemetry disabled (--no-telemetry)")
    nv, why = init_nvml()
    if device.type != "cuda":
        if nv is not None:
            shutdown_nvml(nv)
        no_gpu = f"device '{device}' has no NVML telemetry (NVML measures NVIDIA GPUs)"
        return Telemetry(device, reason=f"{no_gpu}; {why}" if why else no_gpu)
    if nv is None:
        return Telemetry(device, reason=why)
    tel = Telemetry(device, nv=nv)
    try:
        match = match_device(*torch_identity(device), list_gpus(nv))
        tel.mig = match.mig
        if match.index is None:
            tel.reason = match.reason
            tel.close()
            return tel
        tel.nvml_index, tel.device_uuid = match.index, match.uuid
        handle = nv.nvmlDeviceGetHandleByIndex(match.index)
        mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, match.mig_index) if match.mig_index is not None else None
        tel.sampler = NvmlSampler(nv, handle, mig)
    except nv.NVMLError as e:
        tel.reason = query_failed(e)
        tel.close()
    return tel
