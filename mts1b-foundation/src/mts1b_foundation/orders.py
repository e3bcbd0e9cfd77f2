"""Orders, their lifecycle events, fills, positions and broker execution reports.

``Order.order_id`` is assigned by the OMS (``None`` until then); ``Order.idempotency_key`` comes
from the caller, and repeats of one key inside the dedupe window resolve to the same order.
``Order.created_at`` is assigned by the OMS too: whatever a client puts there is replaced when
the order is accepted (:attr:`Order.SERVER_ASSIGNED`, :meth:`Order.assigned`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mts1b_foundation.enums import (
    OrderEventType,
    OrderStatus,
    OrderType,
    ReplyCode,
    Side,
    TimeInForce,
    TradingSession,
)
from mts1b_foundation.instruments import Instrument, instrument_adapter, validated_instrument
from mts1b_foundation.sleeves import MAX_SLEEVES, exact_sum, order_unit, split_fill
from mts1b_foundation.symbols import Symbol
from mts1b_foundation.wire import (
    Context,
    ContextValue,
    Identifier,
    Money,
    NonNegativeDecimal,
    PositiveDecimal,
    Tags,
    UtcDatetime,
    ValidatedInstances,
    VenueCode,
    VenueMessage,
    WireModel,
    check_wire_decimal,
    parse_message,
)

__all__ = [
    "ContextValue",
    "Denial",
    "ExecType",
    "ExecutionReport",
    "Fill",
    "Order",
    "OrderEvent",
    "Position",
    "ReplaceRequest",
    "SleeveShares",
]

_V1_GATE_CODES: dict[str, ReplyCode] = {
    "MAX_QUANTITY": ReplyCode.QUANTITY_EXCEEDS_MAXIMUM,
    "MAX_NOTIONAL": ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM,
    "REDUCE_ONLY": ReplyCode.TRADING_STATE_REDUCING,
}
"""Gate codes of schema_version 1 that version 2 names as NautilusTrader does."""

_NEEDS_LIMIT = {OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.LIMIT_ON_CLOSE}
_NEEDS_STOP = {OrderType.STOP, OrderType.STOP_LIMIT}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


SleeveShares = Annotated[dict[Identifier, Money], Field(max_length=MAX_SLEEVES)]
"""Strategy id -> that sleeve's signed share of an order (at most ``MAX_SLEEVES`` entries)."""


