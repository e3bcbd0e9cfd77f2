"""The daily NAV strike: a pure function from a fund's day to a :class:`FundNav`.

Why pure: a strike must be reproducible bit for bit. Everything it reads is in one frozen
:class:`NavInputs` (built by the service from the ledger: positions and marks, not tax lots);
nothing is read from a clock, a database or the environment, so striking the same inputs again
gives the same object, the same JSON and the same digests.

The arithmetic (exact ``Decimal``):

- ``positions_value = sum(quantity * mark)`` over the fund's positions at the close; a held
  symbol without a mark is refused (:class:`TreasuryInputError` naming ``marks`` and the
  symbol): a silent zero would strike a wrong NAV that still adds up.
- ``nav = cash + positions_value``; ``flows = sum(inputs.flows)``;
  ``pnl = nav - previous_nav - flows``; ``fees = commissions + borrow``.

Attribution (per strategy sleeve, the composer's ownership), for sleeve ``s``:

- market move: ``sum(previous_qty[s, sym] * (mark[sym] - previous_mark[sym]))``;
- trading: for each fill share ``q`` of ``s``: ``q * (mark - fill price)``;
- commissions: each fill's commission split pro rata by ``|share|`` among its sleeves,
  each part quantized to 0.01 (half even) and the remainder given to the last sleeve (in id
  order), so the parts sum to the commission exactly;
- dividends and borrow, per symbol, by the position held at the previous close (the shares that
  earned the dividend or were borrowed overnight): with ``amount`` the symbol's dividend less its
  borrow, the sleeve's part is
  ``amount * previous_qty[s, sym] / fund_previous_qty[sym]`` quantized to 0.01, where the fund's
  previous quantity is ``positions[sym] - sum(fill quantities of sym)``. A long sleeve in a net
  short fund so receives borrow (it lends its shares to the short sleeve inside the fund).

Identity: ``pnl == sum(pnl_by_strategy) + unattributed`` holds *by construction*, because
``unattributed = pnl - sum(pnl_by_strategy)``. ``unattributed`` is zero when every share the fund
held and traded is owned by a sleeve and the cash moved only by the fills, flows, dividends and
borrow given. It is non-zero for: shares no sleeve owns (their market move, trading, dividends
and borrow), fills without a sleeve split (their commission too), the 0.01 rounding of the
dividend and borrow parts, and cash the inputs do not explain (interest, corrections, a ledger
that disagrees with its fills). It is the number to watch: the broker reconciles the fund,
attribution is exact at the sleeve level, and the residual is explicit.

Internal transfers between sleeves (the composer's crossing: shares change owner at the
reference price, nothing reaches the venue) are given as fills of quantity 0 whose split nets to
zero at the transfer price: they move no cash and no fund position, but each sleeve's trading
term prices its side.

Each sleeve's position at the close must equal its previous position plus its fill shares
(refused otherwise, naming ``sleeve_positions``): ownership that changed without a fill or a
transfer would make the attribution silently wrong.

Reproducibility: ``inputs_sha256`` is the SHA-256 of :func:`canonical_inputs_json` (sorted keys,
no spaces, decimals as their exact normalised text - ``1.0`` and ``1.00`` are both ``"1"``,
``1E+2`` is ``"100"`` - fills and flows sorted, since their order does not change the strike);
``outputs_sha256`` is the SHA-256 of the FundNav's fields except the two digests, in the same
canonical form. Every decimal of the FundNav is itself written in that normalised form, so
inputs that hash the same strike the same JSON bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from mts1b_foundation import FundNav
from mts1b_foundation.wire import fit_to_domain
from pydantic import ValidationError

from mts1b_treasury.errors import TreasuryInputError

__all__ = [
    "NavFill",
    "NavInputs",
    "canonical_decimal",
    "canonical_inputs_json",
    "canonical_outputs_json",
    "fills_net_cash",
    "inputs_sha256",
    "outputs_sha256",
    "session_close",
    "split_commission",
    "strike_nav",
]

CENT = Decimal("0.01")
_ZERO = Decimal(0)
_PREC = 120  # exact for any product and sum of wire decimals (27 digits each)
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127}$")

SleeveKey = tuple[str, str]
"""``(strategy_id, symbol)``."""


@dataclass(frozen=True, slots=True)
class NavFill:
    """One fill of the session, as the ledger posted it.

    ``quantity`` is signed (bought > 0, sold < 0); ``commission`` is what the fund paid (>= 0).
    ``sleeves`` splits the quantity among strategies (signed shares that sum to ``quantity``
    exactly), or is empty when no sleeve owns the fill. A quantity of 0 with a split that nets
    to 0 is an internal transfer between sleeves at ``price``.
    """

    symbol: str
    quantity: Decimal
    price: Decimal
    commission: Decimal = _ZERO
    sleeves: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NavInputs:
    """Everything a strike reads, plain values the service takes from the ledger and datalake.

    ``positions`` are the fund's signed quantities at the close; ``sleeve_positions`` and
    ``previous_sleeve_positions`` the sleeves' ``{(strategy_id, symbol): quantity}`` at this and
    the previous close. ``marks`` / ``previous_marks`` are the close prices of this and the
    previous session. ``cash`` is the posted cash at the end of the day (trade-date: it includes
    the day's fills, flows, dividends, borrow). ``flows`` are contributions (> 0) and
    withdrawals (< 0); ``borrow_fees`` the borrow charged per symbol (>= 0, a cost);
    ``dividends`` the cash received per symbol (negative for a short paying in lieu).
    ``previous_nav`` is 0 for the first strike. Mappings must not be mutated after construction.
    """

    fund_id: str
    session: dt.date
    as_of: dt.datetime
    previous_nav: Decimal
    cash: Decimal
    positions: Mapping[str, Decimal]
    marks: Mapping[str, Decimal]
    previous_marks: Mapping[str, Decimal] = field(default_factory=dict)
    sleeve_positions: Mapping[SleeveKey, Decimal] = field(default_factory=dict)
    previous_sleeve_positions: Mapping[SleeveKey, Decimal] = field(default_factory=dict)
    fills: tuple[NavFill, ...] = ()
    flows: tuple[Decimal, ...] = ()
    borrow_fees: Mapping[str, Decimal] = field(default_factory=dict)
    dividends: Mapping[str, Decimal] = field(default_factory=dict)


def session_close(session: dt.date | str, calendar: str = "XNYS") -> dt.datetime:
    """The close (UTC) of ``session`` on ``calendar``: the ``as_of`` of its strike.

    Not called by :func:`strike_nav` (which stays pure); the service uses it to build
    :class:`NavInputs`. Early closes are the calendar's (13:00 ET on 3 July).
    """
    from mts1b_platform.calendars import MarketCalendar  # heavy import: only when used

    return MarketCalendar(calendar).close_of(session)


# --- canonical form ----------------------------------------------------------------------------


def canonical_decimal(value: Decimal) -> str:
    """The exact value as normalised plain text: ``1.0``/``1.00`` -> ``"1"``, ``1E+2`` -> ``"100"``.

    Why: a digest must identify the number, not how a producer happened to write it.
    """
    if not value:
        return "0"
    text = str(value)
    if "E" not in text:  # plain text (the usual case): only trailing zeros to drop
        return text.rstrip("0").rstrip(".") if "." in text else text
    with localcontext(prec=_PREC):
        return format(value.normalize(), "f")


def _canon(value: Decimal) -> Decimal:
    return Decimal(canonical_decimal(value))


def _amounts(values: Mapping[str, Decimal]) -> dict[str, str]:
    # unsorted here: _dumps sorts every object's keys
    return {key: canonical_decimal(value) for key, value in values.items()}


def _sleeve_amounts(values: Mapping[SleeveKey, Decimal]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for (strategy, symbol), qty in values.items():
        out.setdefault(strategy, {})[symbol] = canonical_decimal(qty)
    return out


def _fill_order(doc: dict[str, Any]) -> tuple[Any, ...]:
    return (doc["symbol"], doc["quantity"], doc["price"], doc["commission"],
            sorted(doc["sleeves"].items()))


def _fill_doc(fill: NavFill) -> dict[str, Any]:
    return {"symbol": fill.symbol, "quantity": canonical_decimal(fill.quantity),
            "price": canonical_decimal(fill.price),
            "commission": canonical_decimal(fill.commission),
            "sleeves": _amounts(fill.sleeves)}


def _dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_inputs_json(inputs: NavInputs) -> str:
    """The inputs as canonical JSON text (what :func:`inputs_sha256` digests and the store keeps).

    Fills are sorted by their canonical fields (symbol, quantity, price, commission, split)
    and flows by value: the ledger's posting order
    does not change the strike, so it must not change the digest either.
    """
    fills = sorted((_fill_doc(f) for f in inputs.fills), key=_fill_order)
    flows = [canonical_decimal(f) for f in sorted(inputs.flows)]
    return _dumps({
        "fund_id": inputs.fund_id,
        "session": inputs.session.isoformat(),
        "as_of": inputs.as_of.astimezone(dt.UTC).isoformat(),
        "previous_nav": canonical_decimal(inputs.previous_nav),
        "cash": canonical_decimal(inputs.cash),
        "positions": _amounts(inputs.positions),
        "marks": _amounts(inputs.marks),
        "previous_marks": _amounts(inputs.previous_marks),
        "sleeve_positions": _sleeve_amounts(inputs.sleeve_positions),
        "previous_sleeve_positions": _sleeve_amounts(inputs.previous_sleeve_positions),
        "fills": fills,
        "flows": flows,
        "borrow_fees": _amounts(inputs.borrow_fees),
        "dividends": _amounts(inputs.dividends),
    })


def inputs_sha256(inputs: NavInputs) -> str:
    """SHA-256 (hex) of :func:`canonical_inputs_json`."""
    return hashlib.sha256(canonical_inputs_json(inputs).encode()).hexdigest()


def _outputs_doc(nav: FundNav | Mapping[str, Any]) -> dict[str, Any]:
    data = nav.model_dump() if isinstance(nav, FundNav) else dict(nav)
    doc: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("inputs_sha256", "outputs_sha256"):
            continue
        if isinstance(value, Decimal):
            doc[key] = canonical_decimal(value)
        elif isinstance(value, dict):
            doc[key] = _amounts(value)
        elif isinstance(value, dt.datetime):
            doc[key] = value.astimezone(dt.UTC).isoformat()
        else:
            doc[key] = value
    return doc


def canonical_outputs_json(nav: FundNav | Mapping[str, Any]) -> str:
    """The FundNav's fields except its two digests, canonical JSON (what ``outputs_sha256``
    digests); accepts the FundNav or the dict of its fields before the digests exist."""
    return _dumps(_outputs_doc(nav))


def outputs_sha256(nav: FundNav | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical_outputs_json`."""
    return hashlib.sha256(canonical_outputs_json(nav).encode()).hexdigest()


