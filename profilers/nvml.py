"""NVML (nvidia-ml-py) access: whether it is usable and, if not, why. Never raises."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NvmlStatus:
    usable: bool
    reason: str | None = None
    driver_version: str | None = None
    device_count: int | None = None
    devices: tuple[dict, ...] = ()  # NVML index, name and UUID of every GPU (NVML ignores CUDA_VISIBLE_DEVICES)


def nvml_status() -> NvmlStatus:
    """Initialise NVML once to see if it works; the reason comes from the library itself."""
    try:
        import pynvml
    except ImportError as e:
        return NvmlStatus(False, f"nvidia-ml-py is not installed ({e})")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return NvmlStatus(False, f"NVML init failed: {e} ({type(e).__name__})")
    except OSError as e:  # a broken driver install can surface as a loader error
        return NvmlStatus(False, f"NVML init failed: {e}")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        count = pynvml.nvmlDeviceGetCount()
        if isinstance(driver, bytes):
            driver = driver.decode()
        devices = []
        for i in range(count):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name, uuid = pynvml.nvmlDeviceGetName(h), pynvml.nvmlDeviceGetUUID(h)
            devices.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                }
            )
        return NvmlStatus(True, None, driver, count, tuple(devices))
    except pynvml.NVMLError as e:
        return NvmlStatus(False, f"NVML query failed: {e}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
