"""Backend dispatch: pick numpy or cupy for a run and record why.

The kernels in :mod:`mts1b_GPUbacktester.kernels` are written against an *array namespace*
``xp`` (``numpy`` or ``cupy``); this module decides which one a run uses. ``backend="auto"``
takes cupy only when it is installed, a CUDA device answers, and the problem is large enough
for the GPU to pay for its transfers; otherwise numpy. Every decision is a :class:`Backend`
whose ``reason`` says why, and every result carries it.

cupy is imported lazily, on the first call that asks about it, so numpy-only installs never
import (or need) it.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from mts1b_GPUbacktester.errors import BackendUnavailable, BacktestConfigError

__all__ = [
    "AUTO_GPU_MIN_CELLS",
    "Backend",
    "BackendName",
    "cupy_status",
    "resolve_backend",
]

BackendName = Literal["numpy", "cupy", "auto"]

#: ``auto`` moves to the GPU from this many (dates x assets x combos) cells upwards; below it
#: kernel launch and transfer overheads outweigh the arithmetic.
AUTO_GPU_MIN_CELLS = 2_000_000


@dataclass(frozen=True)
class Backend:
    """The array namespace a run uses, and the reason it was chosen."""

    name: Literal["numpy", "cupy"]
    xp: ModuleType
    reason: str
    device: str | None = None

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """``x`` as an array of this backend (a host-to-device copy for cupy)."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> Any:
        """``x`` as a numpy array (a device-to-host copy for cupy)."""
        if self.name == "cupy" and hasattr(x, "get"):
            return x.get()
        return np.asarray(x)

    def describe(self) -> dict[str, str | None]:
        return {"backend": self.name, "reason": self.reason, "device": self.device}


@functools.lru_cache(maxsize=1)
def cupy_status() -> tuple[ModuleType | None, str]:
    """``(cupy module or None, explanation)``; cached, imports cupy at most once."""
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return None, f"cupy is not importable ({type(exc).__name__}: {exc})"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return None, f"cupy {cupy.__version__} is installed but no CUDA device answers ({exc})"
    if count < 1:
        return None, f"cupy {cupy.__version__} is installed but there is no CUDA device"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        device = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # pragma: no cover - properties are informative only
        device = "CUDA device 0"
    return cupy, f"cupy {cupy.__version__} on {device}"


def resolve_backend(requested: str = "auto", *, cells: int | None = None) -> Backend:
    """Choose the backend for a run of about ``cells`` (dates x assets x combos) array cells.

    ``"numpy"`` always works. ``"cupy"`` raises :class:`BackendUnavailable` (with the reason)
    when cupy or a device is missing. ``"auto"`` prefers cupy for problems of at least
    :data:`AUTO_GPU_MIN_CELLS` cells when a device is present, else numpy.
    """
    if requested == "numpy":
        return Backend("numpy", np, "requested backend='numpy'")
    if requested == "cupy":
        cupy, why = cupy_status()
        if cupy is None:
            raise BackendUnavailable(f"backend='cupy' requested but {why}", reason=why)
        return Backend("cupy", cupy, f"requested backend='cupy': {why}", device=why)
    if requested != "auto":
        raise BacktestConfigError(
            f"backend must be 'numpy', 'cupy' or 'auto'; got {requested!r}",
            field="backend", value=requested,
        )
    cupy, why = cupy_status()
    if cupy is None:
        return Backend("numpy", np, f"auto: numpy because {why}")
    if cells is not None and cells < AUTO_GPU_MIN_CELLS:
        return Backend("numpy", np, f"auto: numpy because the problem ({cells:,} cells) is "
                       f"below {AUTO_GPU_MIN_CELLS:,} cells, where the GPU does not pay off "
                       f"({why} is available)")
    return Backend("cupy", cupy, f"auto: {why}", device=why)
