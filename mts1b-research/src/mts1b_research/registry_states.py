"""The strategy life cycle as one table: which state may follow which, and what it needs.

Why a pure table apart from the database code: every allowed move is one line here, so the
rules can be read, reviewed and tested exhaustively (every pair of states) without
PostgreSQL, and the registry cannot allow a move by accident in some code path.

``draft -> shadow -> paper -> live``; shadow -> paper and paper -> live need the promotion
rule's approval, and going live needs the ``risk`` role as well, whatever the rule says. Any
of draft/shadow/paper/live may be disabled; enabling returns to the state held before (a
strategy that was live needs the ``risk`` role to go live again, but no new evidence: it was
approved and merely paused). Anything not retired may be retired, and retired is final.
"""

from __future__ import annotations

from dataclasses import dataclass

from mts1b_foundation import StrategyState

from mts1b_research.errors import TransitionRefused

__all__ = ["ACTIVE_STATES", "RISK_ROLE", "TRANSITIONS", "Requirement", "check_transition"]

RISK_ROLE = "risk"
"""The role that may put a strategy on real money (the signed commands' role of that name)."""

S = StrategyState
ACTIVE_STATES = frozenset({S.DRAFT, S.SHADOW, S.PAPER, S.LIVE})
"""The states a strategy can be disabled from and enabled back to."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a move needs besides being in the table: the promotion rule's approval, the
    ``risk`` role."""

    rule: bool = False
    risk: bool = False


_FREE = Requirement()
TRANSITIONS: dict[tuple[StrategyState, StrategyState], Requirement] = {
    (S.DRAFT, S.SHADOW): _FREE,
    (S.SHADOW, S.PAPER): Requirement(rule=True),
    (S.PAPER, S.LIVE): Requirement(rule=True, risk=True),
    **{(s, S.DISABLED): _FREE for s in ACTIVE_STATES},
    **{(S.DISABLED, s): Requirement(risk=s is S.LIVE) for s in ACTIVE_STATES},
    **{(s, S.RETIRED): _FREE for s in StrategyState if s is not S.RETIRED},
}
"""Every allowed move ``(from, to)``. Moves out of ``disabled`` are further limited to the
state held before the disable (:func:`check_transition`)."""


def check_transition(current: StrategyState, target: StrategyState, *,
                     remembered: StrategyState | None = None,
                     strategy: str = "") -> Requirement:
    """What moving from ``current`` to ``target`` needs, or :class:`TransitionRefused` naming
    both states when the table does not allow it. ``remembered`` is the state held before a
    disable: leaving ``disabled`` goes back there and nowhere else."""
    who = f"strategy {strategy}: " if strategy else ""
    requirement = TRANSITIONS.get((current, target))
    if requirement is None:
        raise TransitionRefused(
            f"{who}cannot move from {current.value} to {target.value}"
            + (" (retired is final)" if current is S.RETIRED else ""),
            strategy=strategy, from_state=current.value, to_state=target.value)
    if current is S.DISABLED and target in ACTIVE_STATES and target is not remembered:
        held = remembered.value if remembered is not None else "unknown"
        raise TransitionRefused(
            f"{who}cannot move from disabled to {target.value}: enabling restores the state "
            f"held before the disable ({held})",
            strategy=strategy, from_state=current.value, to_state=target.value)
    return requirement
