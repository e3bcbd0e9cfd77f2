"""What :func:`~mts1b_portfolio.multi_sleeve.compose` takes: sleeves and constraints, and the
checks that turn bad input into one clear error.

Why the checks are strict and early: a NaN weight or a price of 0 would otherwise travel through
the float arithmetic of the fund step and come out as a silently wrong order. Every check raises
:class:`~mts1b_portfolio.errors.ComposeInputError` naming the field (``sleeves[2].share``,
``prices['AAPL']``) and the value.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mts1b_foundation import Signal, SleeveAllocation, is_symbol
from mts1b_foundation.wire import Identifier, UtcDatetime, check_wire_decimal
from pydantic import TypeAdapter, ValidationError

from mts1b_portfolio.errors import ComposeInputError
from mts1b_portfolio.wire_out import exact_totals

__all__ = ["Constraints", "Number", "Sleeve", "check_decimal", "check_float"]

Number = float | int | Decimal
"""A weight, share or bound: float, int or Decimal (booleans, NaN and infinities refused)."""

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_UTC: TypeAdapter[dt.datetime] = TypeAdapter(UtcDatetime)


@dataclass(frozen=True)
class Sleeve:
    """One strategy's part of a fund.

    ``weights``: symbol -> signed target weight as a fraction of *the sleeve's* capital (a
    sleeve fully invested long in two names has ``{"A": 0.5, "B": 0.5}``). ``share``: the
    sleeve's fraction of the fund's capital, in ``[0, 1]``; the shares of a fund's sleeves sum
    to at most 1 (the rest is cash). A sleeve with no weights is a target of 0 in everything:
    composing it closes what it holds.
    """

    strategy_id: str
    weights: Mapping[str, Number]
    share: Number

    @classmethod
    def from_signal(cls, signal: Signal, share: Number) -> Sleeve:
        """The sleeve of a strategy's published :class:`~mts1b_foundation.Signal`."""
        return cls(signal.strategy_id, dict(signal.weights), share)


@dataclass(frozen=True)
class Constraints:
    """The fund's limits, in weights (fractions of the fund's capital). ``None``: no limit.

    - ``max_gross``: ``sum |w| <= max_gross``.
    - ``min_net`` / ``max_net``: ``min_net <= sum w <= max_net``.
    - ``max_weight``: ``|w_i| <= max_weight`` for every name; ``max_weight_by_symbol``
      overrides it per name. ``long_only``: ``w_i >= 0``.
    - ``max_turnover``: ``sum |w - w_current| <= max_turnover`` (both legs counted: selling
      10 % of the fund and buying 10 % is a turnover of 0.2).
    - ``min_trade_notional``: trades worth less (``|shares| x price x multiplier``, in the
      fund's currency) are dropped after rounding.
    """

    max_gross: Number | None = None
    min_net: Number | None = None
    max_net: Number | None = None
    max_weight: Number | None = None
    max_weight_by_symbol: Mapping[str, Number] = field(default_factory=dict)
    long_only: bool = False
    max_turnover: Number | None = None
    min_trade_notional: Decimal = Decimal(0)

    def checked(self) -> Constraints:
        """``self`` after the checks: finite numbers, ``max_gross``/``max_weight``/
        ``max_turnover`` >= 0, ``min_net <= max_net``, a non-negative minimum trade."""
        for name in ("max_gross", "max_weight", "max_turnover"):
            value = getattr(self, name)
            if value is not None and check_float(value, f"constraints.{name}") < 0:
                raise ComposeInputError(f"constraints.{name}", value, "must be >= 0")
        low = None if self.min_net is None else check_float(self.min_net, "constraints.min_net")
        high = None if self.max_net is None else check_float(self.max_net,
                                                              "constraints.max_net")
        if low is not None and high is not None and low > high:
            raise ComposeInputError("constraints.min_net", self.min_net,
                                    f"exceeds constraints.max_net {self.max_net!r}")
        for symbol, cap in self.max_weight_by_symbol.items():
            where = f"constraints.max_weight_by_symbol[{symbol!r}]"
            check_symbol_name(symbol, "constraints.max_weight_by_symbol")
            if check_float(cap, where) < 0:
                raise ComposeInputError(where, cap, "must be >= 0")
        if not isinstance(self.long_only, bool):
            raise ComposeInputError("constraints.long_only", self.long_only, "must be a bool")
        if check_decimal(self.min_trade_notional, "constraints.min_trade_notional") < 0:
            raise ComposeInputError("constraints.min_trade_notional", self.min_trade_notional,
                                    "must be >= 0")
        return self


def check_float(value: Any, where: str) -> float:
    """``value`` as a finite float, or the error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, float | int | Decimal):
        raise ComposeInputError(where, value, "expected a float, an int or a Decimal")
    number = float(value)
    if not math.isfinite(number):
        raise ComposeInputError(where, value, "must be a finite number")
    return number


def check_decimal(value: Any, where: str) -> Decimal:
    """``value`` (a Decimal or an int) as a finite Decimal, or the error naming ``where``.
    Money comes as Decimal: a binary float's digits are already rounded."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ComposeInputError(where, value, "expected a Decimal or an int")
    number = Decimal(value)
    if not number.is_finite():
        raise ComposeInputError(where, value, "must be a finite number")
    return number


