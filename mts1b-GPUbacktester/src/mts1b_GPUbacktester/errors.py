"""Errors raised by mts1b-GPUbacktester, each with a stable ``code``.

Every error subclasses :class:`mts1b_foundation.MtsError`; configuration mistakes are also
``ValueError`` so code written against plain Python conventions keeps working.
"""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import MtsError

__all__ = ["BackendUnavailable", "BacktestConfigError", "BacktestError"]


class BacktestError(MtsError):
    """Base of every backtester error."""

    code: ClassVar[str] = "GPUBACKTESTER.ERROR"


class BacktestConfigError(BacktestError, ValueError):
    """A run was configured inconsistently (unknown fill mode, bad grid, empty universe...).

    ``context`` names the offending argument and its value.
    """

    code: ClassVar[str] = "GPUBACKTESTER.CONFIG"


class BackendUnavailable(BacktestError, RuntimeError):
    """``backend="cupy"`` was requested but cupy or a CUDA device is missing (the reason says
    which)."""

    code: ClassVar[str] = "GPUBACKTESTER.BACKEND"
