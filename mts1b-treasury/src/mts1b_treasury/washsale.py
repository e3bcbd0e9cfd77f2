"""The US wash-sale view of one tax entity: 26 CFR 1.1091-1 applied across all its funds.

Why a separate, pure replay: the books (:mod:`mts1b_treasury.lots`) say what each fund realised;
the tax return must say something else when a loss is washed, and the two must never be mixed
up. :func:`tax_view` takes the entity's whole history and recomputes the tax view from scratch
each time, so a purchase that arrives after a loss sale re-processes that loss by construction
(the bug of tools that only look backwards). The book numbers are never changed.

The rule as implemented (section references are to 26 CFR 1.1091-1):

* A loss on the disposal of a long lot is disallowed to the extent that, within 30 days before or
  after the sale date (the 61-day period, (a)), stock of the same symbol was acquired by any fund
  of the entity. "Substantially identical" means the same symbol; options, contracts to acquire
  and short sales are out of scope (a short lot is neither a loss sale nor a replacement here).
* Losses are processed in the order of the sales; the pieces of one sale, which have no order
  among themselves, in the order of their original acquisition ((b)).
* Replacement shares are matched in the order of their acquisition ((c), (d)); a share that has
  absorbed one loss is not matched again ((e)). With fewer replacement shares than loss shares
  only that share of the loss (per share) is disallowed, to the cent (ROUND_HALF_EVEN).
* The disallowed loss is added to the replacement shares' basis (1.1091-2) and the holding period
  of the shares sold is tacked on to theirs (IRC 1223(3)): their adjusted acquisition date is
  their own minus the days the sold shares were held (themselves possibly tacked before).
* What is NOT a replacement: the lots the loss sale itself disposes of (so a sale never washes
  against its own lots, nor a lot sold the day it was bought against itself), and shares already
  disposed of before the loss sale. The latter is this module's reading, and it matters: an
  adjustment can then only flow to shares sold later, so one pass in sale order is exact and no
  sale's result ever depends on a later sale's.

Quantities across a split are compared in the units of the day: a replacement bought after a
split is counted back into pre-split shares through the split ratios in between. That is a
Decimal division, exact for ratios such as 2, 4, 0.5 or 0.1; with a ratio like 3 it can leave a
remainder in the 28th digit (the disallowed amount is still rounded to the cent and allocated
exactly).

Rows: one per run of shares of a disposal with one wash-sale history, so a disposal of a lot that
was only partly a replacement gives two rows (same trade and lot, different acquired date and
basis). Amounts of a disposal are shared between its rows by quantity to the cent, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

from mts1b_foundation import TaxLotMethod

from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.lots import (
    Disposal,
    FillEffect,
    OpenLot,
    allocate,
    apply_fill,
    apply_split,
    quantize_cents,
)

__all__ = ["GainRow", "Split", "TaxLot", "TaxTrade", "TaxView", "is_long_term", "tax_view"]

_ZERO = Decimal(0)
WINDOW_DAYS = 30


@dataclass(frozen=True, slots=True)
class TaxTrade:
    """One fill of one fund of the entity; a sequence of these is in the order they happened."""

    fund_id: str
    trade_id: str
    symbol: str
    signed_quantity: Decimal
    price: Decimal
    commission: Decimal
    when: date
    lot_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Split:
    """A split of ``ratio`` new shares per old one, effective (ex-date) ``effective``."""

    symbol: str
    ratio: Decimal
    effective: date


@dataclass(frozen=True, slots=True)
class GainRow:
    """One disposal of (part of) a long lot, in the tax view (a line of Form 8949)."""

    fund_id: str
    trade_id: str
    lot_id: str
    symbol: str
    quantity: Decimal
    acquired: date
    disposed: date
    proceeds: Decimal
    basis: Decimal
    adjustment_code: str
    adjustment: Decimal
    gain: Decimal
    term: str


@dataclass(frozen=True, slots=True)
class TaxLot:
    """Open long shares with their tax basis (cost + fees + carried wash-sale adjustment)."""

    fund_id: str
    lot_id: str
    symbol: str
    quantity: Decimal
    acquired: date
    adjusted_acquired: date
    basis: Decimal
    wash_sale_adjustment: Decimal


@dataclass(frozen=True, slots=True)
class TaxView:
    """The tax view: realised rows sorted by (disposed, sequence) and the open long lots."""

    gains: tuple[GainRow, ...]
    lots: tuple[TaxLot, ...]

    def select(self, *, fund_id: str | None = None, symbol: str | None = None) -> TaxView:
        """The rows and lots of one fund and/or one symbol (None: all)."""

        def keep(row: GainRow | TaxLot) -> bool:
            return (fund_id is None or row.fund_id == fund_id) and (
                symbol is None or row.symbol == symbol
            )

        return TaxView(
            tuple(r for r in self.gains if keep(r)), tuple(lot for lot in self.lots if keep(lot))
        )


def is_long_term(acquired: date, disposed: date) -> bool:
    """Held more than one year: sold after the same calendar date one year later.

    An acquisition on 29 February has its anniversary on 28 February: its holding period starts
    on 1 March, so a sale on 1 March of the next year is the first one held more than a year.
    """
    try:
        anniversary = acquired.replace(year=acquired.year + 1)
    except ValueError:  # 29 February
        anniversary = date(acquired.year + 1, 2, 28)
    return disposed > anniversary


@dataclass(slots=True, eq=False)
class _Shares:
    """A run of shares of one acquisition with one wash-sale history (mutable while replaying).

    Compared by identity (``eq=False``): two runs alike in every field are still two runs.
    """

    quantity: Decimal  # in the units of the time (splits multiply it)
    acquired: date  # the acquisition's own trade date: the window test
    order: int  # the acquisition's place in the history: the matching order
    adjustment: Decimal = _ZERO  # disallowed loss carried in
    tacked: int = 0  # days of holding period tacked on
    used: bool = False  # has absorbed a loss already (one bite)


@dataclass(frozen=True, slots=True)
class _Fill:
    index: int
    trade: TaxTrade
    method: TaxLotMethod
    effect: FillEffect


_Event = _Fill | Split


def _check(trades: Sequence[TaxTrade], methods: Mapping[str, TaxLotMethod]) -> None:
    for before, after in pairwise(trades):
        if after.when < before.when:
            raise TreasuryInputError("trades", after.trade_id, "trades must be in date order")
    for trade in trades:
        if trade.fund_id not in methods:
            raise TreasuryInputError("methods", trade.fund_id, "no lot method for this fund")


def _book(
    trades: Sequence[TaxTrade], methods: Mapping[str, TaxLotMethod], splits: Sequence[Split]
) -> tuple[list[_Event], dict[tuple[str, str], tuple[OpenLot, ...]]]:
    """Replay the books: each fund's fills and the splits in time, splits before same-day fills.

    Returns the events in order and the final open lots per (fund, symbol).
    """
    books: dict[tuple[str, str], tuple[OpenLot, ...]] = {}
    events: list[_Event] = []
    due = sorted(splits, key=lambda s: s.effective)

    def split(event: Split) -> None:
        for key, lots in books.items():
            if key[1] == event.symbol:
                books[key] = apply_split(lots, ratio=event.ratio, effective=event.effective)
        events.append(event)

    for index, trade in enumerate(trades):
        while due and due[0].effective <= trade.when:
            split(due.pop(0))
        key = (trade.fund_id, trade.symbol)
        method = methods[trade.fund_id]
        effect = apply_fill(
            method,
            books.get(key, ()),
            trade_id=trade.trade_id,
            symbol=trade.symbol,
            signed_quantity=trade.signed_quantity,
            price=trade.price,
            commission=trade.commission,
            when=trade.when,
            sequence=index,
            lot_ids=trade.lot_ids,
        )
        books[key] = effect.lots
        events.append(_Fill(index, trade, method, effect))
    for event in due:
        split(event)
    return events, books


@dataclass(frozen=True, slots=True)
class _Candidate:
    shares: _Shares
    owner: list[_Shares]
    factor: Decimal  # replacement shares per share of the loss day


@dataclass(frozen=True, slots=True)
class _Piece:
    """Shares of one disposal with one history, and their share of the disposal's amounts."""

    disposal: Disposal
    fund_id: str
    shares: _Shares
    cost: Decimal
    fees: Decimal
    proceeds: Decimal


