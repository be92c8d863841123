"""NVML telemetry and energy around a measured window: sampling the device, one Window per case.

A background thread samples the case's GPU every SAMPLE_INTERVAL_S while the timed phase
runs; the window is synchronized at both ends. Energy is the delta of NVML's total-energy
counter (nvmlDeviceGetTotalEnergyConsumption, mJ, Volta and newer) over the window: an
NVML measurement of the whole board, labelled as such. Where NVML is absent (no driver,
a CPU device, an unsupported counter, a window too short) every figure is None and a
reason says why -- never a silent 0 J, never an exception.

The hardware boundary is the Sampler protocol (NvmlSampler reads a real device); the
summary of a window is pure and lives in telemetry_agg.py, so tests drive the same
windows and aggregation with a recorded series.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .device import allocated_bytes, reserved_bytes, synchronize
from .nvml import init_nvml, nvml_text, query_failed, shutdown_nvml
from .telemetry_agg import (
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
    """Reads one NVML device handle.

    Args:
        nv: the initialised pynvml module (from init_nvml; open_telemetry does it).
        handle: the device's NVML handle.
    """

    def __init__(self, nv: Any, handle: Any):
        self.nv = nv
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
            "name": nvml_text(self._get("name", nv.nvmlDeviceGetName)),
            "uuid": nvml_text(self._get("uuid", nv.nvmlDeviceGetUUID)),
            "persistence_mode": None if persistence is None else bool(persistence == nv.NVML_FEATURE_ENABLED),
            "power_limit_w": limit / 1e3 if limit is not None else None,
            "sm_clock_max_mhz": self._get("sm_clock_max", nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_SM),
            "mem_clock_max_mhz": self._get("mem_clock_max", nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM),
        }


def nvml_index_for(nv: Any, device: torch.device) -> tuple[int | None, str | None, str | None]:
    """(NVML index, device UUID, why not) of a CUDA device, matched by UUID.

    torch's index counts only CUDA_VISIBLE_DEVICES, in CUDA's order; NVML sees every GPU in
    PCI order. The UUID is the same in both, so match on it; never assume equal indices.
    `nv` is the initialised pynvml module.
    """
    props = torch.cuda.get_device_properties(device)
    want = _norm_uuid(str(getattr(props, "uuid", "") or ""))
    # Fallback key: PCI (domain, bus, device), which torch and NVML both report.
    pci = tuple(getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device"))
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        uuid = nvml_text(nv.nvmlDeviceGetUUID(h))
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
        nv: the pynvml module while this object holds an NVML initialisation (close() ends it).
    """

    device: torch.device
    sampler: Sampler | None = None
    reason: str | None = None
    nvml_index: int | None = None
    device_uuid: str | None = None
    nv: Any = field(default=None, repr=False)
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
        index, uuid, why = nvml_index_for(nv, device)
        if index is None:
            tel.reason = why
            tel.close()
            return tel
        tel.nvml_index, tel.device_uuid = index, uuid
        tel.sampler = NvmlSampler(nv, nv.nvmlDeviceGetHandleByIndex(index))
    except nv.NVMLError as e:
        tel.reason = query_failed(e)
        tel.close()
    return tel