# --- checks ------------------------------------------------------------------------------------


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise TreasuryInputError(name, value, "not an identifier (1-128 of A-Z a-z 0-9 _ . : @ "
                                              "= + -, starting with a letter, digit or _)")


def _check_decimal(name: str, value: object) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TreasuryInputError(name, value, "expected a finite Decimal")
    return value


def _check_amounts(name: str, values: Mapping[Any, Decimal], *, minimum: Decimal | None = None,
                   why: str = "") -> None:
    """Every value a finite Decimal (>= ``minimum`` when given). Names are only formatted for
    a value that fails: this runs over every position and mark of the fund."""
    for key, value in values.items():
        if type(value) is not Decimal or not value.is_finite():
            _check_decimal(f"{name}[{key}]", value)  # raises, naming the entry
        if minimum is not None and value < minimum:
            raise TreasuryInputError(name, {key: value}, why)


def _check_fill(index: int, fill: NavFill) -> None:
    where = f"fills[{index}]"
    _check_decimal(f"{where}.quantity", fill.quantity)
    if _check_decimal(f"{where}.price", fill.price) < 0:
        raise TreasuryInputError(f"{where}.price", fill.price, "a price cannot be negative")
    if _check_decimal(f"{where}.commission", fill.commission) < 0:
        raise TreasuryInputError(f"{where}.commission", fill.commission,
                                 "a commission is a cost: >= 0")
    _check_amounts(f"{where}.sleeves", fill.sleeves)
    if fill.sleeves:
        with localcontext(prec=_PREC):
            total = sum(fill.sleeves.values(), _ZERO)
        if total != fill.quantity:
            raise TreasuryInputError(f"{where}.sleeves", dict(fill.sleeves),
                                     f"the shares sum to {total}, not the fill's quantity "
                                     f"{fill.quantity} ({fill.symbol})")
    if not fill.quantity and not any(fill.sleeves.values()):
        raise TreasuryInputError(f"{where}.quantity", fill.quantity,
                                 "a fill of 0 is only an internal transfer: its split must "
                                 "move shares between sleeves")


