"""Kill-switch states per scope (global, fund, strategy) and how they combine.

The effective state of an order is the most restrictive of the global state, its fund's state and
its strategy's state: ``HALTED`` beats ``REDUCING`` beats ``ACTIVE``. A scope with no entry is
``ACTIVE``. The OMS keeps one :class:`TradingStates` per process, loaded from PostgreSQL at start
and updated from the NATS KV bucket (see :mod:`mts1b_oms.killswitch`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence

from mts1b_foundation import SetTradingState, TradingState, TradingStateChange, parse_message

__all__ = ["GLOBAL", "Scope", "TradingStates", "make_change", "make_command", "parse_change",
           "restrictiveness", "scope_key"]

Scope = tuple[str, str]
"""``(scope, scope_id)``: ``("global", "*")``, ``("fund", "f1")`` or ``("strategy", "s1")``."""

GLOBAL: Scope = ("global", "*")
_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def restrictiveness(state: TradingState) -> int:
    """0 for ACTIVE, 1 for REDUCING, 2 for HALTED: an automatic change may only go up."""
    return _RANK[state]


def scope_key(scope: str, scope_id: str) -> str:
    """The KV key of a scope: ``global``, ``fund.<id>`` or ``strategy.<id>``."""
    return "global" if scope == "global" else f"{scope}.{scope_id}"


class TradingStates:
    """A mutable map scope -> state with the combination rule above."""

    def __init__(self, states: Mapping[Scope, TradingState] | None = None) -> None:
        self._states: dict[Scope, TradingState] = dict(states or {})

    def set(self, scope: str, scope_id: str, state: TradingState) -> None:
        if state is TradingState.ACTIVE:
            self._states.pop((scope, scope_id), None)
        else:
            self._states[(scope, scope_id)] = state

    def get(self, scope: str, scope_id: str) -> TradingState:
        return self._states.get((scope, scope_id), TradingState.ACTIVE)

    def effective(self, fund_id: str, strategy_id: str) -> tuple[TradingState, Scope]:
        """The most restrictive state that applies, and the scope it comes from."""
        return self.effective_for(fund_id, (strategy_id,))

    def effective_for(self, fund_id: str, strategies: Sequence[str]
                      ) -> tuple[TradingState, Scope]:
        """The most restrictive state over the global scope, the fund and every one of
        ``strategies`` (the sleeves an order serves), and the scope it comes from (the first
        in that order, strategies as given, on a tie)."""
        if not self._states:
            return TradingState.ACTIVE, GLOBAL
        best: tuple[TradingState, Scope] = (TradingState.ACTIVE, GLOBAL)
        scopes = [GLOBAL, ("fund", fund_id), *(("strategy", s) for s in strategies)]
        for scope in scopes:
            state = self._states.get(scope)
            if state is not None and _RANK[state] > _RANK[best[0]]:
                best = (state, scope)
        return best

    def __iter__(self) -> Iterator[tuple[Scope, TradingState]]:
        return iter(list(self._states.items()))

    def __len__(self) -> int:
        return len(self._states)


def make_change(scope: str, scope_id: str, state: TradingState, actor: str, reason: str,
                ts: dt.datetime) -> TradingStateChange:
    """A validated :class:`TradingStateChange` (``scope_id="*"`` for the global scope)."""
    return TradingStateChange(scope=scope, scope_id=scope_id, state=state, actor=actor,
                              reason=reason, ts=ts)


def make_command(scope: str, scope_id: str, state: TradingState, actor: str,
                 reason: str) -> SetTradingState:
    """A validated :class:`SetTradingState` command (``scope_id="*"`` for the global scope)."""
    return SetTradingState(scope=scope, scope_id=scope_id, state=state, actor=actor,
                           reason=reason)


def parse_change(data: bytes) -> TradingStateChange:
    """Decode a change from JSON bytes; raises ``ValidationFailed`` naming the bad field."""
    return parse_message(TradingStateChange, data)
