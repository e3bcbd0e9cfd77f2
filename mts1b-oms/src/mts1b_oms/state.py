"""The order lifecycle as an explicit transition table.

Why a table: every (status, event) pair the OMS accepts is written down in one place, so a
reviewer can read the lifecycle, the docs can print it, and a property test can drive random
event sequences against it. A pair that is not in the table is an *impossible transition*: it
is recorded (and alerted) and leaves the order unchanged; it never raises.

Some targets depend on the order's numbers rather than on the pair alone; they are written as a
:class:`Rule`:

* ``FILL``: ``filled`` when the cumulative quantity reaches the order quantity, else
  ``partially_filled``;
* ``FILL_OR_STAY``: ``filled`` when complete, else the status is unchanged (a fill while a cancel
  or replace is pending, or a late fill after ``canceled`` / ``expired``: cancel racing a fill);
* ``RESTORE``: back to the status before the cancel or replace was requested (a rejected cancel
  or replace, or a completed replace), adjusted for fills that arrived meanwhile;
* ``RECOMPUTE``: after a bust or a correction the filled quantity changes; a working status is
  recomputed from it (``accepted`` / ``partially_filled`` / ``filled``), other statuses stay;
* ``REPEAT``: the event repeats what the order already says (a second acknowledgement of a
  working order, a second ``canceled`` / ``expired`` / ``rejected`` report, the refusal of a
  cancel or replace that lost the race with the last fill); it is reported as a duplicate and
  changes nothing - no new sequence number, no event, no alert.

Repeats are decided here, in the table, like every other pair: a broker may hand the same
report back from a call and on its report stream, and a resumed kill-switch sweep may cancel an
order whose cancel already went through, so what counts as a harmless repeat has to be as easy
to read and to test as the transitions themselves.

Fills are applied once per ``trade_id`` (a repeat is reported as a duplicate and changes
nothing) and an overfill is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from mts1b_foundation import (
    Fill,
    Order,
    OrderEventType,
    OrderStatus,
    ReplaceRequest,
    Side,
    ValidationFailed,
    parse_message,
)

_ZERO = Decimal(0)

__all__ = [
    "TRANSITIONS",
    "OrderState",
    "Outcome",
    "Rule",
    "apply_event",
    "fill_from_report",
    "new_order_state",
]

S = OrderStatus
E = OrderEventType


class Rule(StrEnum):
    """Targets computed from the order's quantities (see the module docstring)."""

    FILL = "FILL"
    FILL_OR_STAY = "FILL_OR_STAY"
    RESTORE = "RESTORE"
    RECOMPUTE = "RECOMPUTE"
    STAY = "STAY"
    REPEAT = "REPEAT"


Target = OrderStatus | Rule

_FILLS = {E.PARTIALLY_FILLED: Rule.FILL, E.FILLED: Rule.FILL}
_LATE_FILLS = {E.PARTIALLY_FILLED: Rule.FILL_OR_STAY, E.FILLED: Rule.FILL_OR_STAY}
_AMEND = {E.BUSTED: Rule.RECOMPUTE, E.CORRECTED: Rule.RECOMPUTE}

TRANSITIONS: Mapping[OrderStatus | None, Mapping[OrderEventType, Target]] = {
    # ``None``: the order does not exist yet; ``submitted`` creates it.
    None: {E.SUBMITTED: S.PENDING},
    S.PENDING: {
        E.ACCEPTED: S.ACCEPTED,
        E.DENIED: S.DENIED,
        E.REJECTED: S.REJECTED,
        **_FILLS,  # a fill may overtake the acknowledgement
        E.CANCEL_REQUESTED: S.PENDING_CANCEL,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
    },
    S.ACCEPTED: {
        E.ACCEPTED: Rule.REPEAT,  # a repeated acknowledgement
        **_FILLS,
        E.CANCEL_REQUESTED: S.PENDING_CANCEL,
        E.REPLACE_REQUESTED: S.PENDING_REPLACE,
        E.CANCELED: S.CANCELED,  # unsolicited cancel by the venue
        E.EXPIRED: S.EXPIRED,
    },
    S.PARTIALLY_FILLED: {
        E.ACCEPTED: Rule.REPEAT,  # the acknowledgement overtaken by a fill
        **_FILLS,
        E.CANCEL_REQUESTED: S.PENDING_CANCEL,
        E.REPLACE_REQUESTED: S.PENDING_REPLACE,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
        **_AMEND,
    },
    # a cancel or replace that lost the race with the last fill is answered "not open" after
    # the fill: it says what the order already says
    S.FILLED: {E.ACCEPTED: Rule.REPEAT, E.CANCEL_REJECTED: Rule.REPEAT,
               E.REPLACE_REJECTED: Rule.REPEAT, **_AMEND},
    S.PENDING_CANCEL: {
        E.ACCEPTED: Rule.STAY,  # the ack of the order overtaken by our cancel request
        E.REJECTED: S.REJECTED,
        **_LATE_FILLS,
        E.CANCELED: S.CANCELED,
        E.CANCEL_REJECTED: Rule.RESTORE,
        E.EXPIRED: S.EXPIRED,
        **_AMEND,
    },
    S.PENDING_REPLACE: {
        E.ACCEPTED: Rule.STAY,
        **_LATE_FILLS,
        E.REPLACED: Rule.RESTORE,
        E.REPLACE_REJECTED: Rule.RESTORE,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
        **_AMEND,
    },
    # cancel racing a fill: canceled -> filled
    S.CANCELED: {E.CANCELED: Rule.REPEAT, **_LATE_FILLS, **_AMEND},
    S.EXPIRED: {E.EXPIRED: Rule.REPEAT, **_LATE_FILLS, **_AMEND},
    S.REJECTED: {E.REJECTED: Rule.REPEAT},
    S.DENIED: {},
}
"""status (``None`` before creation) -> event type -> target status or :class:`Rule`."""

