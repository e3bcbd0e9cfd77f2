"""Sleeve ownership inside the OMS: whose strategies an order serves, what each fill credits
each sleeve, and how a halted or removed strategy's share leaves an open order.

Why its own module: the gates, the kill switch, the stores and the rebalance all ask the same
three questions of an order - which strategies still have a share working in it, how a fill
splits over them (the rule lives in :mod:`mts1b_foundation.sleeves`), and what is left of it
when one strategy must stop (or, while it is REDUCING, stop adding to its sleeve) - and they
must all get the same answer.

An order without ``sleeves`` belongs wholly to its ``strategy_id``, as before issue #17.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from mts1b_foundation import Fill, Order, Side
from mts1b_foundation.sleeves import exact_sum, split_commission

from mts1b_oms.state import OrderState

__all__ = [
    "SleeveFill",
    "Withdrawal",
    "credit_fill",
    "increasing_shares",
    "live_strategies",
    "sleeve_fills",
    "sleeve_share",
    "state_strategies",
    "withdrawal",
]

ZERO = Decimal(0)


def live_strategies(order: Order, credited: Mapping[str, Decimal] | None = None
                    ) -> tuple[str, ...]:
    """The strategies with a share still to trade in ``order``: its ``strategy_id`` when it
    has no sleeves, else every sleeve whose share is not yet wholly credited by fills
    (``credited``; none for a new order). A sleeve whose remaining share is 0 - what a
    withdrawn strategy keeps of a partly filled order - is not trading through it any more,
    so the gates and the kill switch do not ask about it."""
    if not order.sleeves:
        return (order.strategy_id,)
    done = credited or {}
    return tuple(sorted(s for s, d in order.sleeves.items() if d != done.get(s, ZERO)))


def state_strategies(state: OrderState) -> tuple[str, ...]:
    """:func:`live_strategies` of an order as it stands - or, while a replace that re-assigns
    its sleeves is pending, as the replace will make it (the kill switch's own withdrawal of
    a halted sleeve must not be refused for the very sleeve it takes out)."""
    order = state.order
    pending = state.pending_replace
    if pending is not None and pending.sleeves is not None:
        order = order.model_copy(update={"sleeves": pending.sleeves})
    return live_strategies(order, state.credited if order.sleeves else None)


@dataclass(frozen=True, slots=True)
class SleeveFill:
    """One sleeve's part of one fill: its signed credit and its part of the commission."""

    strategy_id: str
    quantity: Decimal
    commission: Decimal


def sleeve_fills(state: OrderState, fill: Fill) -> list[SleeveFill]:
    """The rows a store writes with ``fill`` (already applied to ``state``): one per sleeve of
    the order - 0 for a sleeve this fill did not credit, so a correction that moves a credit
    away overwrites the old row - with the commission split by
    :func:`~mts1b_foundation.sleeves.split_commission`."""
    credits = state.credits_of(fill.trade_id)
    names = sorted(set(state.order.sleeves) | set(credits)) or [state.order.strategy_id]
    nonzero = {s: q for s, q in credits.items() if q != 0}
    commissions = split_commission(nonzero, fill.commission) if nonzero else {}
    return [SleeveFill(s, credits.get(s, ZERO), commissions.get(s, ZERO)) for s in names]


def credit_fill(fill: Fill, quantity: Decimal, commission: Decimal) -> Fill:
    """``fill`` as one sleeve's books see it: its signed credit as side and quantity, its part
    of the commission, the fund's price and time (what positions replay for a sleeve)."""
    return fill.model_copy(update={"side": Side.BUY if quantity > 0 else Side.SELL,
                                   "quantity": abs(quantity), "commission": commission})


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """What taking one strategy's share out of an open order means for it.

    ``cancel``: the whole order goes (it served only that strategy, or removing the share
    would make the order larger, turn it around, or leave nothing beyond what filled).
    Otherwise ``quantity`` and ``sleeves`` are the order's new terms for a cancel-replace:
    the strategy keeps what fills already credited it and nothing more.
    """

    order_id: str
    strategy_id: str
    cancel: bool
    quantity: Decimal | None = None
    sleeves: dict[str, Decimal] | None = None


