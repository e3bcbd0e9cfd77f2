"""Sizing a rebalance at the next session's open, as a backtest filled at the open does.

Why: a signal decided at a close trades at the next open. Sizing its shares at the close
(price and NAV of the decision) is what a live desk does without an opening auction model; a
backtest with ``fill="next_open"`` (the GPUbacktester's ``run_single``, backtrader's
``cheat_on_open``) sizes at the open itself, with the NAV the fund has at that open net of the
rebalance's own commissions. The composer service does the latter when asked
(``serve --size-at-open``): at the close it keeps what the fund held and its cash
(:class:`CloseSnapshot`, stored with the rebalance it owes); at the next open, after that
session's corporate actions and before the venue fills anything, it works out the capital to
compose with (:func:`capital_at_open`).

The NAV at the open: the cash struck at the close, plus the session's cash dividends and
delisting pay-outs on the shares held at that close, plus every position (after the
session's splits and delistings) at its open - or at its last close when it has no bar this
session (its order then waits for one). Then ``V = V_pre - rate x sum |w_i V - held_i|`` over
the names that trade (:func:`mts1b_portfolio.costs.post_trade_nav`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from mts1b_foundation import CorporateAction

from mts1b_portfolio.costs import post_trade_nav

__all__ = ["CloseSnapshot", "OpenSizing", "capital_at_open"]

ZERO = Decimal(0)
_BPS = Decimal(10_000)
_PLACES = Decimal("1e-12")


@dataclass(frozen=True)
class CloseSnapshot:
    """A fund at the close a rebalance was decided: its cash (from the NAV the treasury struck
    for ``session``) and the shares it held per symbol (all sleeves together)."""

    session: str
    cash: Decimal
    held: Mapping[str, Decimal]

    def to_json(self) -> dict[str, object]:
        return {"session": self.session, "cash": str(self.cash),
                "held": {s: str(q) for s, q in sorted(self.held.items())}}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> CloseSnapshot:
        held = raw.get("held")
        if not isinstance(held, dict):
            raise ValueError("held must be an object")
        return cls(str(raw["session"]), Decimal(str(raw["cash"])),
                   {str(s): Decimal(str(q)) for s, q in held.items()})


@dataclass(frozen=True)
class OpenSizing:
    """What a rebalance at the open is sized with: the capital (post-trade NAV) and the price
    of every symbol involved (its open, or its last close when it has none this session)."""

    v_pre: Decimal
    capital: Decimal
    prices: Mapping[str, Decimal]


def capital_at_open(snapshot: CloseSnapshot, holdings: Mapping[str, Decimal],
                    opens: Mapping[str, Decimal], last_closes: Mapping[str, Decimal],
                    actions: Iterable[CorporateAction], weights: Mapping[str, Decimal],
                    commission_bps: Decimal) -> OpenSizing:
    """The capital to compose with at the open (see the module docstring).

    ``holdings``: shares per symbol now (the session's splits and delistings applied);
    ``opens``: this session's open of each symbol that has a bar; ``last_closes``: each
    symbol's last close before this session; ``weights``: the fund's netted target weight
    per symbol; ``commission_bps``: the venue's commission, proportional to notional.
    Raises ``KeyError`` naming a symbol that has neither an open nor a last close.
    """
    cash = snapshot.cash
    for action in actions:
        before = snapshot.held.get(action.symbol, ZERO)
        if action.kind in ("dividend", "delisting"):
            cash += before * action.value
    symbols = sorted({s for s, q in holdings.items() if q != 0} | set(weights))
    prices: dict[str, Decimal] = {}
    for symbol in symbols:
        price = opens.get(symbol)
        if price is None:
            price = last_closes.get(symbol)
        if price is None:
            raise KeyError(symbol)
        prices[symbol] = price
    held = [holdings.get(s, ZERO) * prices[s] for s in symbols]
    v_pre = cash + sum(held, ZERO)
    capital = post_trade_nav(v_pre, [weights.get(s, ZERO) for s in symbols], held,
                             [s in opens for s in symbols], commission_bps / _BPS)
    # the wire's 12 places (a relative change of 1e-18 at these sizes)
    return OpenSizing(v_pre, capital.quantize(_PLACES), prices)
