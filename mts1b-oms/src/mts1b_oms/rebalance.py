"""Target weights + current positions + prices + NAV -> the orders that get there.

For every symbol in the target or the book: ``target_qty = weight x NAV / (price x multiplier)``;
the delta to the current position is rounded *towards zero* to the instrument's lot size (never
trade more than asked), dropped when below the instrument's ``min_quantity`` or below the
notional ``threshold``; a symbol held but absent from a :class:`TargetPortfolio` is closed.
Sells come before buys (they free the cash and the exposure the buys need).

Idempotency keys (:func:`rebalance_key`): a rebalance is identified by its strategy, its fund
and its rebalance time (the target's ``as_of``, to the microsecond), so re-running the same
rebalance resubmits the same keys and creates no new orders, while a new rebalance - a new
``as_of``, even within the same second - makes new ones (issue #20: keys used to keep whole
seconds only, so two rebalances in one second shared their orders).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from mts1b_foundation import (
    Equity,
    Instrument,
    MtsError,
    Order,
    Side,
    Signal,
    TargetPortfolio,
    deterministic_id,
)

__all__ = ["RebalanceError", "rebalance", "rebalance_key", "rebalance_stamp"]

ZERO = Decimal(0)


class RebalanceError(MtsError, ValueError):
    code = "OMS.REBALANCE"


def rebalance_stamp(as_of: dt.datetime) -> str:
    """The rebalance time as keys write it: ``YYYYmmddTHHMMSS`` in UTC, with ``.ffffff`` when
    it has microseconds (a whole second keeps the form keys had before, so a rebalance
    repeated across the upgrade still finds its orders)."""
    as_of = as_of.astimezone(dt.UTC) if as_of.tzinfo is not None else as_of
    stamp = as_of.strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{as_of.microsecond:06d}" if as_of.microsecond else stamp


def rebalance_key(fund_id: str, strategy_id: str, as_of: dt.datetime, symbol: str) -> str:
    """The idempotency key of one symbol's order in the rebalance (strategy, fund, time):
    ``rb-<fund>-<strategy>-<stamp>-<symbol>``, readable in the order book; when that would
    exceed the 128 characters of an id, a ``rb-<uuid5>`` of the same four parts (still one
    key per rebalance and symbol, never a truncation that two rebalances could share)."""
    key = f"rb-{fund_id}-{strategy_id}-{rebalance_stamp(as_of)}-{symbol}"
    if len(key) <= 128:
        return key
    return deterministic_id("rb", fund_id, strategy_id, rebalance_stamp(as_of), symbol)


def rebalance(
    target: TargetPortfolio | Signal,
    *,
    fund_id: str,
    positions: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
    nav: Decimal | None = None,
    strategy_id: str | None = None,
    instruments: Mapping[str, Instrument] | None = None,
    threshold: Decimal = ZERO,
    close_missing: bool | None = None,
) -> list[Order]:
    """Market orders moving ``positions`` to ``target``. See the module docstring.

    ``nav`` defaults to the target's own ``nav`` (a TargetPortfolio may carry one).
    ``close_missing``: close symbols held but absent from the target (default: True for a
    TargetPortfolio, which is the whole fund; False for a Signal, which is one sleeve).
    """
    if isinstance(target, TargetPortfolio):
        nav = nav if nav is not None else target.nav
        strategy = strategy_id or "rebalance"
        close = True if close_missing is None else close_missing
    else:
        strategy = strategy_id or target.strategy_id
        close = False if close_missing is None else close_missing
    if nav is None or nav <= 0:
        raise RebalanceError("a positive NAV is needed to turn weights into quantities",
                             nav=str(nav))
    symbols = set(target.weights) | (set(positions) if close else set())
    missing = sorted(s for s in symbols if s not in prices or prices[s] <= 0)
    if missing:
        raise RebalanceError(f"no price for {', '.join(missing)}", symbols=",".join(missing))
    sells: list[Order] = []
    buys: list[Order] = []
    for sym in sorted(symbols):
        inst = (instruments or {}).get(sym) or Equity(symbol=sym)
        mult = getattr(inst, "multiplier", None)
        mult = mult if isinstance(mult, Decimal) else Decimal(1)
        price = prices[sym]
        want = target.weights.get(sym, ZERO) * nav / (price * mult)
        delta = inst.round_quantity_down(want - positions.get(sym, ZERO))
        if delta == 0 or abs(delta) < inst.min_quantity:
            continue
        if abs(delta) * price * mult < threshold:
            continue
        side = Side.BUY if delta > 0 else Side.SELL
        order = Order(idempotency_key=rebalance_key(fund_id, strategy, target.as_of, sym),
                      fund_id=fund_id, strategy_id=strategy, instrument=inst, side=side,
                      quantity=abs(delta), created_at=target.as_of)
        (buys if side is Side.BUY else sells).append(order)
    return sells + buys