_WORKING = {S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED}
_PENDING_AMEND = frozenset({S.PENDING_CANCEL, S.PENDING_REPLACE})


@dataclass(frozen=True, slots=True)
class OrderState:
    """Everything the lifecycle needs to know about one order. Immutable: apply returns a new one.

    ``prior`` is the status before a cancel or replace was requested (what ``RESTORE`` returns
    to); ``fills`` maps each applied ``trade_id`` to its fill; ``busted`` holds busted trade ids.
    """

    order: Order
    status: OrderStatus | None = None
    prior: OrderStatus | None = None
    fills: Mapping[str, Fill] = field(default_factory=dict)
    busted: frozenset[str] = frozenset()
    pending_replace: ReplaceRequest | None = None
    sequence: int = 0
    credits: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    """Sleeve orders only: trade id -> sleeve -> the signed credit that fill gave the sleeve
    (:meth:`~mts1b_foundation.Order.sleeve_credits`), kept so later fills split over what each
    sleeve still has to trade, and busts and corrections undo exactly what was credited."""

    def credits_of(self, trade_id: str) -> dict[str, Decimal]:
        """The sleeves' signed credits of one applied fill (an order without sleeves credits
        the whole fill to its ``strategy_id``)."""
        if self.order.sleeves:
            return dict(self.credits.get(trade_id, {}))
        f = self.fills.get(trade_id)
        return {} if f is None else {self.order.strategy_id: f.signed_quantity}

    @property
    def credited(self) -> dict[str, Decimal]:
        """What the order's standing fills credited each sleeve, exactly (sleeve orders)."""
        out: dict[str, Decimal] = {}
        for trade_id in self.fills:
            for sleeve, amount in self.credits.get(trade_id, {}).items():
                out[sleeve] = out.get(sleeve, Decimal(0)) + amount
        return out

    @property
    def order_id(self) -> str:
        return self.order.order_id or ""

    @property
    def quantity(self) -> Decimal:
        return self.order.quantity

    @property
    def filled_quantity(self) -> Decimal:
        if not self.fills:  # most reads: an order not yet filled (several per submit)
            return _ZERO
        return sum((f.quantity for f in self.fills.values()), Decimal(0))

    @property
    def leaves_quantity(self) -> Decimal:
        """What is still working (0 once the order is terminal)."""
        if self.status is None or self.status.is_terminal:
            return _ZERO
        return max(self.quantity - self.filled_quantity, _ZERO)

    @property
    def open_quantity(self) -> Decimal:
        """What the fund's book counts as open for the order: its leaves, and while a replace
        is pending the larger of its leaves before and after the replace - until the venue
        answers it may work either, so the gates must count the worse."""
        leaves = self.leaves_quantity
        terms = self.pending_replace
        if terms is None or terms.quantity is None or leaves == 0:
            return leaves
        return max(leaves, terms.quantity - self.filled_quantity)

    @property
    def avg_fill_price(self) -> Decimal | None:
        q = self.filled_quantity
        if q == 0:
            return None
        return sum((f.quantity * f.price for f in self.fills.values()), Decimal(0)) / q

    @property
    def is_open(self) -> bool:
        """Working at (or on its way to) the broker: counts towards exposure and can be canceled."""
        return self.status is not None and not self.status.is_terminal


