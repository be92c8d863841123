"""NVML (nvidia-ml-py) access: start-up with the library's own reason when it fails, text decoding,
status, and which NVML device (GPU or MIG slice) a CUDA device is.

Every NVML user (the environment header, telemetry) starts the library through init_nvml(),
so the wording of "why there is no NVML" exists once. Nothing here raises but list_gpus()
(NVMLError, which its caller turns into a reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .specs import is_mig_name


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


def _norm_uuid(u: str | None) -> str | None:
    if not u:
        return None
    u = u.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            u = u[len(prefix):]
    return u


@dataclass(frozen=True)
class NvmlGpu:
    """One physical GPU as NVML lists it.

    Args:
        index: NVML's index (PCI order; NVML ignores CUDA_VISIBLE_DEVICES).
        uuid: 'GPU-...'.
        pci: (domain, bus, device).
        mig_enabled: MIG mode is on: CUDA then sees only its slices, never the GPU itself.
        mig_uuids: UUID of each MIG device index ('MIG-...'; None for an empty slot).
    """

    index: int
    uuid: str | None
    pci: tuple[int, int, int] | None = None
    mig_enabled: bool = False
    mig_uuids: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class NvmlMatch:
    """Which NVML device a torch device is; index None (with the reason) when none is.

    Args:
        index: NVML index of the GPU (a MIG slice: of its parent).
        uuid: the torch device's UUID as NVML spells it.
        mig: the torch device is a MIG slice.
        mig_index: its MIG device index under the parent, when its UUID was found there.
        reason: why no NVML device matched.
    """

    index: int | None
    uuid: str | None
    mig: bool = False
    mig_index: int | None = None
    reason: str | None = None


def match_device(
    uuid: str | None, pci: tuple | None, name: str | None, gpus: list[NvmlGpu]
) -> NvmlMatch:
    """Pure: the NVML device of a torch device, by UUID (GPUs and their MIG slices), else by PCI.

    torch's index counts only CUDA_VISIBLE_DEVICES, in CUDA's order; NVML sees every GPU in
    PCI order. The UUID is the same in both (a MIG slice's is 'MIG-<uuid>' in NVML), so match
    on it; never assume equal indices. A MIG slice shares its parent's PCI address, so a PCI
    match on a MIG-enabled GPU is one of its slices; a MIG name ('... MIG 1g.10gb') says so too.
    """
    want = _norm_uuid(uuid)
    named_mig = is_mig_name(name)
    for g in gpus:
        if want and _norm_uuid(g.uuid) == want:
            return NvmlMatch(g.index, g.uuid, mig=named_mig)
        for j, mig_uuid in enumerate(g.mig_uuids):
            if want and _norm_uuid(mig_uuid) == want:
                return NvmlMatch(g.index, mig_uuid, mig=True, mig_index=j)
    if pci is not None and None not in pci:
        for g in gpus:
            if g.pci == tuple(pci):
                mig = g.mig_enabled or named_mig
                return NvmlMatch(g.index, uuid if mig else g.uuid, mig=mig)
    return NvmlMatch(None, uuid, mig=named_mig, reason=f"device UUID {want} / PCI {pci} not among NVML's devices")


def _mig_enabled(nv: Any, handle: Any) -> bool:
    try:
        return nv.nvmlDeviceGetMigMode(handle)[0] == nv.NVML_DEVICE_MIG_ENABLE
    except (nv.NVMLError, AttributeError):  # a GPU without MIG (NotSupported), or an older nvidia-ml-py
        return False


def _mig_uuid(nv: Any, handle: Any, j: int) -> str | None:
    try:
        return nvml_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)))
    except nv.NVMLError:  # NotFound: no MIG device at this index
        return None


def list_gpus(nv: Any) -> list[NvmlGpu]:
    """Every GPU NVML sees, with its MIG devices (`nv` is the initialised pynvml module)."""
    out = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        pci = nv.nvmlDeviceGetPciInfo(h)
        mig = _mig_enabled(nv, h)
        slices = tuple(_mig_uuid(nv, h, j) for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(h))) if mig else ()
        out.append(NvmlGpu(i, nvml_text(nv.nvmlDeviceGetUUID(h)), (int(pci.domain), int(pci.bus), int(pci.device)),
                           mig, slices))
    return out
