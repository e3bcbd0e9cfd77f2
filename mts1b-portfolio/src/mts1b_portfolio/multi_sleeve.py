"""Several strategies in one fund: ``compose`` nets their sleeves into one owned target.

The steps, each in its own module:

1. **Net** (here): the fund's target weight per symbol is the capital-weighted sum of the
   sleeves' weights, ``t_i = sum_s share_s x w_s,i``, plus the holdings of sleeves of
   ``current`` that are not composed (a halted strategy keeps what it holds: the OMS does not
   trade a sleeve the allocation does not list). Netting per *symbol* means two strategies
   trading one name make one target, not two orders fighting each other (LEAN issue #8630).
2. **Fund step** (:mod:`~mts1b_portfolio.fundstep`): the exact Euclidean projection of ``t``
   onto the constraints - per-name caps, gross, net, turnover against the holdings
   (:mod:`~mts1b_portfolio.projection`) - or a coded fallback when they cannot all hold. A
   name no composed sleeve targets or holds is pinned at its holding (the fund step never buys
   what nobody asked for, nor hedges a halted strategy's holdings with the other sleeves).
3. **Rounding** (here): each symbol's trade (target shares less held shares) is rounded
   *towards zero* to whole lots - towards the holding, so rounding never adds turnover - and
   dropped when below the instrument's ``min_quantity`` or the constraints'
   ``min_trade_notional``.
4. **Ownership** (:mod:`~mts1b_portfolio.ownership`): each symbol's trade is split across the
   sleeves, in whole lots, summing exactly to the fund's; the allocation lists each composed
   sleeve's holding plus its part of the trade.

Floats and Decimals: steps 1-2 and the proportions of step 4 are float64 (weights are
fractions; a float's relative error of 1e-16 is far below a share). Everything that leaves
(shares, notionals, weights on the wire) is Decimal, computed from Decimal prices, lots and
holdings; in the target and its allocation the only float that reaches a Decimal is a whole
number of lots (the report's ``wanted`` figures are floats rounded for reading).

Deterministic: symbols and sleeves are processed in sorted order and no step depends on time,
randomness or hash order, so the same inputs give the same target to the last digit.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from mts1b_foundation import SleeveAllocation, TargetPortfolio
from mts1b_foundation.wire import MAX_SCALE, fit_to_domain

from mts1b_portfolio.errors import ComposeInputError
from mts1b_portfolio.fundstep import FundStep, fund_step
from mts1b_portfolio.inputs import (
    Constraints,
    Sleeve,
    check_as_of,
    check_capital,
    check_current,
    check_identifier,
    check_sleeves,
    check_symbol_name,
)
from mts1b_portfolio.market import Market
from mts1b_portfolio.ownership import split_trades
from mts1b_portfolio.projection import Problem
from mts1b_portfolio.report import ComposeReport, Composition, Fallback, HeldBack, HoldCode
from mts1b_portfolio.wire_out import allocation_model

__all__ = ["ComposeInputError", "Composition", "Constraints", "Sleeve", "compose"]

FloatArray = npt.NDArray[np.float64]
ZERO = Decimal(0)
_LOT_SLACK = 1e-9
"""A trade within this fraction of a lot below a lot boundary counts as reaching it (a target
of exactly 100 shares computed in floats may come out as 99.99999999999997)."""


def compose(
    sleeves: Iterable[Sleeve],
    capital: Decimal | int,
    constraints: Constraints,
    current: Mapping[str, Decimal] | SleeveAllocation,
    prices: Mapping[str, Decimal],
    instruments: Mapping[str, Any] | None = None,
    *,
    fund_id: str,
    as_of: dt.datetime,
    exclude: Iterable[str] = (),
) -> Composition:
    """The fund's target for ``sleeves``, owned sleeve by sleeve, and a report.

    ``capital``: the fund's capital (its NAV), which weights are fractions of. ``current``:
    what the fund holds, in shares - a :class:`~mts1b_foundation.SleeveAllocation` of each
    sleeve's holdings (the OMS's sleeve positions), or a plain ``symbol -> shares`` mapping:
    ``{}`` for a fund that holds nothing; with holdings, no ownership is known (the whole
    target is then split as if built from nothing, and the crossing figures are ``None``).
    ``prices``: the reference price per symbol (Decimal), needed for every symbol a sleeve or
    the holdings name. ``instruments``: lot size, minimum quantity and multiplier per symbol
    (default: an equity's).

    ``exclude``: strategy ids composed away - a halted or disabled strategy. Composing
    without a sleeve is all that removing it takes: the others' targets do not depend on it
    unless a fund constraint binds, and its holdings stay as they are (it is not in the
    allocation, so the OMS does not trade it). To close a strategy's holdings instead, compose
    it with no weights.

    Raises :class:`~mts1b_portfolio.errors.ComposeInputError` for bad input only; infeasible
    constraints are a fallback with a code in ``report.fallback`` (module docstring of
    :mod:`~mts1b_portfolio.fundstep`).
    """
    fund = check_identifier(fund_id, "fund_id")
    stamp = check_as_of(as_of)
    money = check_capital(capital)
    if not isinstance(constraints, Constraints):
        raise ComposeInputError("constraints", constraints, "expected a Constraints")
    limits = constraints.checked()
    kept, share_list, excluded = check_sleeves(sleeves, exclude)
    book, owned = check_current(current, fund)
    listed = [s.strategy_id for s in kept]
    kept_sleeves = sorted(set(owned) - set(listed)) if owned is not None else []

    symbols = _universe(kept, book)
    market = Market.build(symbols, prices, instruments)
    index = {symbol: i for i, symbol in enumerate(symbols)}
    n = len(symbols)
    cap = float(money)
    shares = np.array(share_list, dtype=np.float64)
    weights = _weight_matrix(kept, index, n)

    held_dec = [owned.get(sid, {}) if owned is not None else {} for sid in listed]
    held = _holdings_matrix(held_dec, index, n)
    frozen_dec = _sum_holdings([owned[sid] for sid in kept_sleeves] if owned else [], index)
    cur_dec = [book.get(symbol, ZERO) for symbol in symbols]
    cur = np.array([float(q) for q in cur_dec], dtype=np.float64)
    per_weight = cap / market.value_f  # shares per unit of weight
    frozen = np.array([float(q) for q in frozen_dec], dtype=np.float64)

    netted = shares @ weights + frozen / per_weight
    problem = _problem(limits, index, netted, cur / per_weight)
    desired = shares[:, None] * weights * per_weight[None, :]
    movable = (desired != 0).any(axis=0) | (held != 0).any(axis=0)
    if owned is None:  # holdings without owner: the composed sleeves own them now
        movable |= cur != 0
    _check_lot_counts(market, cur, desired, held, problem.target * per_weight)
    step = fund_step(problem, movable)

    trade, codes = _round_trades(step, problem, market, cur, per_weight, limits)
    target_dec = [c + t for c, t in zip(cur_dec, trade, strict=True)]

    # the part of each symbol's target the composed sleeves own, and its change
    listed_now = [c - f for c, f in zip(cur_dec, frozen_dec, strict=True)] \
        if owned is not None else [ZERO] * n
    amount_dec = [q - f - h for q, f, h in zip(target_dec, frozen_dec, listed_now, strict=True)]
    allocation, sleeve_lots, largest = _allocate(kept, shares, desired, held, held_dec,
                                                 amount_dec, market)
    owned_total = [q - f for q, f in zip(target_dec, frozen_dec, strict=True)]

    report = _report(step, market, money, trade, target_dec, netted, codes, cur, per_weight,
                     sleeve_lots if owned is not None else None, excluded, kept_sleeves)
    target = TargetPortfolio(
        fund_id=fund, as_of=stamp, nav=money, sources=listed,
        weights={symbols[i]: _weight(q * market.value[i] / money)
                 for i, q in enumerate(target_dec) if q != 0},
        allocation=allocation_model(fund, stamp, allocation, symbols, largest, owned_total))
    return Composition(target, report)


_PLACES = Decimal(1).scaleb(-MAX_SCALE)


def _weight(value: Decimal) -> Decimal:
    """A weight on the wire: 12 places (half-even); :func:`fit_to_domain` only for the rare
    weight of 1E+8 and more, where 12 places would exceed 20 digits (same result, 20 times
    the cost)."""
    if -100_000_000 < value < 100_000_000:
        rounded = value.quantize(_PLACES, rounding=ROUND_HALF_EVEN)
        return value if rounded == value else rounded  # as written when it fits, as fit does
    return fit_to_domain(value)


def _universe(kept: list[Sleeve], book: Mapping[str, Decimal]) -> list[str]:
    """Every symbol a composed sleeve or the holdings name, sorted; each checked once."""
    names: set[str] = set(book)
    for sleeve in kept:
        for symbol in sleeve.weights:
            if symbol not in names:
                check_symbol_name(symbol, f"sleeves[{sleeve.strategy_id!r}].weights")
                names.add(symbol)
    return sorted(names)


def _weight_matrix(kept: list[Sleeve], index: Mapping[str, int], n: int) -> FloatArray:
    """``(S, n)`` sleeve weights; a NaN, infinity or non-number names its sleeve and symbol."""
    matrix = np.zeros((len(kept), n), dtype=np.float64)
    for row, sleeve in enumerate(kept):
        names = list(sleeve.weights)
        values = list(sleeve.weights.values())
        odd = {t for t in set(map(type, values))
               if t is bool or not issubclass(t, float | int | Decimal)}
        if odd:  # text, None, booleans: np.array would read "0.5" and True as numbers
            numbers = np.array([np.nan if type(v) in odd else 0.0 for v in values])
        else:
            try:
                numbers = np.array(values, dtype=np.float64)
            except OverflowError:  # an int beyond float range
                numbers = np.array([np.nan if isinstance(v, int) and abs(v) > 2**1023 else v
                                    for v in values], dtype=np.float64)
        bad = np.nonzero(~np.isfinite(numbers))[0]
        if bad.size:
            symbol = names[int(bad[0])]
            raise ComposeInputError(f"sleeves[{sleeve.strategy_id!r}].weights[{symbol!r}]",
                                    sleeve.weights[symbol], "must be a finite number (float, "
                                                            "int or Decimal)")
        matrix[row, [index[s] for s in names]] = numbers
    return matrix


def _holdings_matrix(held: Sequence[Mapping[str, Decimal]], index: Mapping[str, int],
                     n: int) -> FloatArray:
    """``(S, n)`` float shares each composed sleeve holds."""
    matrix = np.zeros((len(held), n), dtype=np.float64)
    for row, holdings in enumerate(held):
        if holdings:
            columns = [index[symbol] for symbol in holdings]
            matrix[row, columns] = np.array(list(holdings.values()), dtype=np.float64)
    return matrix


def _sum_holdings(held: Sequence[Mapping[str, Decimal]], index: Mapping[str, int]) -> list[Decimal]:
    """Per symbol (in ``index`` order), the exact sum of the given sleeves' holdings."""
    total = [ZERO] * len(index)
    for holdings in held:
        for symbol, quantity in holdings.items():
            total[index[symbol]] += quantity
    return total


_MAX_LOTS = float(2**52)


def _check_lot_counts(market: Market, *shares: FloatArray) -> None:
    """Positions must count fewer than 2**52 lots: lot counts are computed in floats, exact
    only below that (a lot of 1E-12 with a position of 1E+5 would already be 1E+17 lots)."""
    for values in shares:
        lots = np.abs(values) / market.lot_f
        over = np.flatnonzero(np.any(np.atleast_2d(lots) >= _MAX_LOTS, axis=0))
        if over.size:
            symbol = market.symbols[int(over[0])]
            raise ComposeInputError(f"instruments[{symbol!r}].lot_size",
                                    market.lot[int(over[0])],
                                    "too fine for positions of this size: more than 2**52 "
                                    "lots")


def _bound(value: float | int | Decimal | None, default: float) -> float:
    return default if value is None else float(value)


def _problem(limits: Constraints, index: Mapping[str, int], netted: FloatArray,
             current: FloatArray) -> Problem:
    """The projection problem of the constraints (weights are fractions of the capital); a
    per-symbol cap on a symbol outside the composition does not matter."""
    hi = np.full(len(index), _bound(limits.max_weight, math.inf))
    for symbol, value in limits.max_weight_by_symbol.items():
        if symbol in index:
            hi[index[symbol]] = float(value)
    lo = np.zeros(len(index)) if limits.long_only else -hi
    return Problem(target=netted, current=current, lo=lo, hi=hi,
                   gross=_bound(limits.max_gross, math.inf),
                   net_lo=_bound(limits.min_net, -math.inf),
                   net_hi=_bound(limits.max_net, math.inf),
                   turnover=_bound(limits.max_turnover, math.inf))


def _round_trades(step: FundStep, problem: Problem, market: Market, cur: FloatArray,
                  per_weight: FloatArray, limits: Constraints
                  ) -> tuple[list[Decimal], dict[int, HoldCode]]:
    """Each symbol's trade in shares (Decimal, whole lots towards the holding) and, for the
    names the sleeves wanted to trade but that do not trade, why (by index)."""
    wanted = problem.target * per_weight - cur
    stepped = step.weights * per_weight - cur
    lots = np.floor(np.abs(stepped) / market.lot_f + _LOT_SLACK) * np.sign(stepped)
    trade: list[Decimal] = []
    codes: dict[int, HoldCode] = {}
    for i, count in enumerate(lots.tolist()):
        quantity = market.lot[i] * int(count) if count else ZERO
        code = None
        if quantity and abs(quantity) < market.min_quantity[i]:
            code = HoldCode.MIN_QUANTITY
        elif quantity and abs(quantity) * market.value[i] < limits.min_trade_notional:
            code = HoldCode.MIN_TRADE
        if code is not None:
            quantity = ZERO
        trade.append(quantity)
        if quantity == 0 and abs(wanted[i]) > 1e-6 * market.lot_f[i]:
            codes[i] = code or _why_no_trade(step, abs(stepped[i]), market.lot_f[i])
    return trade, codes


def _why_no_trade(step: FundStep, stepped: float, lot: float) -> HoldCode:
    if step.fallback in (Fallback.NET_FLOOR_UNREACHABLE, Fallback.NET_CEILING_UNREACHABLE,
                         Fallback.GROSS_UNREACHABLE):
        return HoldCode.INFEASIBLE
    if stepped <= 1e-9 * lot:
        return HoldCode.TURNOVER_CAP if step.turnover_binds else HoldCode.CONSTRAINTS
    return HoldCode.LOT_SIZE


def _allocate(kept: list[Sleeve], shares: FloatArray, desired: FloatArray, held: FloatArray,
              held_dec: Sequence[Mapping[str, Decimal]], amount_dec: list[Decimal],
              market: Market) -> tuple[dict[str, dict[str, Decimal]], npt.NDArray[np.int64],
                                        FloatArray]:
    """The allocation (each composed sleeve's holding plus its part of the trade), each
    sleeve's trade in lots ``(S, n)``, and per symbol a bound of the largest ``|share|``
    (for :func:`~mts1b_portfolio.wire_out.allocation_model`). See
    :mod:`~mts1b_portfolio.ownership`."""
    lots_of = [int((a / lot).to_integral_value(rounding=ROUND_FLOOR))
               for a, lot in zip(amount_dec, market.lot, strict=True)]
    left = [a - lot * k for a, lot, k in zip(amount_dec, market.lot, lots_of, strict=True)]
    amount_lots = np.array(lots_of, dtype=np.int64)
    amount = np.array([float(a) for a in amount_dec], dtype=np.float64)
    lots, first = split_trades(desired - held, held, shares, amount_lots, amount,
                               market.lot_f)
    symbols, lot = market.symbols, market.lot
    remainder: dict[int, dict[int, Decimal]] = {}  # row -> symbol index -> sub-lot part
    left_f = np.zeros(len(left))
    for i, extra in enumerate(left):
        if extra:
            remainder.setdefault(int(first[i]), {})[i] = extra
            left_f[i] = abs(float(extra))
    largest = (np.abs(held + lots * market.lot_f).max(axis=0, initial=0.0) + left_f) \
        * (1 + 1e-12)
    allocation: dict[str, dict[str, Decimal]] = {}
    for row, sleeve in enumerate(kept):
        mine = {symbol: q for symbol, q in held_dec[row].items() if q}
        extras = remainder.get(row, {})
        counts = lots[row]
        changed = np.flatnonzero(counts).tolist()
        for i, count in zip(changed, counts[changed].tolist(), strict=True):
            symbol = symbols[i]
            mine[symbol] = mine.get(symbol, ZERO) + lot[i] * count
        for i, extra in extras.items():
            mine[symbols[i]] = mine.get(symbols[i], ZERO) + extra
        allocation[sleeve.strategy_id] = {s: q for s, q in sorted(mine.items()) if q}
    return allocation, lots, largest


def _report(step: FundStep, market: Market, capital: Decimal, trade: list[Decimal],
            target: list[Decimal], netted: FloatArray, codes: Mapping[int, HoldCode],
            cur: FloatArray, per_weight: FloatArray, sleeve_lots: npt.NDArray[np.int64] | None,
            excluded: tuple[str, ...], kept_sleeves: list[str]) -> ComposeReport:
    """The figures of the composition (see :class:`~mts1b_portfolio.report.ComposeReport`)."""
    value = market.value
    traded = sum((abs(t) * v for t, v in zip(trade, value, strict=True)), ZERO)
    gross = sum((abs(q) * v for q, v in zip(target, value, strict=True)), ZERO)
    net = sum((q * v for q, v in zip(target, value, strict=True)), ZERO)
    crossed: dict[str, Decimal] | None = None
    crossed_notional = saved = sleeve_traded = None
    if sleeve_lots is not None:
        sleeve_total = np.abs(sleeve_lots).sum(axis=0)
        crossed, crossed_notional, sleeve_traded = {}, ZERO, ZERO
        for i in np.nonzero(sleeve_total)[0].tolist():
            sleeve_traded += market.lot[i] * int(sleeve_total[i]) * value[i]
            extra = market.lot[i] * int(sleeve_total[i]) - abs(trade[i])
            if extra > 0:
                crossed[market.symbols[i]] = extra / 2
                crossed_notional += extra / 2 * value[i]
        saved = 2 * crossed_notional
    wanted = netted * per_weight - cur
    held_back = tuple(HeldBack(market.symbols[i], code, Decimal(f"{wanted[i]:.6f}"))
                      for i, code in sorted(codes.items()))
    return ComposeReport(
        turnover=fit_to_domain(traded / capital), traded_notional=traded,
        gross=fit_to_domain(gross / capital), net=fit_to_domain(net / capital),
        netted_gross=float(np.abs(netted).sum()), netted_net=float(netted.sum()),
        crossed_shares=crossed, crossed_notional=crossed_notional, turnover_saved=saved,
        sleeve_traded_notional=sleeve_traded, held_back=held_back, excluded=excluded,
        kept_sleeves=tuple(kept_sleeves), fallback=step.fallback,
        turnover_needed=None if step.turnover_needed is None or
        not math.isfinite(step.turnover_needed) else step.turnover_needed,
        iterations=step.iterations, multipliers=step.multipliers)
