"""mts1b-research: the strategy registry, the signal service, strategy reports."""

from __future__ import annotations

from mts1b_research.errors import ResearchError, ResearchInputError, TransitionRefused

__all__ = ["ResearchError", "ResearchInputError", "TransitionRefused", "__version__"]
__version__ = "0.1.0"