class Order(WireModel):
    """An instruction to trade ``quantity`` (always positive; ``side`` gives the direction).

    ``order_id`` and ``created_at`` belong to the OMS (:attr:`SERVER_ASSIGNED`): a client leaves
    ``order_id`` empty, and whatever it puts in ``created_at`` (it may be any time from 1900 to
    2200, like every wire timestamp) is replaced by :meth:`assigned` when the OMS accepts the
    order. The field stays on the wire because accepted orders travel inside events, where it
    is the OMS's own clock reading.

    ``sleeves`` says which strategy sleeves own the order when it serves several (a composed
    target, issue #17): strategy id -> that sleeve's *signed* share, the shares summing exactly
    to the order's signed quantity (a cross nets: A +100 and B -60 make a buy of 40). Empty
    (the default): the order belongs wholly to ``strategy_id``. An order serving several
    sleeves has ``strategy_id`` :data:`~mts1b_foundation.sleeves.MULTI_SLEEVE_STRATEGY` by
    convention; the gates check every sleeve's strategy, never that name.

    **Fill split** (:meth:`sleeve_credits`, :mod:`mts1b_foundation.sleeves`): a fill of ``q``
    credits each sleeve ``r_s x q / R`` - ``r_s`` what the sleeve still has to trade (its share
    less its earlier credits), ``R`` the order's remaining quantity - rounded half-even to the
    order's unit (the finest decimal place of the quantity and the shares), the sleeve with the
    largest absolute remaining share (ties: smallest id) taking the remainder; all at the fund's
    fill price. The credits of a fill sum exactly to the fill, and a completely filled order
    has credited each sleeve exactly its share.

    Versions: 3 added ``sleeves``; 1 and 2 read with no sleeves.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})
    SERVER_ASSIGNED: ClassVar[tuple[str, ...]] = ("order_id", "created_at")
    """Fields the OMS sets on acceptance; a client's values for them are never trusted."""

    order_id: Identifier | None = None
    idempotency_key: Identifier
    fund_id: Identifier
    strategy_id: Identifier
    instrument: Instrument
    side: Side
    quantity: PositiveDecimal
    order_type: OrderType = OrderType.MARKET
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    expire_at: UtcDatetime | None = None
    session: TradingSession = TradingSession.RTH
    broker: Identifier | None = None
    account_id: Identifier | None = None
    created_at: UtcDatetime = Field(default_factory=_utcnow)
    tags: Tags = Field(default_factory=dict)
    sleeves: SleeveShares = Field(default_factory=dict)

    @field_validator("sleeves")
    @classmethod
    def _sleeves_sum_to_quantity(cls, sleeves: dict[str, Decimal],
                                 info: ValidationInfo) -> dict[str, Decimal]:
        """A field validator (not a model one), so the error names ``sleeves``; ``side`` and
        ``quantity`` come before it and are in ``info.data`` when they validated."""
        if not sleeves:
            return sleeves
        zero = sorted(s for s, d in sleeves.items() if d == 0)
        if zero:
            raise ValueError(f"sleeves[{zero[0]!r}] is 0: a sleeve's share must be non-zero")
        side, quantity = info.data.get("side"), info.data.get("quantity")
        if side is None or quantity is None:
            return sleeves  # the side or the quantity failed already, and says so
        signed = quantity if side is Side.BUY else -quantity
        total = exact_sum(sleeves)
        if total != signed:
            raise ValueError(f"the sleeves' shares sum to {total}, not the order's signed "
                             f"quantity {signed} ({side.value} {quantity})")
        unit = order_unit(sleeves, quantity)
        largest = max(abs(d) for d in sleeves.values())
        try:
            check_wire_decimal(largest.quantize(unit))
        except ValueError as exc:
            raise ValueError(f"the largest share {largest} written to the order's unit {unit} "
                             f"leaves the numeric domain ({exc}), so a fill's split could "
                             "not travel") from None
        return sleeves

    @model_validator(mode="after")
    def _prices_match_type(self) -> Order:
        t = self.order_type
        if t in _NEEDS_LIMIT and self.limit_price is None:
            raise ValueError(f"order_type {t.value!r} needs limit_price")
        if t not in _NEEDS_LIMIT and self.limit_price is not None:
            raise ValueError(f"order_type {t.value!r} takes no limit_price "
                             f"(got {self.limit_price})")
        if t in _NEEDS_STOP and self.stop_price is None:
            raise ValueError(f"order_type {t.value!r} needs stop_price")
        if t not in _NEEDS_STOP and self.stop_price is not None:
            raise ValueError(f"order_type {t.value!r} takes no stop_price (got {self.stop_price})")
        if (self.time_in_force is TimeInForce.GTD) != (self.expire_at is not None):
            raise ValueError("expire_at is required with time_in_force 'GTD' and only with it")
        on_close = t in {OrderType.MARKET_ON_CLOSE, OrderType.LIMIT_ON_CLOSE}
        if on_close and self.time_in_force not in {TimeInForce.DAY, TimeInForce.CLS}:
            raise ValueError(f"order_type {t.value!r} needs time_in_force DAY or CLS, "
                             f"got {self.time_in_force.value!r}")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _remember_validated(cls, data: Any, handler: ModelWrapValidatorHandler[Order]) -> Order:
        """The outermost of Order's validators: remember an order that passed them all, for
        :meth:`assigned`'s fast path. Only one validated from data: an ``Order`` instance
        given where an order is expected (``OrderEvent(order=...)``,
        ``Order.model_validate(order)``) is taken as it is, its fields unchecked, so it
        proves nothing. Kept by identity and weakly: a copy (``model_copy``, ``copy.copy``)
        or an instance built without validation (``model_construct``) is a different object
        and is not remembered."""
        order = handler(data)
        if not isinstance(data, Order):
            _VALIDATED.add(order)
        return order

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity

    def sleeve_credits(self, fill_quantity: Decimal,
                       credited: Mapping[str, Decimal] | None = None) -> dict[str, Decimal]:
        """Each sleeve's signed credit from a fill of ``fill_quantity`` (positive), given what
        the order's earlier fills ``credited`` each sleeve (the split rule above). An order
        without ``sleeves`` credits everything to ``strategy_id``. The credits sum exactly to
        the fill's signed quantity; sleeves credited 0 by this fill are left out."""
        if not self.sleeves:
            if fill_quantity <= 0:
                raise ValueError(f"fill_quantity must be > 0, got {fill_quantity}")
            sign = Decimal(1) if self.side is Side.BUY else Decimal(-1)
            return {self.strategy_id: sign * fill_quantity}
        return split_fill(self.sleeves, self.quantity, fill_quantity, credited)

    def assigned(self, *, order_id: str, now: dt.datetime, **changes: Any) -> Order:
        """This order as the OMS accepts it: its ``order_id``, ``created_at=now`` whatever the
        client sent, and any other ``changes`` (a default broker or account), validated again.

        The hook for the OMS's acceptance step: the one place where the fields of
        :attr:`SERVER_ASSIGNED` get their values.
        """
        fast = self._assigned_fast(order_id, now, changes)
        if fast is not None:
            return fast
        # warnings=False: an order built without validation (model_construct) is dumped as
        # it is and refused by the validation below, not warned about on the way
        data = self.model_dump(warnings=False)
        data.update(changes, order_id=order_id, created_at=now)
        return parse_message(type(self), data)

    def _assigned_fast(self, order_id: str, now: dt.datetime,
                       changes: dict[str, Any]) -> Order | None:
        """:meth:`assigned` without validating the whole order again, or ``None`` when that
        cannot be proven the same (the caller then validates in full).

        Why: the OMS accepts every order through :meth:`assigned`, and a full validation
        there cost more than anything else it does with the order before the database. What
        makes it safe: this instance passed every validator of Order (it is remembered by
        :meth:`_remember_validated`; an order from ``model_construct`` or ``model_copy`` is
        not) and is frozen, so its immutable fields (text, decimals, enums, UTC timestamps)
        still hold validated values. What can have changed since, or was never validated,
        is validated here by the field's own type: the values :meth:`assigned` sets
        (``order_id``, ``created_at``, ``broker``, ``account_id``), the mutable ``tags``
        dict (``sleeves``, empty, gets a new empty one), and the instrument unless it passed
        validation itself (an ``Order`` takes an instrument object as it is, validated or
        not; one that did not is validated again from its fields, as the full path does).
        Orders with ``sleeves`` (a mutable dict checked against ``side`` and ``quantity``),
        other changes, or any value that fails here take the full path, which also words the
        error."""
        if (self not in _VALIDATED or type(self) is not Order or self.sleeves
                or not changes.keys() <= _ASSIGNABLE.keys()):
            return None
        try:
            update: dict[str, Any] = {name: _ASSIGNABLE[name].validate_python(value)
                                      for name, value in changes.items()}
            update["order_id"] = _ASSIGNABLE["order_id"].validate_python(order_id)
            update["created_at"] = _UTC.validate_python(now)
            update["tags"] = _TAGS.validate_python(self.tags)
            update["sleeves"] = {}  # empty, and a dict of its own like the full path's
            if not validated_instrument(self.instrument):
                update["instrument"] = instrument_adapter.validate_python(
                    self.instrument.model_dump(warnings=False))
        except ValidationError:
            return None
        accepted = self.model_copy(update=update)
        _VALIDATED.add(accepted)
        return accepted