@dataclass(slots=True)
class _Replay:
    """The tax state while replaying: held and future long shares, and the rows so far."""

    splits: Sequence[Split]
    held: dict[tuple[str, str, str], list[_Shares]] = field(default_factory=dict)
    future: dict[int, tuple[str, list[_Shares]]] = field(default_factory=dict)
    rows: list[GainRow] = field(default_factory=list)

    def split(self, event: Split) -> None:
        for (_, symbol, _), runs in self.held.items():
            if symbol == event.symbol:
                for run in runs:
                    run.quantity *= event.ratio

    def fill(self, event: _Fill) -> None:
        trade, effect = event.trade, event.effect
        pieces = [p for d in effect.disposals if d.quantity > 0 for p in self._take(trade, d)]
        sold = {(trade.fund_id, d.lot_id) for d in effect.disposals}
        disallowed: dict[int, Decimal] = {}
        for piece in sorted(pieces, key=lambda p: (p.shares.acquired, p.shares.order)):
            disallowed[id(piece)] = self._wash(event.index, piece, sold)
        self.rows.extend(_row(p, disallowed[id(p)]) for p in pieces)
        if effect.opened is not None and effect.opened.quantity > 0:
            _, runs = self.future.pop(event.index)
            self.held[(trade.fund_id, trade.symbol, effect.opened.lot_id)] = runs
        self._follow(trade, event.method, effect.lots)

    def _take(self, trade: TaxTrade, disposal: Disposal) -> list[_Piece]:
        """Take the disposal's shares from the front of its lot's runs, amounts pro rata."""
        runs = self.held[(trade.fund_id, trade.symbol, disposal.lot_id)]
        taken: list[_Shares] = []
        left = disposal.quantity
        while left > 0:
            run = runs[0]
            if run.quantity <= left:
                taken.append(runs.pop(0))
                left -= run.quantity
                continue
            carried = quantize_cents(run.adjustment * left / run.quantity)
            taken.append(_Shares(left, run.acquired, run.order, carried, run.tacked, run.used))
            run.quantity -= left
            run.adjustment -= carried
            left = _ZERO
        weights = [run.quantity for run in taken]
        return [
            _Piece(disposal, trade.fund_id, run, cost, fees, proceeds - sale_fees)
            for run, cost, fees, proceeds, sale_fees in zip(
                taken,
                allocate(disposal.cost, weights),
                allocate(disposal.fees, weights),
                allocate(disposal.proceeds, weights),
                allocate(disposal.sale_fees, weights),
                strict=True,
            )
        ]

    def _wash(self, index: int, piece: _Piece, sold: set[tuple[str, str]]) -> Decimal:
        """Disallow the piece's loss against unmatched replacement shares; return the amount."""
        loss = piece.cost + piece.fees + piece.shares.adjustment - piece.proceeds
        if loss <= 0:
            return _ZERO
        matched: list[tuple[_Shares, Decimal]] = []  # replacement run, loss shares it covers
        needed = piece.shares.quantity
        for candidate in self._candidates(index, piece, sold):
            if needed == 0:
                break
            run = candidate.shares
            take = min(run.quantity, needed * candidate.factor)
            if take < run.quantity:
                rest = _Shares(run.quantity - take, run.acquired, run.order)
                candidate.owner.insert(candidate.owner.index(run) + 1, rest)
                run.quantity = take
            covered = take / candidate.factor
            matched.append((run, covered))
            needed -= covered
        if not matched:
            return _ZERO
        covered_all = piece.shares.quantity - needed
        amount = loss if needed == 0 else quantize_cents(loss * covered_all / piece.shares.quantity)
        held_days = (piece.disposal.disposed - piece.disposal.acquired).days + piece.shares.tacked
        for (run, _), share in zip(matched, allocate(amount, [c for _, c in matched]), strict=True):
            run.adjustment += share
            run.tacked = held_days
            run.used = True
        return amount

    def _candidates(
        self, index: int, piece: _Piece, sold: set[tuple[str, str]]
    ) -> list[_Candidate]:
        """Unmatched shares of the symbol acquired within the window, in acquisition order."""
        symbol, day = piece.disposal.symbol, piece.disposal.disposed
        first, last = day - timedelta(days=WINDOW_DAYS), day + timedelta(days=WINDOW_DAYS)
        found: list[_Candidate] = []
        for (fund_id, lot_symbol, lot_id), runs in self.held.items():
            if lot_symbol != symbol or (fund_id, lot_id) in sold:
                continue
            found += [
                _Candidate(r, runs, Decimal(1))
                for r in runs
                if not r.used and first <= r.acquired <= last
            ]
        for later, (lot_symbol, runs) in self.future.items():
            if later > index and lot_symbol == symbol:
                found += [
                    _Candidate(r, runs, self._factor(symbol, day, r.acquired))
                    for r in runs
                    if not r.used and r.acquired <= last
                ]
        return sorted(found, key=lambda c: (c.shares.acquired, c.shares.order))

    def _factor(self, symbol: str, after: date, until: date) -> Decimal:
        """Shares on ``until`` per share on ``after``: the splits effective in (after, until]."""
        factor = Decimal(1)
        for s in self.splits:
            if s.symbol == symbol and after < s.effective <= until:
                factor *= s.ratio
        return factor

    def _follow(self, trade: TaxTrade, method: TaxLotMethod, lots: tuple[OpenLot, ...]) -> None:
        """Keep the runs keyed like the book lots: emptied lots go, average-cost lots merge."""
        ids = {lot.lot_id for lot in lots}
        mine = [k for k in self.held if k[0] == trade.fund_id and k[1] == trade.symbol]
        for key in mine:
            if key[2] in ids:
                continue
            runs = self.held.pop(key)
            if runs and method is TaxLotMethod.AVERAGE_COST and lots:
                target = self.held[(trade.fund_id, trade.symbol, lots[0].lot_id)]
                target.extend(runs)
                target.sort(key=lambda r: (r.acquired, r.order))


