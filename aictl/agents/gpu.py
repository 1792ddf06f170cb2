"""GPU memory, for deciding whether a local model (ollama) fits before routing a task to it.

NVML (package nvidia-ml-py, module `pynvml`) is imported only when asked; a
machine without the library, the driver or a GPU gets a reason, not an exception.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GpuReport(BaseModel):
    gpus: list[dict[str, Any]] = Field(default_factory=list)  # {index, name, total_mb, free_mb}
    reason: str | None = None  # why there is none, when gpus is empty

    @property
    def present(self) -> bool:
        return bool(self.gpus)


def gpu_info() -> GpuReport:
    """The GPUs NVML sees, with total and free memory in MB; never raises."""
    try:
        import pynvml
    except ImportError as e:
        return GpuReport(reason=f"no GPU: NVML bindings not installed ({e.name or 'pynvml'})")
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - pynvml.NVMLError and its many subclasses (library or driver not found, …)
        return GpuReport(reason=f"no GPU: {_nvml_message(e)}")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "total_mb": int(mem.total // 2**20),
                    "free_mb": int(mem.free // 2**20),
                }
            )
        return GpuReport(gpus=gpus, reason=None if gpus else "no GPU: NVML found no device")
    except Exception as e:  # noqa: BLE001 - a broken driver is reported as no GPU, never raised
        return GpuReport(reason=f"no GPU: {_nvml_message(e)}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutdown is best effort; the report is already made
            pass


def _nvml_message(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return f"NVML: {text}"


def fit(size_gb: float | None, report: GpuReport, *, requires_gpu: bool = False) -> tuple[bool, str]:
    """(eligible, why) for a model of `size_gb` given the GPUs in `report`."""
    if not report.present:
        if requires_gpu:
            return False, f"{report.reason or 'no GPU'}, and requires_gpu is set"
        return True, "no GPU: runs on CPU"
    best = max(report.gpus, key=lambda g: g["free_mb"])
    free_gb = best["free_mb"] / 1024
    if size_gb is None:
        return True, f"model size unknown: GPU fit not checked (GPU {best['index']} has {free_gb:.1f} GB free)"
    if best["free_mb"] < size_gb * 1024:
        return False, f"needs {size_gb:.1f} GB, GPU {best['index']} has {free_gb:.1f} GB free"
    return True, f"fits on GPU {best['index']} ({size_gb:.1f} of {free_gb:.1f} GB free)"


__all__ = ["GpuReport", "fit", "gpu_info"]