def withdrawal(state: OrderState, strategy_id: str) -> Withdrawal | None:
    """How ``strategy_id`` leaves open order ``state``, or ``None`` when it has no share
    working there. A kill switch never makes an order larger or turns it around: when taking
    the share out would (the strategy's sell was netting against another sleeve's buy), the
    whole order is canceled and the other sleeves wait for the next (re-composed) target."""
    order = state.order
    live = state_strategies(state)
    if strategy_id not in live:
        return None
    if live == (strategy_id,) or not order.sleeves:
        return Withdrawal(state.order_id, strategy_id, cancel=True)
    credited = state.credited
    kept = credited.get(strategy_id, ZERO)
    sleeves = {s: d for s, d in order.sleeves.items() if s != strategy_id}
    if kept != 0:
        sleeves[strategy_id] = kept
    signed = exact_sum(sleeves)
    quantity = abs(signed)
    same_side = (signed > 0) == (order.side is Side.BUY)
    if signed == 0 or not same_side or quantity >= order.quantity or (
            quantity <= state.filled_quantity):
        return Withdrawal(state.order_id, strategy_id, cancel=True)
    return Withdrawal(state.order_id, strategy_id, cancel=False, quantity=quantity,
                      sleeves=dict(sorted(sleeves.items())))


def sleeve_share(state: OrderState, strategy_id: str) -> Decimal:
    """The signed quantity ``strategy_id`` still has to trade through open order ``state``:
    its share less what fills credited it (a sleeve order, as a pending replace that
    re-assigns its sleeves will make it, as :func:`state_strategies` reads it); the order's
    leaves, signed by side, when it is the strategy's own order without sleeves; else 0."""
    order = state.order
    pending = state.pending_replace
    if pending is not None and pending.sleeves is not None:
        order = order.model_copy(update={"sleeves": pending.sleeves})
    if order.sleeves:
        return order.sleeves.get(strategy_id, ZERO) - state.credited.get(strategy_id, ZERO)
    if order.strategy_id != strategy_id:
        return ZERO
    leaves = state.leaves_quantity
    return leaves if order.side is Side.BUY else -leaves


def increasing_shares(states: Iterable[OrderState], strategy_id: str,
                      position: Callable[[str, str], Decimal]) -> list[OrderState]:
    """The orders among ``states`` in which ``strategy_id``'s remaining share
    (:func:`sleeve_share`) would take *its sleeve's* position further from zero or across it:
    what a strategy-scope REDUCING must take out of the orders it shares with other sleeves.

    Judged per fund and symbol against the sleeve's own position (``position(fund_id,
    symbol)``), not the fund's net (another sleeve's holding is no room for this one), the
    way :meth:`~mts1b_oms.book.FundBook.risk_increasing` judges a fund's orders: a share on
    the side that adds to the sleeve's position is increasing; on the reducing side the
    oldest shares (order ids grow with time) are kept while together they still only shrink
    the position, and the first that would overshoot and every later one are not. Every
    share of the strategy counts, its own orders' too, so a sleeve's sells across several
    orders cannot add up to a flip."""
    groups: defaultdict[tuple[str, str], list[tuple[OrderState, Decimal]]] = defaultdict(list)
    for st in states:
        share = sleeve_share(st, strategy_id)
        if share != 0:
            groups[(st.order.fund_id, st.order.instrument.symbol)].append((st, share))
    out: list[OrderState] = []
    for (fund_id, symbol), group in groups.items():
        pos = position(fund_id, symbol)
        room = abs(pos)  # how much the reducing side may still take off
        for st, share in sorted(group, key=lambda x: x[0].order_id):
            reducing = pos != 0 and (share > 0) != (pos > 0)
            if reducing and abs(share) <= room:
                room -= abs(share)
                continue
            out.append(st)
            if reducing:
                room = ZERO  # nothing after an overshooting share may stay either
    return out
