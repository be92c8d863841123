"""NVML (nvidia-ml-py) access: start-up with the library's own reason when it fails, text decoding, status.

Every NVML user (the environment header, telemetry) starts the library through init_nvml(),
so the wording of "why there is no NVML" exists once. Nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def nvml_text(x: Any) -> str | None:
    """A string NVML returned: bytes in older nvidia-ml-py releases, str in newer ones."""
    if x is None:
        return None
    return x.decode() if isinstance(x, bytes) else str(x)


def init_nvml() -> tuple[Any, str | None]:
    """Import and initialise NVML: (pynvml, None), or (None, why) in the library's own words.

    Each successful call must be paired with shutdown_nvml() (NVML counts initialisations).
    """
    try:
        import pynvml
    except ImportError as e:
        return None, f"nvidia-ml-py is not installed ({e})"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return None, f"NVML init failed: {e} ({type(e).__name__})"
    except OSError as e:  # a broken driver install can surface as a loader error
        return None, f"NVML init failed: {e}"
    return pynvml, None


def query_failed(e: Exception) -> str:
    """Why a query of an initialised NVML failed, worded the same for every caller."""
    return f"NVML query failed: {e}"


def shutdown_nvml(nv: Any) -> None:
    """Undo one init_nvml(); never fails (shutting down must not fail a sweep)."""
    try:
        nv.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVMLError or a loader error: nothing left to do either way
        pass


@dataclass(frozen=True)
class NvmlStatus:
    usable: bool
    reason: str | None = None
    driver_version: str | None = None
    device_count: int | None = None
    devices: tuple[dict, ...] = ()  # NVML index, name and UUID of every GPU (NVML ignores CUDA_VISIBLE_DEVICES)


def nvml_status() -> NvmlStatus:
    """Initialise NVML once to see if it works; the reason comes from the library itself."""
    nv, why = init_nvml()
    if nv is None:
        return NvmlStatus(False, why)
    try:
        driver = nvml_text(nv.nvmlSystemGetDriverVersion())
        count = nv.nvmlDeviceGetCount()
        devices = []
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            devices.append(
                {"index": i, "name": nvml_text(nv.nvmlDeviceGetName(h)), "uuid": nvml_text(nv.nvmlDeviceGetUUID(h))}
            )
        return NvmlStatus(True, None, driver, count, tuple(devices))
    except nv.NVMLError as e:
        return NvmlStatus(False, query_failed(e))
    finally:
        shutdown_nvml(nv)
