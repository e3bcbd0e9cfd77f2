"""mts1b-foundation: the typed vocabulary every MTS1B library speaks."""

from mts1b_foundation.errors import MtsError, PanelError, SubjectError, ValidationFailed
from mts1b_foundation.panel import OHLCV_FIELDS, UniversePanel, to_day

__version__ = "0.1.0"

__all__ = [
    "OHLCV_FIELDS",
    "MtsError",
    "PanelError",
    "SubjectError",
    "UniversePanel",
    "ValidationFailed",
    "__version__",
    "to_day",
]
