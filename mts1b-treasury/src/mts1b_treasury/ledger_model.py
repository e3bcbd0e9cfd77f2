"""The ledger's values and its pure rules: what a fill posts, and the replay that derives lots.

Why apart from :mod:`mts1b_treasury.ledger`: everything here is computed without the database,
so the accounting rules (the lines of a fill, the replay of a fund's fills and splits after a
bust) can be read, and tested, on their own; ``ledger.py`` only moves rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from mts1b_foundation import Fill, TaxLotMethod

from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.lots import Disposal, FillEffect, OpenLot, apply_fill, apply_split

__all__ = [
    "ACCOUNT_TYPES",
    "UNATTRIBUTED",
    "FillPosting",
    "Line",
    "PostOutcome",
    "PostStatus",
    "PostedFill",
    "Replay",
    "SplitEvent",
    "fill_lines",
    "position_account",
    "replay",
    "replay_order",
]

ZERO = Decimal(0)

ACCOUNT_TYPES: Mapping[str, str] = {
    "cash": "asset",
    "reserved_cash": "asset",
    "realized_pnl": "income",
    "dividends": "income",
    "commissions": "expense",
    "borrow": "expense",
    "capital": "equity",
    "transfers": "equity",
}
"""The fixed accounts every fund has (``positions:<SYMBOL>`` accounts, assets, are opened on a
symbol's first fill)."""

UNATTRIBUTED = ""
"""The sleeve that holds the quantity of fills posted without a sleeve split: an empty id,
which no strategy id can be, so the sleeves of a symbol always sum to its position."""


def position_account(symbol: str) -> str:
    """The account holding ``symbol``'s book cost (and, beside it, its quantity)."""
    return f"positions:{symbol}"


class PostStatus(StrEnum):
    POSTED = "posted"
    DUPLICATE = "duplicate"
    """The same terms were posted before under this key: nothing was written again."""
    CONFLICT = "conflict"
    """The key was posted before with other terms: nothing of this request was written."""


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What became of one posting request; ``entry_id`` is the entry posted, or the earlier one
    a duplicate matched."""

    key: str
    status: PostStatus
    entry_id: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class FillPosting:
    """A fill to post, with who owns it.

    ``sleeves``: signed quantities per strategy that sum exactly to the fill's signed quantity
    (a fill serving several sleeves), or empty when the fill is not attributed (its quantity
    goes to the :data:`UNATTRIBUTED` sleeve). ``lot_ids``: the lots a specific-id fund
    relieves, in order.
    """

    fill: Fill
    sleeves: Mapping[str, Decimal] = field(default_factory=dict)
    lot_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        sleeves = {str(k): v for k, v in self.sleeves.items() if v != ZERO}
        for strategy, quantity in sleeves.items():
            if not strategy or not isinstance(quantity, Decimal) or not quantity.is_finite():
                raise TreasuryInputError("sleeves", {strategy: quantity},
                                         "a sleeve is a strategy id with a finite Decimal")
        if sleeves and sum(sleeves.values(), ZERO) != self.fill.signed_quantity:
            raise TreasuryInputError("sleeves", dict(self.sleeves),
                                     f"must sum to the fill's signed quantity "
                                     f"{self.fill.signed_quantity}")
        object.__setattr__(self, "sleeves", sleeves)
        if self.lot_ids is not None:
            object.__setattr__(self, "lot_ids", tuple(self.lot_ids))

    @property
    def sleeve_split(self) -> dict[str, Decimal]:
        """The split applied to the sleeve positions (the unattributed sleeve when empty)."""
        return dict(self.sleeves) or {UNATTRIBUTED: self.fill.signed_quantity}

    def terms(self) -> tuple[object, ...]:
        """What must match for a replay of this trade id to be the same fill."""
        f = self.fill
        return (f.fund_id, f.order_id, f.symbol, f.side.value, f.quantity, f.price,
                f.commission, f.ts, f.venue, tuple(sorted(self.sleeves.items())), self.lot_ids)


@dataclass(frozen=True, slots=True)
class PostedFill:
    """A fill as the ledger holds it (the current revision of its trade id)."""

    posting: FillPosting
    revision: int
    entry_id: int
    sequence: int


@dataclass(frozen=True, slots=True)
class Line:
    """One journal line: debit positive, credit negative; ``quantity`` on position lines."""

    account: str
    amount: Decimal
    quantity: Decimal | None = None


def fill_lines(posting: FillPosting, before: Sequence[OpenLot], effect: FillEffect) -> list[Line]:
    """The lines of a fill's entry.

    Cash moves by the notional and the commission; the commission is expensed at once (lots
    carry it only for the tax view); the position account moves by the change of its lots'
    book cost (so it always equals the lots), and realised PnL takes what is left, which is
    ``-(proceeds - cost relieved)``: an entry that does not balance here means the lots and
    the fill disagree, and is refused.
    """
    f = posting.fill
    notional = f.signed_quantity * f.price
    cost_change = _cost(effect.lots) - _cost(before)
    lines = [Line("cash", -notional - f.commission),
             Line(position_account(f.symbol), cost_change, f.signed_quantity)]
    if f.commission:
        lines.append(Line("commissions", f.commission))
    if effect.realized:
        lines.append(Line("realized_pnl", -effect.realized))
    return lines


def _cost(lots: Iterable[OpenLot]) -> Decimal:
    return sum((lot.cost for lot in lots), ZERO)


@dataclass(frozen=True, slots=True)
class SplitEvent:
    """A split in a replay: the lots' quantity times ``ratio`` from ``effective`` on."""

    ratio: Decimal
    effective: dt.date
    sequence: int


@dataclass(slots=True)
class Replay:
    """The state of one fund's symbol after replaying its posted fills and splits in order."""

    lots: tuple[OpenLot, ...] = ()
    disposals: list[tuple[int, Disposal]] = field(default_factory=list)
    sleeves: dict[str, Decimal] = field(default_factory=dict)
    effects: dict[str, tuple[tuple[OpenLot, ...], FillEffect]] = field(default_factory=dict)
    """Per trade id: the lots before the fill and what the fill did."""


def step_fill(state: Replay, method: TaxLotMethod, posted: PostedFill) -> FillEffect:
    """Apply one fill to ``state`` (lots, disposals, sleeves) and return its effect."""
    f = posted.posting.fill
    before = state.lots
    effect = apply_fill(method, before, trade_id=f.trade_id, symbol=f.symbol,
                        signed_quantity=f.signed_quantity, price=f.price,
                        commission=f.commission, when=f.ts.date(), sequence=posted.sequence,
                        lot_ids=posted.posting.lot_ids)
    state.lots = effect.lots
    state.disposals.extend((posted.sequence, d) for d in effect.disposals)
    for strategy, quantity in posted.posting.sleeve_split.items():
        state.sleeves[strategy] = state.sleeves.get(strategy, ZERO) + quantity
    state.effects[f.trade_id] = (before, effect)
    return effect


def step_split(state: Replay, split: SplitEvent) -> None:
    state.lots = apply_split(state.lots, ratio=split.ratio, effective=split.effective)
    state.sleeves = {s: q * split.ratio for s, q in state.sleeves.items()}


def replay_order(events: Iterable[PostedFill | SplitEvent]) -> list[PostedFill | SplitEvent]:
    """The events in the order a replay applies them: by sequence, except that a split goes
    before every fill executed on or after its ex-date that was posted before it.

    Why: a split takes effect at its ex-date's open, before anything traded that day, but it
    may be booked after those trades (a treasury on a replay's clock books the session's
    corporate actions at the session's tick, when the fills of its open are in already). The
    fills of the ex-date were made in post-split shares, so they must meet post-split lots.
    """
    items = list(events)
    fills = [e for e in items if isinstance(e, PostedFill)]

    def key(event: PostedFill | SplitEvent) -> tuple[int, int, int]:
        if isinstance(event, PostedFill):
            return (event.sequence, 1, event.sequence)
        later = [f.sequence for f in fills if f.posting.fill.ts.date() >= event.effective]
        return (min([event.sequence, *later]), 0, event.sequence)

    return sorted(items, key=key)


def replay(method: TaxLotMethod, events: Iterable[PostedFill | SplitEvent]) -> Replay:
    """Derive a symbol's lots, disposals and sleeve positions from its events in order
    (:func:`replay_order`)."""
    state = Replay()
    for event in replay_order(events):
        if isinstance(event, SplitEvent):
            step_split(state, event)
        else:
            step_fill(state, method, event)
    return state
