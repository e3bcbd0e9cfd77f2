"""The order lifecycle table: named scenarios, then random event sequences (hypothesis)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from mts1b_foundation import (
    Equity,
    Fill,
    Order,
    OrderEventType,
    OrderStatus,
    ReplaceRequest,
    Side,
)
from mts1b_oms.state import TRANSITIONS, OrderState, Rule, apply_event, new_order_state

E = OrderEventType
S = OrderStatus
TS = dt.datetime(2026, 1, 5, 15, 0, tzinfo=dt.UTC)


def make_order(qty: str = "100") -> Order:
    return Order(order_id="ord-1", idempotency_key="k1", fund_id="f1", strategy_id="s1",
                 instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(qty))


def fill(trade_id: str, qty: str, price: str = "10") -> Fill:
    return Fill(trade_id=trade_id, order_id="ord-1", fund_id="f1", symbol="AAPL", side=Side.BUY,
                quantity=Decimal(qty), price=Decimal(price), ts=TS)


def run(*steps: tuple[OrderEventType, dict[str, object]], qty: str = "100") -> OrderState:
    state = new_order_state(make_order(qty))
    for event, kw in steps:
        out = apply_event(state, event, **kw)  # type: ignore[arg-type]
        assert out.applied, out.problem
        state = out.state
    return state


def go(event: OrderEventType, **kw: object) -> tuple[OrderEventType, dict[str, object]]:
    return (event, kw)


def test_happy_path_partial_then_full() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "40")))
    assert s.status is S.PARTIALLY_FILLED and s.filled_quantity == 40 and s.leaves_quantity == 60
    out = apply_event(s, E.FILLED, fill=fill("t2", "60", "11"))
    assert out.state.status is S.FILLED
    assert out.state.avg_fill_price == Decimal("10.6")


def test_fill_status_comes_from_quantities_not_event_name() -> None:
    # a broker calling a partial "filled" does not complete the order
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.FILLED, fill=fill("t1", "40")))
    assert s.status is S.PARTIALLY_FILLED


def test_fill_applied_once_per_trade_id() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "40")))
    out = apply_event(s, E.PARTIALLY_FILLED, fill=fill("t1", "40"))
    assert out.duplicate and not out.applied and out.state.filled_quantity == 40


def test_overfill_refused_and_state_unchanged() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "90")))
    out = apply_event(s, E.FILLED, fill=fill("t2", "20"))
    assert out.impossible and "overfill" in (out.problem or "")
    assert out.state is s


def test_cancel_racing_a_fill_canceled_then_filled() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.CANCEL_REQUESTED), go(E.CANCELED))
    assert s.status is S.CANCELED
    out = apply_event(s, E.FILLED, fill=fill("t1", "100"))
    assert out.applied and out.state.status is S.FILLED


def test_late_partial_fill_after_cancel_stays_canceled() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.CANCEL_REQUESTED), go(E.CANCELED),
            go(E.PARTIALLY_FILLED, fill=fill("t1", "30")))
    assert s.status is S.CANCELED and s.filled_quantity == 30


def test_fill_while_cancel_pending_completes_order() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.CANCEL_REQUESTED),
            go(E.PARTIALLY_FILLED, fill=fill("t1", "30")))
    assert s.status is S.PENDING_CANCEL
    out = apply_event(s, E.FILLED, fill=fill("t2", "70"))
    assert out.state.status is S.FILLED


def test_rejected_cancel_restores_previous_state() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "30")),
            go(E.CANCEL_REQUESTED), go(E.CANCEL_REJECTED))
    assert s.status is S.PARTIALLY_FILLED and s.prior is None


def test_rejected_cancel_restores_partial_when_fill_arrived_meanwhile() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.CANCEL_REQUESTED),
            go(E.PARTIALLY_FILLED, fill=fill("t1", "30")), go(E.CANCEL_REJECTED))
    assert s.status is S.PARTIALLY_FILLED


def test_rejected_replace_restores_and_keeps_terms() -> None:
    rep = ReplaceRequest(order_id="ord-1", quantity=Decimal(50))
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.REPLACE_REQUESTED, replace=rep),
            go(E.REPLACE_REJECTED))
    assert s.status is S.ACCEPTED and s.quantity == 100 and s.pending_replace is None


def test_replace_applies_new_terms() -> None:
    rep = ReplaceRequest(order_id="ord-1", quantity=Decimal(50))
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "20")),
            go(E.REPLACE_REQUESTED, replace=rep), go(E.REPLACED))
    assert s.status is S.PARTIALLY_FILLED and s.quantity == 50


def test_replace_below_filled_refused() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "60")))
    out = apply_event(s, E.REPLACE_REQUESTED,
                      replace=ReplaceRequest(order_id="ord-1", quantity=Decimal(50)))
    assert out.impossible


def test_expiry() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "1")),
            go(E.EXPIRED))
    assert s.status is S.EXPIRED and s.leaves_quantity == 0


def test_bust_reopens_filled_order_and_duplicate_bust_ignored() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.FILLED, fill=fill("t1", "100")))
    out = apply_event(s, E.BUSTED, busted_trade_id="t1")
    assert out.state.status is S.ACCEPTED and out.state.filled_quantity == 0
    again = apply_event(out.state, E.BUSTED, busted_trade_id="t1")
    assert again.duplicate
    # a busted trade id cannot be re-applied as a fill
    assert apply_event(out.state, E.FILLED, fill=fill("t1", "100")).duplicate


def test_correction_changes_quantity_and_price() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.FILLED, fill=fill("t1", "100")))
    out = apply_event(s, E.CORRECTED, fill=fill("t1", "80", "9"))
    assert out.state.status is S.PARTIALLY_FILLED and out.state.filled_quantity == 80
    assert apply_event(s, E.CORRECTED, fill=fill("t1", "101")).impossible
    assert apply_event(s, E.CORRECTED, fill=fill("zz", "1")).impossible


def test_impossible_transition_recorded_not_raised() -> None:
    s = run(go(E.SUBMITTED), go(E.DENIED))
    for event in E:
        out = apply_event(s, event)
        assert not out.applied and out.state is s
    out = apply_event(s, E.ACCEPTED)
    assert out.problem == "impossible transition: accepted in status denied"


def test_wrong_side_fill_refused() -> None:
    s = run(go(E.SUBMITTED), go(E.ACCEPTED))
    bad = Fill(trade_id="t9", order_id="ord-1", fund_id="f1", symbol="AAPL", side=Side.SELL,
               quantity=Decimal(1), price=Decimal(1), ts=TS)
    assert apply_event(s, E.PARTIALLY_FILLED, fill=bad).impossible


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == {None, *OrderStatus}
    assert TRANSITIONS[S.DENIED] == {}
    assert TRANSITIONS[S.REJECTED] == {E.REJECTED: Rule.REPEAT}  # nothing but its own repeat


def test_repeats_are_decided_by_the_table() -> None:
    """A second acknowledgement of a working order, a second terminal report, and the refusal
    of a cancel that lost the race with the last fill repeat what the order already says: the
    table marks them REPEAT, and applying one is a duplicate that changes nothing (no new
    sequence number, so no event is written), where the OMS used to decide this outside the
    table."""
    repeats = {(status, event) for status, row in TRANSITIONS.items()
               for event, target in row.items() if target is Rule.REPEAT}
    assert repeats == {(S.ACCEPTED, E.ACCEPTED), (S.PARTIALLY_FILLED, E.ACCEPTED),
                       (S.FILLED, E.ACCEPTED), (S.FILLED, E.CANCEL_REJECTED),
                       (S.FILLED, E.REPLACE_REJECTED), (S.CANCELED, E.CANCELED),
                       (S.EXPIRED, E.EXPIRED), (S.REJECTED, E.REJECTED)}
    accepted = run(go(E.SUBMITTED), go(E.ACCEPTED))
    partial = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "40")))
    canceled = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.CANCEL_REQUESTED), go(E.CANCELED))
    rejected = run(go(E.SUBMITTED), go(E.REJECTED))
    filled = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.CANCEL_REQUESTED),
                 go(E.FILLED, fill=fill("t1", "100")))
    assert filled.status is S.FILLED
    for state, event in ((accepted, E.ACCEPTED), (partial, E.ACCEPTED),
                         (canceled, E.CANCELED), (rejected, E.REJECTED),
                         (filled, E.CANCEL_REJECTED)):
        out = apply_event(state, event)
        assert (out.duplicate, out.applied, out.problem, out.state) == (True, False, None, state)
    # the ack of an order overtaken by its own cancel request is not a repeat: it moves prior
    pending_cancel = run(go(E.SUBMITTED), go(E.CANCEL_REQUESTED))
    out = apply_event(pending_cancel, E.ACCEPTED)
    assert out.applied and out.state.status is S.PENDING_CANCEL and out.state.prior is S.ACCEPTED


# --- random sequences against the table ---------------------------------------------------

TRADES = [f"t{i}" for i in range(6)]


class LifecycleMachine(RuleBasedStateMachine):
    """Drive random events; the state must stay consistent with the table and the fills."""

    def __init__(self) -> None:
        super().__init__()
        self.state = new_order_state(make_order("100"))
        self.applied: dict[str, Decimal] = {}
        self.busted: set[str] = set()

    def _apply(self, event: OrderEventType, **kw: object) -> None:
        before = self.state
        out = apply_event(before, event, **kw)  # type: ignore[arg-type]
        target = TRANSITIONS.get(before.status, {}).get(event)
        if out.duplicate:
            assert out.state is before and not out.applied
            return
        if target is None:
            assert out.impossible and out.state is before
            return
        if not out.applied:
            assert out.state is before
            return
        if isinstance(target, OrderStatus):
            assert out.state.status is target
        elif target is Rule.STAY:
            assert out.state.status is before.status
        assert out.state.sequence == before.sequence + 1
        self.state = out.state
        f = kw.get("fill")
        if isinstance(f, Fill):
            self.applied[f.trade_id] = f.quantity
        b = kw.get("busted_trade_id")
        if isinstance(b, str):
            self.applied.pop(b, None)
            self.busted.add(b)

    @rule(event=st.sampled_from([E.SUBMITTED, E.ACCEPTED, E.DENIED, E.REJECTED,
                                 E.CANCEL_REQUESTED, E.CANCEL_REJECTED, E.CANCELED,
                                 E.REPLACE_REJECTED, E.EXPIRED]))
    def plain(self, event: OrderEventType) -> None:
        self._apply(event)

    @rule(trade=st.sampled_from(TRADES), qty=st.integers(1, 60),
          event=st.sampled_from([E.PARTIALLY_FILLED, E.FILLED, E.CORRECTED]))
    def a_fill(self, trade: str, qty: int, event: OrderEventType) -> None:
        self._apply(event, fill=fill(trade, str(qty)))

    @rule(trade=st.sampled_from(TRADES))
    def bust(self, trade: str) -> None:
        self._apply(E.BUSTED, busted_trade_id=trade)

    @rule(qty=st.integers(1, 150))
    def replace(self, qty: int) -> None:
        self._apply(E.REPLACE_REQUESTED,
                    replace=ReplaceRequest(order_id="ord-1", quantity=Decimal(qty)))

    @rule()
    def replaced(self) -> None:
        self._apply(E.REPLACED)

    @invariant()
    def consistent(self) -> None:
        s = self.state
        assert s.filled_quantity <= s.quantity
        assert s.filled_quantity == sum(self.applied.values(), Decimal(0))
        assert set(s.fills) == set(self.applied)
        assert s.busted == self.busted
        assert not (set(s.fills) & s.busted)
        if s.status is S.FILLED:
            assert s.filled_quantity == s.quantity
        if s.status is S.PARTIALLY_FILLED:
            assert 0 < s.filled_quantity < s.quantity
        if s.status in {S.PENDING_CANCEL, S.PENDING_REPLACE}:
            assert s.prior is not None
        else:
            assert s.prior is None
        assert s.leaves_quantity >= 0


TestLifecycle = LifecycleMachine.TestCase
TestLifecycle.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_state_survives_its_json_column() -> None:
    """What the store writes in ``orders.state`` reads back as the same state: fills, busted
    trades, a pending replace and the status it would restore."""
    from mts1b_oms.store import state_from_json, state_to_json

    s = run(go(E.SUBMITTED), go(E.ACCEPTED), go(E.PARTIALLY_FILLED, fill=fill("t1", "40")),
            go(E.PARTIALLY_FILLED, fill=fill("t2", "10", "10.5")),
            go(E.BUSTED, busted_trade_id="t2"),
            go(E.REPLACE_REQUESTED, replace=ReplaceRequest(order_id="ord-1",
                                                           quantity=Decimal("80"))))
    assert s.prior is S.PARTIALLY_FILLED and s.busted and s.pending_replace and s.fills
    text = state_to_json(s)
    assert state_from_json(text) == s
    fresh = run()  # before its first event
    assert state_from_json(state_to_json(fresh)) == fresh


def test_state_json_reuses_an_orders_json_only_for_that_same_order() -> None:
    """The order's JSON is remembered per order object: the same order's second state reuses
    it, and a changed order (a new object, e.g. a replace's new terms) is serialised anew."""
    from mts1b_oms.store import state_from_json, state_to_json

    s = run(go(E.SUBMITTED))
    first = state_to_json(s)
    accepted = run(go(E.SUBMITTED), go(E.ACCEPTED))
    assert state_from_json(state_to_json(accepted)) == accepted
    assert state_to_json(s) == first
    bigger = dataclasses.replace(
        s, order=s.order.model_copy(update={"quantity": Decimal("77")}))
    again = state_from_json(state_to_json(bigger))
    assert again.order.quantity == Decimal("77") and again == bigger
    assert state_from_json(first).order.quantity == s.order.quantity != Decimal("77")