_VALIDATED = ValidatedInstances()
"""The orders that passed Order's validation (see ``Order.assigned``)."""
# The declared types of the fields Order.assigned's fast path validates, as pydantic-core
# validators (a TypeAdapter's own validate_python adds a Python call to each)
_OPTIONAL_ID = TypeAdapter(Identifier | None).validator
_ASSIGNABLE = {"order_id": _OPTIONAL_ID, "broker": _OPTIONAL_ID, "account_id": _OPTIONAL_ID}
_UTC = TypeAdapter(UtcDatetime).validator
_TAGS = TypeAdapter(Tags).validator


class Denial(WireModel):
    """Why a pre-trade risk gate refused an order: a stable code, the gate, and the numbers."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    code: ReplyCode
    gate: Identifier
    message: str = Field(min_length=1, max_length=2000)
    context: Context = Field(default_factory=dict)

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """v1 -> v2: three gate codes took NautilusTrader's names (MAX_QUANTITY ->
        QUANTITY_EXCEEDS_MAXIMUM, MAX_NOTIONAL -> NOTIONAL_EXCEEDS_MAXIMUM, REDUCE_ONLY ->
        TRADING_STATE_REDUCING)."""
        code = data.get("code")
        if isinstance(code, str) and code in _V1_GATE_CODES:
            data["code"] = _V1_GATE_CODES[code].value
        return data


class Fill(WireModel):
    """One execution of (part of) our order. ``trade_id`` is unique: a fill applies once."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    trade_id: Identifier
    order_id: Identifier
    fund_id: Identifier
    symbol: Symbol
    side: Side
    quantity: PositiveDecimal
    price: PositiveDecimal
    commission: NonNegativeDecimal = Decimal(0)
    ts: UtcDatetime
    venue: Identifier | None = None

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price


