"""Target weights + current positions + prices + NAV -> the orders that get there.

For every symbol in the target or the book: ``target_qty = weight x NAV / (price x multiplier)``;
the delta to the current position is rounded *towards zero* to the instrument's lot size (never
trade more than asked), dropped when below the instrument's ``min_quantity`` or below the
notional ``threshold``; a symbol held but absent from a :class:`TargetPortfolio` is closed.
Sells come before buys (they free the cash and the exposure the buys need). Idempotency keys
are derived from the fund, the target's ``as_of`` and the symbol, so re-running the same
rebalance resubmits the same keys and creates no new orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from mts1b_foundation import Equity, Instrument, MtsError, Order, Side, Signal, TargetPortfolio

__all__ = ["RebalanceError", "rebalance"]

ZERO = Decimal(0)


class RebalanceError(MtsError, ValueError):
    code = "OMS.REBALANCE"


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
    stamp = target.as_of.strftime("%Y%m%dT%H%M%S")
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
        order = Order(idempotency_key=f"rb-{fund_id}-{strategy}-{stamp}-{sym}", fund_id=fund_id,
                      strategy_id=strategy, instrument=inst, side=side, quantity=abs(delta),
                      created_at=target.as_of)
        (buys if side is Side.BUY else sells).append(order)
    return sells + buys