def _row(piece: _Piece, disallowed: Decimal) -> GainRow:
    d = piece.disposal
    basis = piece.cost + piece.fees + piece.shares.adjustment
    acquired = d.acquired - timedelta(days=piece.shares.tacked)
    return GainRow(
        fund_id=piece.fund_id,
        trade_id=d.trade_id,
        lot_id=d.lot_id,
        symbol=d.symbol,
        quantity=piece.shares.quantity,
        acquired=acquired,
        disposed=d.disposed,
        proceeds=piece.proceeds,
        basis=basis,
        adjustment_code="W" if disallowed > 0 else "",
        adjustment=disallowed,
        gain=piece.proceeds - basis + disallowed,
        term="long" if is_long_term(acquired, d.disposed) else "short",
    )


def _coalesce(runs: Sequence[_Shares]) -> list[_Shares]:
    """Neighbouring runs with no adjustment and the same tacked days, as one (for display).

    Why: an average-cost lot or a lot only partly matched as a replacement is kept as several
    runs while replaying; runs that differ in nothing a tax return shows are one lot to a reader.
    """
    out: list[_Shares] = []
    for run in runs:
        last = out[-1] if out else None
        if last and last.adjustment == run.adjustment == 0 and last.tacked == run.tacked:
            out[-1] = _Shares(
                last.quantity + run.quantity, last.acquired, last.order, _ZERO, last.tacked
            )
        else:
            out.append(run)
    return out


