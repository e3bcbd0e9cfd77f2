"""The migration guide's ``f_sma_cross``, its code kept exactly as published.

Only type annotations are added; they live outside the function's code object, so the compiled
code is the guide's and the registry can recognise a pasted copy of it.

Its quirks are part of the contract: row ``t`` averages ``close[t - p:t]`` (row ``t`` itself
excluded), row 0 averages an empty slice (NaN, with numpy's "Mean of empty slice" warning), and a
NaN comparison counts as "not above", giving -1.
"""

from typing import Any

import numpy as np


def f_sma_cross(panel: Any, /, p_fast: int = 20, p_slow: int = 50) -> Any:
    """Long when fast SMA > slow SMA; flat otherwise."""
    close = panel.close  # (T, A)
    sma_fast = np.array([
        close[max(0, t - p_fast):t].mean(axis=0) for t in range(len(close))
    ])
    sma_slow = np.array([
        close[max(0, t - p_slow):t].mean(axis=0) for t in range(len(close))
    ])
    signal = (sma_fast > sma_slow).astype(float) * 2.0 - 1.0  # +1 / -1
    return signal
