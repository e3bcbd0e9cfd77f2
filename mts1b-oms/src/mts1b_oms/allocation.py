"""A composed target's :class:`~mts1b_foundation.SleeveAllocation` -> one order per symbol that
serves every sleeve, and what crossed between the sleeves.

Per symbol and per sleeve the allocation names, the sleeve's delta is its target shares less
what it holds now (its own position, kept per sleeve by the OMS). The deltas are netted into one
order whose ``sleeves`` carry each sleeve's signed delta (a sleeve with no delta is left out):
the fund trades only the net, and when one sleeve buys what another sells the matched part never
reaches the venue. That part is the *crossing*: ``(sum |delta| - |net|) / 2`` shares, reported
per symbol with the totals and the notional at the reference prices. A symbol whose deltas net
to exactly zero makes no order: its shares only change owner, which the OMS books as an
internal transfer at the reference price (:meth:`~mts1b_oms.oms.Oms.book_transfer`).

A sleeve the allocation does not list is not traded; a symbol a listed sleeve leaves out is a
target of 0 for it. The order's ``strategy_id`` is its only sleeve, or
:data:`~mts1b_foundation.MULTI_SLEEVE_STRATEGY` when it serves several; the gates judge the
sleeves. Sells come before buys (they free the cash and the exposure the buys need). The
idempotency key is derived from the fund, the target's ``as_of`` and the symbol, so sending
the same target again makes no new orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from mts1b_foundation import (
    MULTI_SLEEVE_STRATEGY,
    Equity,
    Instrument,
    Order,
    Side,
    SleeveAllocation,
    deterministic_id,
)
from mts1b_foundation.sleeves import exact_sum
from mts1b_foundation.wire import describe_errors
from pydantic import ValidationError

__all__ = ["SleevePlan", "plan_allocation"]

ZERO = Decimal(0)
_PRECISION = 96


@dataclass(frozen=True, slots=True)
class SleevePlan:
    """The orders of an allocation and its crossing figures (exact decimals).

    ``crossed``: symbol -> shares matched between sleeves (only symbols with some);
    ``gross_shares``: the sleeves' summed ``|delta|``; ``net_shares``: the orders' summed
    quantity; ``crossed_notional``: crossed shares at the reference price of each symbol
    (a symbol without one adds none and is named in ``unpriced``).
    """

    orders: list[Order]
    refused: dict[str, str] = field(default_factory=dict)
    """Symbol -> why no valid order could be made for it (a net outside the numeric domain)."""
    transfers: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    """Symbol -> sleeve deltas that net to exactly zero: shares change owner between sleeves
    and nothing goes to the venue (booked as an internal transfer)."""
    crossed: dict[str, Decimal] = field(default_factory=dict)
    gross_shares: Decimal = ZERO
    net_shares: Decimal = ZERO
    crossed_notional: Decimal = ZERO
    unpriced: list[str] = field(default_factory=list)

    @property
    def crossed_shares(self) -> Decimal:
        return exact_sum(list(self.crossed.values()))


def plan_allocation(allocation: SleeveAllocation, *,
                    holdings: Mapping[tuple[str, str], Decimal],
                    prices: Mapping[str, Decimal],
                    instruments: Mapping[str, Instrument] | None = None) -> SleevePlan:
    """The orders that move each listed sleeve from ``holdings`` ((strategy, symbol) ->
    signed shares) to its target in ``allocation``. See the module docstring."""
    sleeves = allocation.sleeves
    symbols = allocation.symbols() | {sym for (s, sym), q in holdings.items()
                                      if s in sleeves and q != 0}
    stamp = allocation.as_of.strftime("%Y%m%dT%H%M%S.%f")
    sells: list[Order] = []
    buys: list[Order] = []
    crossed: dict[str, Decimal] = {}
    refused: dict[str, str] = {}
    transfers: dict[str, dict[str, Decimal]] = {}
    gross_total, net_total, notional = ZERO, ZERO, ZERO
    unpriced: list[str] = []
    with localcontext() as ctx:
        ctx.prec = _PRECISION  # sums of many wire values stay exact
        for sym in sorted(symbols):
            deltas = {name: delta for name in sorted(sleeves)
                      if (delta := sleeves[name].get(sym, ZERO)
                          - holdings.get((name, sym), ZERO)) != 0}
            if not deltas:
                continue
            net = exact_sum(deltas)
            gross = exact_sum([abs(d) for d in deltas.values()])
            gross_total += gross
            net_total += abs(net)
            matched = (gross - abs(net)) / 2
            if matched:
                crossed[sym] = matched
                if sym in prices:
                    notional += matched * prices[sym]
                else:
                    unpriced.append(sym)
            if net == 0:
                transfers[sym] = deltas
                continue
            made = _order(allocation, sym, deltas, net, stamp, instruments)
            if isinstance(made, str):
                refused[sym] = made
            else:
                (buys if made.side is Side.BUY else sells).append(made)
    return SleevePlan(sells + buys, refused, transfers, crossed, gross_total, net_total,
                      notional, unpriced)


def _order(allocation: SleeveAllocation, sym: str, deltas: dict[str, Decimal], net: Decimal,
           stamp: str, instruments: Mapping[str, Instrument] | None) -> Order | str:
    """The one order of ``sym`` serving ``deltas``; or why none is valid (a delta or the net
    outside the numeric domain), fields named."""
    inst = (instruments or {}).get(sym) or Equity(symbol=sym)
    strategy = next(iter(deltas)) if len(deltas) == 1 else MULTI_SLEEVE_STRATEGY
    try:
        return Order(idempotency_key=deterministic_id("rbs", allocation.fund_id, stamp, sym),
                     fund_id=allocation.fund_id, strategy_id=strategy, instrument=inst,
                     side=Side.BUY if net > 0 else Side.SELL, quantity=abs(net),
                     sleeves=deltas, created_at=allocation.as_of)
    except ValidationError as exc:
        reasons = [f"{e['field']}={e['value']!r}: {e['reason']}" for e in describe_errors(exc)]
        return "; ".join(reasons)[:2000]