def _check_strategies(inputs: NavInputs) -> None:
    for name, keys in (("sleeve_positions", {s for s, _ in inputs.sleeve_positions}),
                       ("previous_sleeve_positions",
                        {s for s, _ in inputs.previous_sleeve_positions}),
                       ("fills.sleeves", {s for f in inputs.fills for s in f.sleeves})):
        for strategy in sorted(keys):
            _check_id(name, strategy)


def _check_inputs(inputs: NavInputs) -> None:
    _check_id("fund_id", inputs.fund_id)
    if inputs.as_of.tzinfo is None or inputs.as_of.utcoffset() is None:
        raise TreasuryInputError("as_of", inputs.as_of, "must be timezone-aware")
    _check_decimal("previous_nav", inputs.previous_nav)
    _check_decimal("cash", inputs.cash)
    _check_amounts("positions", inputs.positions)
    for name in ("marks", "previous_marks"):
        _check_amounts(name, getattr(inputs, name), minimum=_ZERO,
                       why="a price cannot be negative")
    _check_amounts("sleeve_positions", inputs.sleeve_positions)
    _check_amounts("previous_sleeve_positions", inputs.previous_sleeve_positions)
    _check_strategies(inputs)
    for index, fill in enumerate(inputs.fills):
        _check_fill(index, fill)
    _check_amounts("flows", dict(enumerate(inputs.flows)))
    _check_amounts("borrow_fees", inputs.borrow_fees, minimum=_ZERO,
                   why="a borrow fee is a cost: >= 0")
    _check_amounts("dividends", inputs.dividends)