def _open_lots(
    replay: _Replay, books: Mapping[tuple[str, str], tuple[OpenLot, ...]]
) -> list[TaxLot]:
    out: list[TaxLot] = []
    for (fund_id, symbol), lots in books.items():
        for lot in lots:
            if lot.quantity < 0:
                continue
            runs = _coalesce(replay.held[(fund_id, symbol, lot.lot_id)])
            weights = [r.quantity for r in runs]
            for run, cost, fees in zip(
                runs, allocate(lot.cost, weights), allocate(lot.fees, weights), strict=True
            ):
                out.append(
                    TaxLot(
                        fund_id=fund_id,
                        lot_id=lot.lot_id,
                        symbol=symbol,
                        quantity=run.quantity,
                        acquired=lot.acquired,
                        adjusted_acquired=lot.acquired - timedelta(days=run.tacked),
                        basis=cost + fees + run.adjustment,
                        wash_sale_adjustment=run.adjustment,
                    )
                )
    return out


def tax_view(
    trades: Sequence[TaxTrade],
    methods: Mapping[str, TaxLotMethod],
    *,
    splits: Sequence[Split] = (),
) -> TaxView:
    """The entity's tax view: every fund's fills replayed with the wash-sale rule across funds.

    ``methods`` gives each fund's lot method (the book relief decides which lot a sale closes;
    the tax view follows it). ``trades`` must be in the order they happened (dates never going
    back); ``splits`` are applied before the fills of their effective date. Raises
    :class:`TreasuryInputError` for trades out of date order, a fund with no method, and any
    fill :func:`~mts1b_treasury.lots.apply_fill` refuses.
    """
    _check(trades, methods)
    events, books = _book(trades, methods, splits)
    replay = _Replay(splits)
    for event in events:
        if isinstance(event, _Fill) and event.effect.opened and event.effect.opened.quantity > 0:
            opened = event.effect.opened
            replay.future[event.index] = (
                opened.symbol,
                [_Shares(opened.quantity, opened.acquired, event.index)],
            )
    for event in events:
        if isinstance(event, Split):
            replay.split(event)
        else:
            replay.fill(event)
    return TaxView(tuple(replay.rows), tuple(_open_lots(replay, books)))