def new_order_state(order: Order) -> OrderState:
    """The state of an order before its ``submitted`` event (it needs an ``order_id``)."""
    if order.order_id is None:
        raise ValueError("an order needs an order_id before it enters the state machine")
    return OrderState(order=order)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of applying one event.

    ``applied`` is false when nothing changed: ``duplicate`` (a fill's ``trade_id`` was already
    applied, or a bust of an already busted trade) or an impossible transition / refused fill, in
    which case ``problem`` says why and the caller records and alerts it.
    """

    state: OrderState
    applied: bool
    from_status: OrderStatus | None
    to_status: OrderStatus | None
    event_type: OrderEventType
    duplicate: bool = False
    problem: str | None = None

    @property
    def impossible(self) -> bool:
        return self.problem is not None


def _refuse(state: OrderState, event: OrderEventType, problem: str) -> Outcome:
    return Outcome(state, False, state.status, state.status, event, problem=problem)


def _from_fills(state: OrderState, status_if_partial: OrderStatus | None) -> OrderStatus | None:
    filled = state.filled_quantity
    if filled >= state.quantity:
        return S.FILLED
    return status_if_partial


def _resolve(target: Target, before: OrderState, after: OrderState) -> OrderStatus | None:
    status = before.status
    if isinstance(target, OrderStatus):
        return target
    if target is Rule.STAY:
        return status
    if target is Rule.FILL:
        return _from_fills(after, S.PARTIALLY_FILLED)
    if target is Rule.FILL_OR_STAY:
        return _from_fills(after, status)
    if target is Rule.RESTORE:
        prior = before.prior or S.ACCEPTED
        filled = after.filled_quantity
        if filled >= after.quantity:
            return S.FILLED
        if filled > 0:
            return S.PARTIALLY_FILLED
        return S.PENDING if prior is S.PENDING else S.ACCEPTED
    # RECOMPUTE after a bust or correction
    if status in _WORKING:
        filled = after.filled_quantity
        if filled == 0:
            return S.ACCEPTED
        return S.FILLED if filled >= after.quantity else S.PARTIALLY_FILLED
    return status


def _check_fill(state: OrderState, fill: Fill) -> str | None:
    o = state.order
    if fill.order_id != state.order_id:
        return f"fill {fill.trade_id} is for order {fill.order_id}, not {state.order_id}"
    if fill.side is not o.side:
        return f"fill {fill.trade_id} side {fill.side.value} differs from order side {o.side.value}"
    if fill.symbol != o.instrument.symbol:
        return f"fill {fill.trade_id} symbol {fill.symbol} differs from {o.instrument.symbol}"
    return None


def apply_event(
    state: OrderState,
    event_type: OrderEventType,
    *,
    fill: Fill | None = None,
    busted_trade_id: str | None = None,
    replace: ReplaceRequest | None = None,
) -> Outcome:
    """Apply one lifecycle event to ``state`` and return the :class:`Outcome`. Never raises for
    a bad event: an impossible one comes back with ``problem`` set and the state unchanged."""
    # A repeat of an applied (or busted) trade is a duplicate whatever the status now is.
    repeat = (event_type in {E.PARTIALLY_FILLED, E.FILLED} and fill is not None
              and (fill.trade_id in state.fills or fill.trade_id in state.busted)) or (
        event_type is E.BUSTED and busted_trade_id in state.busted)
    if repeat:
        return Outcome(state, False, state.status, state.status, event_type, duplicate=True)
    table = TRANSITIONS.get(state.status, {})
    target = table.get(event_type)
    if target is None:
        shown = state.status.value if state.status else "<new>"
        return _refuse(state, event_type,
                       f"impossible transition: {event_type.value} in status {shown}")
    if target is Rule.REPEAT:
        return Outcome(state, False, state.status, state.status, event_type, duplicate=True)

    changes: dict[str, object] = {}
    if event_type in {E.PARTIALLY_FILLED, E.FILLED}:
        if fill is None:
            return _refuse(state, event_type, f"{event_type.value} without a fill")
        wrong = _check_fill(state, fill)
        if wrong:
            return _refuse(state, event_type, wrong)
        if state.filled_quantity + fill.quantity > state.quantity:
            return _refuse(state, event_type,
                           f"overfill refused: trade {fill.trade_id} of {fill.quantity} on "
                           f"{state.filled_quantity} filled of {state.quantity}")
        changes["fills"] = {**state.fills, fill.trade_id: fill}
        if state.order.sleeves:
            changes["credits"] = {**state.credits, fill.trade_id: state.order.sleeve_credits(
                fill.quantity, state.credited)}
    elif event_type is E.CORRECTED:
        if fill is None:
            return _refuse(state, event_type, "corrected without a fill")
        if fill.trade_id not in state.fills:
            return _refuse(state, event_type, f"correction of unknown trade {fill.trade_id}")
        wrong = _check_fill(state, fill)
        if wrong:
            return _refuse(state, event_type, wrong)
        others = state.filled_quantity - state.fills[fill.trade_id].quantity
        if others + fill.quantity > state.quantity:
            return _refuse(state, event_type,
                           f"overfill refused: correction of {fill.trade_id} to {fill.quantity}")
        changes["fills"] = {**state.fills, fill.trade_id: fill}
        if state.order.sleeves:  # split again over what the other fills left open
            kept = {k: v for k, v in state.credits.items() if k != fill.trade_id}
            earlier = dataclasses.replace(state, credits=kept).credited
            changes["credits"] = {**kept, fill.trade_id: state.order.sleeve_credits(
                fill.quantity, earlier)}
    elif event_type is E.BUSTED:
        if busted_trade_id is None:
            return _refuse(state, event_type, "busted without busted_trade_id")
        if busted_trade_id not in state.fills:
            return _refuse(state, event_type, f"bust of unknown trade {busted_trade_id}")
        changes["fills"] = {k: v for k, v in state.fills.items() if k != busted_trade_id}
        changes["busted"] = state.busted | {busted_trade_id}
        if busted_trade_id in state.credits:
            changes["credits"] = {k: v for k, v in state.credits.items()
                                  if k != busted_trade_id}
    elif event_type is E.REPLACE_REQUESTED:
        if replace is None:
            return _refuse(state, event_type, "replace_requested without replace terms")
        if replace.quantity is not None and replace.quantity < state.filled_quantity:
            return _refuse(state, event_type,
                           f"replace to quantity {replace.quantity} below filled "
                           f"{state.filled_quantity}")
        changes["pending_replace"] = replace
    elif event_type is E.REPLACED:
        terms = replace or state.pending_replace
        if terms is None:
            return _refuse(state, event_type, "replaced without replace terms")
        if terms.quantity is not None and terms.quantity < state.filled_quantity:
            return _refuse(state, event_type,
                           f"replaced quantity {terms.quantity} below filled "
                           f"{state.filled_quantity}")
        updates = {k: v for k in ("quantity", "limit_price", "stop_price")
                   if (v := getattr(terms, k)) is not None}
        if state.order.sleeves or terms.sleeves:
            replaced = replaced_sleeve_order(state.order, terms, updates)
            if isinstance(replaced, str):
                return _refuse(state, event_type, replaced)
            changes["order"] = replaced
        else:
            changes["order"] = state.order.model_copy(update=updates)
        changes["pending_replace"] = None
    elif event_type is E.REPLACE_REJECTED:
        changes["pending_replace"] = None

    # At most two copies of the state per event (one per field group changed showed in the
    # OMS's profile).
    after = dataclasses.replace(state, **changes) if changes else state  # type: ignore[arg-type]
    to = _resolve(target, state, after)
    prior = after.prior
    if to in _PENDING_AMEND and state.status not in _PENDING_AMEND:
        prior = state.status
    elif event_type is E.ACCEPTED and state.status in _PENDING_AMEND:
        prior = S.ACCEPTED
    elif to not in _PENDING_AMEND:
        prior = None
    after = dataclasses.replace(after, prior=prior, status=to, sequence=state.sequence + 1)
    return Outcome(after, True, state.status, to, event_type)


def replaced_sleeve_order(order: Order, terms: ReplaceRequest,
                          updates: dict[str, object]) -> Order | str:
    """The order after a replace that touches a sleeve order, validated in full (the sleeves
    must sum to the new quantity); or why it cannot be. New ``sleeves`` come with the terms;
    an order of one sleeve keeps it for its new quantity; one of several sleeves needs them."""
    sleeves = terms.sleeves
    if sleeves is None and terms.quantity is not None and terms.quantity != order.quantity:
        if len(order.sleeves) != 1:
            return (f"a new quantity for an order serving {len(order.sleeves)} sleeves needs "
                    "their new shares (sleeves)")
        (only,) = order.sleeves
        sleeves = {only: terms.quantity if order.side is Side.BUY else -terms.quantity}
    data = {**order.model_dump(), **updates}
    if sleeves is not None:
        data["sleeves"] = sleeves
    try:
        return parse_message(Order, data)
    except ValidationFailed as exc:
        return exc.message[:2000]


def fill_from_report(
    *, order: Order, trade_id: str, quantity: Decimal, price: Decimal, ts: dt.datetime,
    commission: Decimal = Decimal(0), venue: str | None = None,
) -> Fill:
    """Build the :class:`Fill` of one execution of ``order`` (helper for brokers' reports)."""
    if order.order_id is None:
        raise ValueError("the order has no order_id yet")
    return Fill(trade_id=trade_id, order_id=order.order_id, fund_id=order.fund_id,
                symbol=order.instrument.symbol, side=order.side, quantity=quantity, price=price,
                commission=commission, ts=ts, venue=venue)