def _mark(marks: Mapping[str, Decimal], name: str, symbol: str) -> Decimal:
    try:
        return marks[symbol]
    except KeyError:
        raise TreasuryInputError(name, symbol, f"no mark for {symbol!r}, which the fund "
                                               "holds or traded (never a silent zero)") from None


def _check_sleeve_continuity(inputs: NavInputs) -> None:
    """Each sleeve's close position = its previous one + its fill shares (see the module)."""
    expected: dict[SleeveKey, Decimal] = {k: v for k, v in
                                          inputs.previous_sleeve_positions.items() if v}
    for fill in inputs.fills:
        for strategy, share in fill.sleeves.items():
            key = (strategy, fill.symbol)
            expected[key] = expected.get(key, _ZERO) + share
    actual = {k: v for k, v in inputs.sleeve_positions.items() if v}
    for key in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(key, _ZERO), actual.get(key, _ZERO)
        if want != got:
            raise TreasuryInputError(
                "sleeve_positions", {key: got},
                f"sleeve {key[0]!r} holds {got} {key[1]!r} at the close, but its previous "
                f"position and fills give {want}")


# --- the strike --------------------------------------------------------------------------------


def split_commission(commission: Decimal, shares: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """``commission`` split among ``shares`` pro rata by ``|share|``, each part quantized to 0.01
    (half even), the last sleeve in id order taking the remainder: the parts sum to
    ``commission`` exactly. Empty when no share is non-zero (nobody owns the fill)."""
    owners = sorted(s for s, q in shares.items() if q)
    if not owners:
        return {}
    gross = sum((abs(shares[s]) for s in owners), _ZERO)
    parts: dict[str, Decimal] = {}
    for strategy in owners[:-1]:
        parts[strategy] = (commission * abs(shares[strategy]) / gross).quantize(
            CENT, rounding=ROUND_HALF_EVEN)
    parts[owners[-1]] = commission - sum(parts.values(), _ZERO)
    return parts


def _fund_previous_quantities(inputs: NavInputs) -> dict[str, Decimal]:
    previous = dict(inputs.positions)
    for fill in inputs.fills:
        previous[fill.symbol] = previous.get(fill.symbol, _ZERO) - fill.quantity
    return previous


def _positions_value(inputs: NavInputs) -> Decimal:
    total = _ZERO
    for symbol, qty in inputs.positions.items():
        if qty:
            total += qty * _mark(inputs.marks, "marks", symbol)
    return total


def _attribute(inputs: NavInputs) -> dict[str, Decimal]:
    """Each sleeve's PnL of the day (unrounded), as the module describes."""
    pnl: dict[str, Decimal] = {}
    strategies = {s for s, _ in inputs.previous_sleeve_positions}
    strategies |= {s for s, _ in inputs.sleeve_positions}
    strategies |= {s for f in inputs.fills for s in f.sleeves}
    for strategy in strategies:
        pnl[strategy] = _ZERO
    for (strategy, symbol), qty in inputs.previous_sleeve_positions.items():
        if qty:
            move = (_mark(inputs.marks, "marks", symbol)
                    - _mark(inputs.previous_marks, "previous_marks", symbol))
            pnl[strategy] += qty * move
    for fill in inputs.fills:
        if not fill.sleeves:
            continue
        mark = _mark(inputs.marks, "marks", fill.symbol)
        for strategy, share in fill.sleeves.items():
            pnl[strategy] += share * (mark - fill.price)
        for strategy, part in split_commission(fill.commission, fill.sleeves).items():
            pnl[strategy] -= part
    _attribute_by_holding(inputs, pnl)
    return pnl


def _attribute_by_holding(inputs: NavInputs, pnl: dict[str, Decimal]) -> None:
    """Dividends (+) and borrow (-) per symbol, by each sleeve's share of the fund's previous
    close position, each part quantized to 0.01; the rest stays unattributed."""
    amounts: dict[str, Decimal] = dict(inputs.dividends)
    for symbol, fee in inputs.borrow_fees.items():
        amounts[symbol] = amounts.get(symbol, _ZERO) - fee
    if not any(amounts.values()):
        return
    fund_previous = _fund_previous_quantities(inputs)
    for (strategy, symbol), qty in inputs.previous_sleeve_positions.items():
        amount, held = amounts.get(symbol, _ZERO), fund_previous.get(symbol, _ZERO)
        if qty and amount and held:
            pnl[strategy] += (amount * qty / held).quantize(CENT, rounding=ROUND_HALF_EVEN)


def _fit(name: str, value: Decimal) -> Decimal:
    try:
        return _canon(fit_to_domain(value))
    except ValueError as exc:
        raise TreasuryInputError(name, value, f"outside the wire's numeric domain: {exc}") from None


def _figures(inputs: NavInputs) -> dict[str, Any]:
    """The FundNav's fields (without digests), every decimal canonical and in the domain."""
    with localcontext(prec=_PREC):
        positions_value = _fit("positions_value", _positions_value(inputs))
        nav = _fit("nav", inputs.cash + positions_value)
        flows = _fit("flows", sum(inputs.flows, _ZERO))
        pnl = _fit("pnl", nav - inputs.previous_nav - flows)
        commissions = sum((f.commission for f in inputs.fills), _ZERO)
        fees = _fit("fees", commissions + sum(inputs.borrow_fees.values(), _ZERO))
        by_strategy = {s: _fit(f"pnl_by_strategy[{s}]", v)
                       for s, v in sorted(_attribute(inputs).items())}
        unattributed = _fit("unattributed", pnl - sum(by_strategy.values(), _ZERO))
    return {
        "schema_version": FundNav.SCHEMA_VERSION,
        "fund_id": inputs.fund_id,
        "session": inputs.session.isoformat(),
        "as_of": inputs.as_of.astimezone(dt.UTC),
        "nav": nav,
        "previous_nav": _canon(inputs.previous_nav),
        "cash": _canon(inputs.cash),
        "positions_value": positions_value,
        "pnl": pnl,
        "fees": fees,
        "flows": flows,
        "pnl_by_strategy": by_strategy,
        "unattributed": unattributed,
        "positions": sum(1 for q in inputs.positions.values() if q),
    }


def strike_nav(inputs: NavInputs, *, inputs_digest: str | None = None) -> FundNav:
    """Strike the fund's NAV for ``inputs.session`` (see the module for every rule).

    ``inputs_digest``: :func:`inputs_sha256` of these inputs when the caller computed it
    already (the store does, to look the strike up); computed here otherwise.
    Raises :class:`TreasuryInputError` naming the field and value of any bad input.
    """
    _check_inputs(inputs)
    _check_sleeve_continuity(inputs)
    figures = _figures(inputs)
    digest = inputs_sha256(inputs) if inputs_digest is None else inputs_digest
    try:
        return FundNav(**figures, inputs_sha256=digest, outputs_sha256=outputs_sha256(figures))
    except ValidationError as exc:
        raise TreasuryInputError("inputs", inputs.fund_id,
                                 f"the strike is not a valid FundNav: {exc}") from None


def fills_net_cash(fills: Iterable[NavFill]) -> Decimal:
    """The cash the fills move: ``-(quantity * price) - commission`` summed (bought < 0)."""
    with localcontext(prec=_PREC):
        return sum((-(f.quantity * f.price) - f.commission for f in fills), _ZERO)