def check_symbol_name(symbol: Any, where: str) -> str:
    """``symbol`` if it is a valid :data:`~mts1b_foundation.Symbol`."""
    if not isinstance(symbol, str) or not is_symbol(symbol):
        raise ComposeInputError(where, symbol, "not a valid symbol")
    return symbol


def check_identifier(value: Any, where: str) -> str:
    """``value`` if it is a valid :data:`~mts1b_foundation.wire.Identifier`."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        raise ComposeInputError(where, value, "not a valid strategy or fund id (1-128 of "
                                              "A-Z a-z 0-9 _ . : @ = + -)") from None


def check_sleeves(sleeves: Iterable[Sleeve], exclude: Iterable[str]) -> tuple[
        list[Sleeve], list[float], tuple[str, ...]]:
    """The sleeves to compose (sorted by strategy id, ``exclude`` left out), their capital
    shares as floats, and the excluded ids that were present.

    Every sleeve's id and share are checked, the excluded ones' too: a bad sleeve is a bug in
    its producer whether or not it is composed today. The composed sleeves' symbols and
    weights are checked in bulk where they are read (:mod:`~mts1b_portfolio.multi_sleeve`).
    """
    if isinstance(exclude, str):
        raise ComposeInputError("exclude", exclude, "expected a collection of strategy ids, "
                                                    "not one string")
    excluded = {check_identifier(e, "exclude") for e in exclude}
    seen: set[str] = set()
    listed = list(sleeves)
    total = Decimal(0)
    for i, sleeve in enumerate(listed):
        if not isinstance(sleeve, Sleeve):
            raise ComposeInputError(f"sleeves[{i}]", sleeve, "expected a Sleeve")
        sid = check_identifier(sleeve.strategy_id, f"sleeves[{i}].strategy_id")
        if sid in seen:
            raise ComposeInputError(f"sleeves[{i}].strategy_id", sid, "appears twice")
        seen.add(sid)
        share = check_float(sleeve.share, f"sleeves[{i}].share")
        if not 0 <= share <= 1:
            raise ComposeInputError(f"sleeves[{i}].share", sleeve.share, "must lie in [0, 1]")
        if not isinstance(sleeve.weights, Mapping):
            raise ComposeInputError(f"sleeves[{i}].weights", sleeve.weights,
                                    "expected a mapping of symbol -> weight")
        if sid not in excluded:
            total += sleeve.share if isinstance(sleeve.share, Decimal) else Decimal(repr(share))
    if total > 1 + Decimal("1e-12"):
        raise ComposeInputError("sleeves[*].share", str(total),
                                "the composed sleeves' capital shares sum to more than 1")
    kept = sorted((s for s in listed if s.strategy_id not in excluded),
                  key=lambda s: s.strategy_id)
    if not kept:
        raise ComposeInputError("sleeves", [s.strategy_id for s in listed],
                                "no sleeve left to compose (all excluded, or none given)")
    present = tuple(sorted(excluded & seen))
    return kept, [float(s.share) for s in kept], present


def check_current(current: Any, fund_id: str) -> tuple[dict[str, Decimal],
                                                       dict[str, dict[str, Decimal]] | None]:
    """The fund's holdings per symbol and each sleeve's holdings: those of ``current`` when it
    is a :class:`~mts1b_foundation.SleeveAllocation`, none when it is a mapping of zeros (an
    empty book is owned by nobody, every sleeve holds nothing), else ``None`` (holdings whose
    owner is unknown)."""
    if isinstance(current, SleeveAllocation):
        if current.fund_id != fund_id:
            raise ComposeInputError("current.fund_id", current.fund_id,
                                    f"is not the composed fund {fund_id!r}")
        owned = {sid: dict(holdings) for sid, holdings in current.sleeves.items()}
        return exact_totals(owned), owned
    if not isinstance(current, Mapping):
        raise ComposeInputError("current", type(current).__name__,
                                "expected a mapping of symbol -> shares or a SleeveAllocation")
    book: dict[str, Decimal] = {}
    for symbol, shares in current.items():
        check_symbol_name(symbol, "current")
        where = f"current[{symbol!r}]"
        book[symbol] = check_wire(check_decimal(shares, where), where)
    if not any(book.values()):  # nothing held: nothing whose owner is unknown
        return book, {}
    return book, None


def check_wire(value: Decimal, where: str) -> Decimal:
    """``value`` if it can travel on the wire (the numeric domain of
    :mod:`mts1b_foundation.wire`: below 1E+15, at most 12 places and 20 digits)."""
    try:
        return check_wire_decimal(value)
    except ValueError as exc:
        raise ComposeInputError(where, value, str(exc)) from None


def check_capital(capital: Any) -> Decimal:
    """The fund's capital: a Decimal (or int) > 0 that the wire can carry (it is the
    target's ``nav``)."""
    value = check_wire(check_decimal(capital, "capital"), "capital")
    if value <= 0:
        raise ComposeInputError("capital", capital, "must be > 0")
    return value


def check_as_of(as_of: Any) -> dt.datetime:
    """A timezone-aware datetime the wire accepts (1900 up to 2200), in UTC."""
    if not isinstance(as_of, dt.datetime):
        raise ComposeInputError("as_of", as_of, "expected a timezone-aware datetime")
    try:
        return _UTC.validate_python(as_of)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ComposeInputError("as_of", as_of, reason) from None
