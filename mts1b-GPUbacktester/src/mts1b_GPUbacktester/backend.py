"""Backend dispatch: pick the engine and array library of a run, and record why.

Three backends:

``"numba"``
    the compiled CPU engine (:mod:`mts1b_GPUbacktester.sim_compiled`) for the portfolio
    simulation; the array kernels (:mod:`mts1b_GPUbacktester.kernels`) run on numpy.
``"numpy"``
    the reference engine (:mod:`mts1b_GPUbacktester.sim_reference`) on numpy: a loop over bars
    vectorized over assets, kept as the reference the compiled engine is tested against.
``"cupy"``
    the reference engine and the kernels on an NVIDIA GPU through cupy (the kernels are
    written once against an *array namespace* ``xp``).

``"auto"`` takes ``"numba"`` unless a measurement on a GPU, recorded in ``bench/RESULTS.md``,
showed the cupy path faster than the compiled CPU engine at the run's size: that size is
:data:`AUTO_GPU_MIN_CELLS`, and it is ``None`` while no such measurement exists. Every decision
is a :class:`Backend` whose ``reason`` says why, and every result carries it.

cupy is imported lazily, on the first call that asks about it, so numpy-only installs never
import (or need) it; numba is imported on the first simulation the compiled engine runs.
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
    "NO_GPU_MEASUREMENT",
    "Backend",
    "BackendName",
    "cupy_status",
    "resolve_backend",
]

BackendName = Literal["numba", "numpy", "cupy", "auto"]

#: ``auto`` moves to the GPU from this many (dates x assets x combos) cells upwards, the
#: smallest size at which a measurement on a GPU recorded in ``bench/RESULTS.md`` showed the
#: cupy path faster than the compiled CPU engine. ``None``: there is no such measurement (no
#: GPU has been available to this project's benchmarks), so ``auto`` never picks cupy. The
#: cupy path is the reference engine's per-bar loop, which on the CPU is about 16-19x slower
#: than the compiled engine at 505 x 2,520 (bench/RESULTS.md); a GPU would have to win that
#: back first.
AUTO_GPU_MIN_CELLS: int | None = None

#: the reason ``auto`` gives while :data:`AUTO_GPU_MIN_CELLS` is None
NO_GPU_MEASUREMENT = ("no measurement on a GPU in bench/RESULTS.md shows the cupy path faster "
                      "than the compiled CPU engine at any size")


@dataclass(frozen=True)
class Backend:
    """The array namespace a run uses, and the reason it was chosen."""

    name: Literal["numba", "numpy", "cupy"]
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

    @property
    def compiled(self) -> bool:
        """Whether the portfolio simulation runs on the compiled CPU engine."""
        return self.name == "numba"

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

    ``"numba"`` and ``"numpy"`` always work. ``"cupy"`` raises :class:`BackendUnavailable`
    (with the reason) when cupy or a device is missing. ``"auto"`` is ``"numba"``, except for
    problems of at least :data:`AUTO_GPU_MIN_CELLS` cells when that is set (a GPU measurement
    showed cupy faster there) and a device is present.
    """
    if requested == "numba":
        return Backend("numba", np, "requested backend='numba': the compiled CPU engine")
    if requested == "numpy":
        return Backend("numpy", np, "requested backend='numpy': the reference engine")
    if requested == "cupy":
        cupy, why = cupy_status()
        if cupy is None:
            raise BackendUnavailable(f"backend='cupy' requested but {why}", reason=why)
        return Backend("cupy", cupy, f"requested backend='cupy': {why}", device=why)
    if requested != "auto":
        raise BacktestConfigError(
            f"backend must be 'auto', 'numba', 'numpy' or 'cupy'; got {requested!r}",
            field="backend", value=requested,
        )
    threshold = AUTO_GPU_MIN_CELLS
    if threshold is None:  # cupy is not even imported: it could not be chosen
        return Backend("numba", np, f"auto: numba (the compiled CPU engine) because "
                       f"{NO_GPU_MEASUREMENT}")
    cupy, why = cupy_status()
    if cupy is None:
        return Backend("numba", np, f"auto: numba (the compiled CPU engine) because {why}")
    if cells is not None and cells < threshold:
        return Backend("numba", np, f"auto: numba (the compiled CPU engine) because the "
                       f"problem ({cells:,} cells) is below {threshold:,} cells, the size from "
                       f"which bench/RESULTS.md shows cupy faster ({why} is available)")
    return Backend("cupy", cupy, f"auto: {why}", device=why)
