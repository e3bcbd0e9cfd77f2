"""Where the migration guide's step 8 finds the registry:
``from mts1b_research.strategies import StrategyRegistry``."""

from __future__ import annotations

from mts1b_research.promotion import (
    MinimumEvidence,
    PromotionEvidence,
    PromotionRule,
    RuleVerdict,
)
from mts1b_research.registry import (
    StrategyRecord,
    StrategyRegistry,
    TransitionPublisher,
    TransitionRecord,
    VersionRecord,
)
from mts1b_research.registry_sync import SyncStrategyRegistry

__all__ = [
    "MinimumEvidence",
    "PromotionEvidence",
    "PromotionRule",
    "RuleVerdict",
    "StrategyRecord",
    "StrategyRegistry",
    "SyncStrategyRegistry",
    "TransitionPublisher",
    "TransitionRecord",
    "VersionRecord",
]