class ReplaceRequest(WireModel):
    """New terms for a working order; a field left ``None`` keeps its current value.

    ``sleeves`` (version 3): the order's new sleeve shares (see :attr:`Order.sleeves`), each the
    sleeve's whole share including what has filled; they must sum to the new signed quantity
    (checked against the order when the replace is judged). The OMS sends one when a halted or
    removed strategy's share is taken out of an order serving several sleeves.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    order_id: Identifier
    quantity: PositiveDecimal | None = None
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    sleeves: SleeveShares | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> ReplaceRequest:
        if self.quantity is None and self.limit_price is None and self.stop_price is None:
            raise ValueError("a replace must change quantity, limit_price or stop_price")
        if self.sleeves is not None and self.quantity is None:
            raise ValueError("sleeves change only with quantity: name the new quantity too")
        return self


class OrderEvent(WireModel):
    """Something that happened to an order. Which extra field is required depends on the type:

    ``denied`` -> ``denial``; ``rejected``/``cancel_rejected``/``replace_rejected`` -> ``reason``;
    ``partially_filled``/``filled``/``corrected`` -> ``fill``; ``busted`` -> ``busted_trade_id``;
    ``replace_requested``/``replaced`` -> ``replace``.

    ``code`` classifies a denial or a rejection (for ``denied`` it is the denial's code);
    ``venue_code`` / ``venue_message`` carry what the venue said in its own terms.

    Version 3: its ``order`` is a version-3 :class:`Order` (``sleeves``); 1 and 2 read.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    event_id: Identifier
    order_id: Identifier
    fund_id: Identifier
    event_type: OrderEventType
    status: OrderStatus
    ts: UtcDatetime
    sequence: int = Field(default=0, ge=0)
    denial: Denial | None = None
    reason: str | None = Field(default=None, max_length=2000)
    fill: Fill | None = None
    busted_trade_id: Identifier | None = None
    replace: ReplaceRequest | None = None
    order: Order | None = None
    code: ReplyCode | None = None
    venue_code: VenueCode | None = None
    venue_message: VenueMessage | None = None

    @model_validator(mode="after")
    def _required_detail(self) -> OrderEvent:
        e = self.event_type
        if e is OrderEventType.DENIED and self.denial is None:
            raise ValueError("a 'denied' event needs denial")
        if self.denial is not None and self.code is not None and self.code != self.denial.code:
            raise ValueError(f"code {self.code.value!r} differs from the denial's code "
                             f"{self.denial.code.value!r}")
        rejected = {OrderEventType.REJECTED, OrderEventType.CANCEL_REJECTED,
                    OrderEventType.REPLACE_REJECTED}
        if e in rejected and not self.reason:
            raise ValueError(f"a {e.value!r} event needs reason")
        fills = {OrderEventType.PARTIALLY_FILLED, OrderEventType.FILLED, OrderEventType.CORRECTED}
        if e in fills and self.fill is None:
            raise ValueError(f"a {e.value!r} event needs fill")
        if self.fill is not None and self.fill.order_id != self.order_id:
            raise ValueError(f"fill.order_id {self.fill.order_id!r} differs from order_id "
                             f"{self.order_id!r}")
        if e is OrderEventType.BUSTED and self.busted_trade_id is None:
            raise ValueError("a 'busted' event needs busted_trade_id")
        if e in {OrderEventType.REPLACE_REQUESTED, OrderEventType.REPLACED} and (
            self.replace is None
        ):
            raise ValueError(f"a {e.value!r} event needs replace")
        return self


class Position(WireModel):
    """Holdings of one instrument in one fund (and strategy sleeve). ``quantity`` is signed."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    fund_id: Identifier
    strategy_id: Identifier | None = None
    symbol: Symbol
    quantity: Money
    avg_cost: Money = Decimal(0)
    realized_pnl: Money = Decimal(0)
    unrealized_pnl: Money = Decimal(0)
    as_of: UtcDatetime


class ExecType(StrEnum):
    """What a broker reports about one of our orders."""

    ACK = "ack"
    REJECT = "reject"
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"
    CANCELED = "canceled"
    CANCEL_REJECT = "cancel_reject"
    REPLACED = "replaced"
    REPLACE_REJECT = "replace_reject"
    EXPIRED = "expired"


class ExecutionReport(WireModel):
    """A broker's report on an order, keyed by our ``order_id`` (the client order id).

    A reject may say why twice: ``code``, the stack's classification (:class:`ReplyCode`), and
    ``venue_code`` / ``venue_message``, what the venue itself said.
    """

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    broker: Identifier
    account_id: Identifier
    order_id: Identifier
    broker_order_id: Identifier | None = None
    exec_type: ExecType
    ts: UtcDatetime
    trade_id: Identifier | None = None
    symbol: Symbol | None = None
    side: Side | None = None
    last_quantity: PositiveDecimal | None = None
    last_price: PositiveDecimal | None = None
    commission: NonNegativeDecimal = Decimal(0)
    cumulative_quantity: NonNegativeDecimal = Decimal(0)
    leaves_quantity: NonNegativeDecimal = Decimal(0)
    reason: str | None = Field(default=None, max_length=2000)
    code: ReplyCode | None = None
    venue_code: VenueCode | None = None
    venue_message: VenueMessage | None = None

    @model_validator(mode="after")
    def _fill_fields(self) -> ExecutionReport:
        if self.exec_type in {ExecType.PARTIAL_FILL, ExecType.FILL}:
            missing = [n for n in ("trade_id", "symbol", "side", "last_quantity", "last_price")
                       if getattr(self, n) is None]
            if missing:
                raise ValueError(f"a {self.exec_type.value!r} report needs {', '.join(missing)}")
        rejects = {ExecType.REJECT, ExecType.CANCEL_REJECT, ExecType.REPLACE_REJECT}
        if self.exec_type in rejects and not self.reason:
            raise ValueError(f"a {self.exec_type.value!r} report needs reason")
        return self
