"""The user-written rule that decides whether a strategy has earned its next stage.

Why a rule object and not a fixed threshold in the registry: what counts as enough evidence is
a research decision (a slow monthly strategy needs fewer sessions than a daily one, a desk may
insist on a t-stat), so the registry takes any callable ``(evidence) -> RuleVerdict`` and
records its verdict beside the transition. :class:`MinimumEvidence` is the ready-made rule:
at least N sessions, optionally an IC floor and a t-stat floor.

The evidence is the signal service's statistics of the strategy in its current stage (shadow
before paper, paper before live), handed in as plain numbers so the registry needs no access
to the signals themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from mts1b_research.errors import ResearchInputError

__all__ = ["MinimumEvidence", "PromotionEvidence", "PromotionRule", "RuleVerdict"]


def _finite_or_none(name: str, value: float | None) -> None:
    """A NaN would compare False against any floor and so pass it: refuse it at the door."""
    if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
        raise ResearchInputError(name, value, "must be a finite number or left out")


@dataclass(frozen=True, slots=True)
class PromotionEvidence:
    """What a strategy did in its current stage: sessions observed, mean IC, t-stat of the
    mean IC (Newey-West, as :class:`~mts1b_foundation.Signal` carries it), hit rate."""

    sessions: int
    mean_ic: float | None = None
    t_stat: float | None = None
    hit_rate: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sessions, bool) or not isinstance(self.sessions, int) \
                or self.sessions < 0:
            raise ResearchInputError("sessions", self.sessions, "must be an integer >= 0")
        _finite_or_none("mean_ic", self.mean_ic)
        _finite_or_none("t_stat", self.t_stat)
        _finite_or_none("hit_rate", self.hit_rate)
        if self.hit_rate is not None and not 0 <= self.hit_rate <= 1:
            raise ResearchInputError("hit_rate", self.hit_rate, "must lie in [0, 1]")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (recorded with the transition)."""
        return {"sessions": self.sessions, "mean_ic": self.mean_ic, "t_stat": self.t_stat,
                "hit_rate": self.hit_rate}


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """A rule's answer: ``ok`` and the reasons (why it refused, or what it checked)."""

    ok: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reasons": list(self.reasons)}


class PromotionRule(Protocol):
    """Any callable judging evidence; the registry records its verdict and obeys it."""

    def __call__(self, evidence: PromotionEvidence, /) -> RuleVerdict: ...


def _floor(label: str, value: float | None, floor: float) -> tuple[bool, str]:
    """Whether ``value`` reaches ``floor``, and the sentence saying so (a missing statistic
    never reaches a floor: no evidence is not good evidence)."""
    if value is None:
        return False, f"{label} is unknown; the rule needs at least {floor:g}"
    if value >= floor:
        return True, f"{label} {value:g} >= {floor:g}"
    return False, f"{label} {value:g} is below the floor {floor:g}"


@dataclass(frozen=True, slots=True)
class MinimumEvidence:
    """At least ``min_sessions`` sessions and, when set, a mean IC of at least ``min_ic`` and a
    t-stat of at least ``min_t_stat``. Refusals list every unmet condition."""

    min_sessions: int
    min_ic: float | None = None
    min_t_stat: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.min_sessions, bool) or not isinstance(self.min_sessions, int) \
                or self.min_sessions < 0:
            raise ResearchInputError("min_sessions", self.min_sessions,
                                     "must be an integer >= 0")
        _finite_or_none("min_ic", self.min_ic)
        _finite_or_none("min_t_stat", self.min_t_stat)

    def __call__(self, evidence: PromotionEvidence, /) -> RuleVerdict:
        checks = [(evidence.sessions >= self.min_sessions,
                   f"sessions {evidence.sessions} >= {self.min_sessions}"
                   if evidence.sessions >= self.min_sessions else
                   f"sessions {evidence.sessions} is fewer than {self.min_sessions}")]
        if self.min_ic is not None:
            checks.append(_floor("mean IC", evidence.mean_ic, self.min_ic))
        if self.min_t_stat is not None:
            checks.append(_floor("t-stat", evidence.t_stat, self.min_t_stat))
        failed = [reason for ok, reason in checks if not ok]
        if failed:
            return RuleVerdict(False, failed)
        return RuleVerdict(True, [reason for _, reason in checks])
