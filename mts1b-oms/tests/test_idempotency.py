"""Strict idempotency (issue #15, failure 5), on both stores.

Reproduced before: the same key with different content was answered "ok, duplicate" with
whichever content won (a later quantity 999 too), and 50 concurrent repeats of one key made one
order but 18 calls of ``broker.submit`` - each repeat arriving while the order was ``pending``
sent it again. Now: same key and content -> the original order, ``duplicate=True``; same key,
other content -> ``IDEMPOTENCY_CONFLICT`` naming the fields, the original untouched; a key
whose order ended DENIED or REJECTED opens a new attempt linked to the earlier one; a repeat
never sends again - it waits for a send in flight, and an unknown outcome is resolved by asking
the broker (``order_status``), the order being sent again only when the broker proves it absent.

The tests of the store alone (``create_order``'s claim, the takeover, ``attempts``) are the
``OrderStore`` conformance for idempotency: they run on the in-memory store and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from mts1b_foundation import (
    BrokerTransportError,
    BrokerUnknownOutcome,
    Denial,
    Equity,
    ExecutionReport,
    Option,
    OptionRight,
    Order,
    OrderEventType,
    OrderStatus,
    OrderType,
    ReplyCode,
    Side,
    TimeInForce,
)
from mts1b_oms.idempotency import canonical_content, content_hash, differing_fields
from mts1b_oms.orderstore import Attempt, KeyClaim, OrderStore
from mts1b_oms.state import OrderState, apply_event, new_order_state
from mts1b_oms.store import Store
from mts1b_oms.testing import RecordingBroker, make_fund
from mts1b_oms.testing import make_order as order

if TYPE_CHECKING:
    from conftest import MakeOms

S = OrderStatus
D = Decimal
NOW = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)


# --- the content hash -------------------------------------------------------------------------


def test_equal_numbers_are_equal_content_and_tags_and_times_are_not_content() -> None:
    base = order("k", "10")
    same = [order("k", q) for q in ("10.0", "10.000", "1E+1", "10")]
    same.append(base.model_copy(update={"tags": {"run": 7}, "created_at": NOW}))
    same.append(base.assigned(order_id="ord-x", now=NOW))
    assert {content_hash(o) for o in same} == {content_hash(base)}
    assert content_hash(base).startswith("sha256:") and len(content_hash(base)) == 71
    assert canonical_content(base)["quantity"] == "10"
    assert "order_id" not in canonical_content(base) and "tags" not in canonical_content(base)
    assert "schema_version" not in canonical_content(base)["instrument"]


@pytest.mark.parametrize("text", [
    "Tech", 'quote " and back\\slash', "tab\tnew\nline\r\x08\x0c\x00\x01\x1f\x7f /",
    "Énergie", "株式", "emoji \U0001f4c8", ""])
def test_the_fast_writer_gives_the_reference_json(text: str) -> None:
    """``content_hash`` writes the canonical JSON with a faster writer where the text is
    ASCII; it must be the reference encoder's text, escapes included, and the reference
    encoder writes everything else."""
    from mts1b_oms.idempotency import _ENCODE, _canonical_json

    content = {"a": text, "b": None, "c": True, "d": 7, "e": {"x": [text, "1.5"], "y": False}}
    assert _canonical_json(content) == _ENCODE(content).encode("ascii")


def test_canonical_content_is_in_sorted_order() -> None:
    o = Order(fund_id="f1", strategy_id="s1", idempotency_key="k9",
              instrument=Equity(symbol="BRK.B", sector="Énergie"), side=Side.SELL,
              quantity=D("150"), sleeves={"zeta": D("-100"), "alpha": D("-50")})
    content = canonical_content(o)
    assert list(content) == sorted(content)
    assert list(content["instrument"]) == sorted(content["instrument"])
    assert list(content["sleeves"]) == ["alpha", "zeta"]


def test_other_content_has_another_hash_and_names_its_fields() -> None:
    base = order("k", "10")
    limit = base.model_copy(update={"order_type": OrderType.LIMIT, "limit_price": D("99.5")})
    lot = base.model_copy(update={"instrument": Equity(symbol="AAPL", lot_size=D(100))})
    cases: list[tuple[Order, list[str]]] = [
        (order("k", "999"), ["quantity"]),
        (order("k", "10", side=Side.SELL), ["side"]),
        (order("k", "10", symbol="MSFT"), ["instrument.symbol"]),
        (limit, ["limit_price", "order_type"]),
        (lot, ["instrument.lot_size"]),
        (order("other-key", "10"), ["idempotency_key"]),
    ]
    for other, fields in cases:
        assert content_hash(other) != content_hash(base), fields
        assert differing_fields(base, other) == fields


def test_stored_hashes_are_pinned() -> None:
    """The hash values the OMS stores: the plain and the option order's are those of 97c09f3,
    before orders had sleeves (an order without sleeves hashes as it did then), the rich one's
    that of the code before the hash had a fast path. A change of the canonical form, or of
    how it is computed, that moved one of them would make every stored hash stop matching its
    retries. One plain order; one with every kind of
    value (non-ASCII text, decimals written with exponent and trailing zeros, a non-UTC
    timestamp, excluded tags, sleeves); one with a nested date and an option's decimals."""
    plain = order("k", "10")
    rich = Order(fund_id="f1", strategy_id="multi", idempotency_key="k2",
                 instrument=Equity(symbol="AAPL", lot_size=D("1E+2"), sector="Tech \u00e9"),
                 side=Side.SELL, quantity=D("150.0"), order_type=OrderType.LIMIT,
                 limit_price=D("99.50"), broker="paper", account_id="acct-1",
                 time_in_force=TimeInForce.GTD,
                 expire_at=dt.datetime(2026, 3, 3, 16,
                                       tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                 tags={"run": 7}, sleeves={"a": D("-100"), "b": D("-50.0")})
    option = Order(fund_id="f1", strategy_id="s1", idempotency_key="k3",
                   instrument=Option(symbol="AAPL260320C00200000", underlying="AAPL",
                                     expiry=dt.date(2026, 3, 20), strike=D("200"),
                                     right=OptionRight.CALL),
                   side=Side.BUY, quantity=D(3), order_type=OrderType.LIMIT,
                   limit_price=D("0.05"))
    assert [content_hash(o) for o in (plain, rich, option)] == [
        "sha256:bdc7069a24c54a0985f103aa327cd76c4aee3b1279bd57bc160a50c8438eb497",
        "sha256:994a67662a99fd38c11baea6acc823e3e818c445a7c85fc159571cc6399c55f0",
        "sha256:b3061f66d06d0bd489f306bae82c0f69ee912865a97ee1e15f488d197037245a",
    ]
    assert content_hash(plain.assigned(order_id="ord-x", now=NOW, broker="paper")) == (
        content_hash(plain.model_copy(update={"broker": "paper"})))


# --- the store's claim: the OrderStore conformance for idempotency ----------------------------


def _state(key: str, qty: str = "10", status: OrderStatus | None = None,
           order_id: str | None = None) -> OrderState:
    o = order(key, qty).assigned(order_id=order_id or f"ord-{key}-{qty}-{status}", now=NOW)
    st = apply_event(new_order_state(o), OrderEventType.SUBMITTED).state
    if status is S.DENIED:
        st = apply_event(st, OrderEventType.DENIED).state
    return st


async def _create(store: OrderStore, st: OrderState, **kw: Any) -> KeyClaim:
    return await store.create_order(st, [], now=NOW, window=DAY,
                                    content_hash=content_hash(st.order), **kw)


async def test_the_claim_names_the_holder_and_its_content_hash(store: OrderStore) -> None:
    first = _state("k1", order_id="ord-1")
    claim = await _create(store, first)
    assert claim == KeyClaim(True, "ord-1", content_hash(first.order), None)
    twin = _state("k1", "999", order_id="ord-2")
    held = await _create(store, twin)
    assert held == KeyClaim(False, "ord-1", content_hash(first.order), None)
    assert await store.load_order("ord-2") is None  # nothing of the refused one is written
    assert await store.attempts("k1") == [Attempt("ord-1", S.PENDING,
                                                  content_hash(first.order), None)]
    assert await store.attempts("nobody") == []


async def test_an_order_stored_without_a_hash_is_held_with_none(store: OrderStore) -> None:
    await store.create_order(_state("k0", order_id="ord-0"), [], now=NOW, window=DAY)
    held = await _create(store, _state("k0", order_id="ord-0b"))
    assert held == KeyClaim(False, "ord-0", None, None)


async def test_a_denied_or_rejected_key_is_taken_over_and_linked(store: OrderStore) -> None:
    denied = _state("kd", "6", S.DENIED, order_id="ord-d1")
    assert (await _create(store, denied)).created
    retry = _state("kd", "5", order_id="ord-d2")
    claim = await _create(store, retry)
    assert claim == KeyClaim(True, "ord-d2", content_hash(retry.order), "ord-d1")
    assert await store.attempts("kd") == [
        Attempt("ord-d1", S.DENIED, content_hash(denied.order), None),
        Attempt("ord-d2", S.PENDING, content_hash(retry.order), "ord-d1")]
    # a key held by a pending order is not: the third attempt is answered with the second
    assert await _create(store, _state("kd", "4", order_id="ord-d3")) == KeyClaim(
        False, "ord-d2", content_hash(retry.order), None)
    # REJECTED (by the broker, after it was written) frees the key the same way
    sent = _state("kr", order_id="ord-r1")
    await _create(store, sent)
    rejected = apply_event(sent, OrderEventType.REJECTED).state
    await store.update_order(sent.sequence, rejected, [], now=NOW)
    again = await _create(store, _state("kr", order_id="ord-r2"))
    assert (again.created, again.previous_order_id) == (True, "ord-r1")
    assert [a.order_id for a in await store.attempts("kr")] == ["ord-r1", "ord-r2"]


async def test_a_canceled_or_accepted_key_is_not_taken_over(store: OrderStore) -> None:
    sent = _state("kc", order_id="ord-c1")
    await _create(store, sent)
    accepted = apply_event(sent, OrderEventType.ACCEPTED).state
    await store.update_order(sent.sequence, accepted, [], now=NOW)
    assert not (await _create(store, _state("kc", order_id="ord-c2"))).created
    canceled = apply_event(accepted, OrderEventType.CANCELED).state
    await store.update_order(accepted.sequence, canceled, [], now=NOW)
    assert not (await _create(store, _state("kc", order_id="ord-c3"))).created


async def test_concurrent_retries_of_a_denied_key_open_one_attempt(store: OrderStore) -> None:
    await _create(store, _state("kx", "6", S.DENIED, order_id="ord-x0"))
    claims = await asyncio.gather(*(_create(store, _state("kx", "5", order_id=f"ord-x{i}"))
                                    for i in range(1, 9)))
    won = [c for c in claims if c.created]
    assert len(won) == 1 and won[0].previous_order_id == "ord-x0"
    assert {c.order_id for c in claims if not c.created} == {won[0].order_id}
    assert [a.order_id for a in await store.attempts("kx")] == ["ord-x0", won[0].order_id]


async def test_one_batch_of_fresh_taken_over_held_and_denied_keys(store: OrderStore) -> None:
    """Orders created together share one statement on PostgreSQL: the usual batch (fresh
    keys, nothing denied) takes a short one, and an order whose key exists, or a denied
    one, is decided by the full one. Each must come out as it would alone."""
    await _create(store, _state("bt", "6", S.DENIED, order_id="b-t0"))
    await _create(store, _state("bh", order_id="b-h0"))
    denied = _state("bn", "7", S.DENIED, order_id="b-n1")
    denial = ("ev-b-n1", Denial(code=ReplyCode.QUANTITY_EXCEEDS_MAXIMUM, gate="order_size",
                                message="too large"))
    claims = await asyncio.gather(  # one batch: fresh keys and keys that exist
        _create(store, _state("bf1", order_id="b-f1")),
        _create(store, _state("bt", "5", order_id="b-t1")),
        _create(store, _state("bh", "9", order_id="b-h1")),
        _create(store, _state("bf2", order_id="b-f2")))
    assert [(c.created, c.order_id, c.previous_order_id) for c in claims] == [
        (True, "b-f1", None), (True, "b-t1", "b-t0"), (False, "b-h0", None),
        (True, "b-f2", None)]
    assert await store.load_order("b-h1") is None
    assert [a.order_id for a in await store.attempts("bt")] == ["b-t0", "b-t1"]
    if isinstance(store, Store):
        assert store.fresh_batches == 3  # the two creates before, then this batch
    claims = await asyncio.gather(  # one batch with a denial
        _create(store, _state("bf3", order_id="b-f3")), _create(store, denied, denial=denial))
    assert [(c.created, c.order_id) for c in claims] == [(True, "b-f3"), (True, "b-n1")]
    assert [(d["order_id"], d["gate"]) for d in await store.denials()] == [
        ("b-n1", "order_size")]
    assert {o.order_id for o in await store.orders()} == {
        "b-t0", "b-h0", "b-f1", "b-t1", "b-f2", "b-f3", "b-n1"}


# --- the OMS: conflicts -----------------------------------------------------------------------


async def test_same_key_other_quantity_is_a_conflict_naming_quantity(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """The issue's reproduction: a later qty 999 under the key of a qty 10 order was answered
    "ok, duplicate"."""
    oms = await make(broker)
    first = await oms.submit(order("same", "10"))
    events = await store.events(first.order_id or "")
    conflict = await oms.submit(order("same", "999"))
    assert (conflict.ok, conflict.code, conflict.duplicate) == (
        False, ReplyCode.IDEMPOTENCY_CONFLICT, False)
    assert conflict.order_id == first.order_id
    assert conflict.context == {"original_order_id": first.order_id,
                                "differing_fields": "quantity"}
    assert conflict.message is not None and "quantity" in conflict.message
    original = await store.load_order(first.order_id or "")
    assert original is not None and original.order.quantity == D(10)
    assert original.status is S.ACCEPTED
    assert await store.events(first.order_id or "") == events  # untouched
    assert broker.submissions == [first.order_id]
    several = await oms.submit(order("same", "10", side=Side.SELL, symbol="MSFT"))
    assert several.context["differing_fields"] == "instrument.symbol,side"
    relabelled = await oms.submit(order("same", "10").model_copy(update={"tags": {"try": 2}}))
    assert relabelled.duplicate and relabelled.ok  # tags are not content


# --- the OMS: retries of failed attempts ------------------------------------------------------


async def test_a_retry_after_denied_opens_a_linked_attempt(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, make_fund(max_order_quantity=D(5)))
    denied = await oms.submit(order("retry", "6"))
    assert denied.code is ReplyCode.QUANTITY_EXCEEDS_MAXIMUM and not denied.context
    second = await oms.submit(order("retry", "5"))  # other content: allowed after a denial
    assert second.ok and second.status is S.ACCEPTED and not second.duplicate
    assert second.order_id != denied.order_id
    assert second.context == {"previous_order_id": denied.order_id}
    assert [(a.order_id, a.status, a.previous_order_id) for a in
            await store.attempts("retry")] == [(denied.order_id, S.DENIED, None),
                                               (second.order_id, S.ACCEPTED, denied.order_id)]
    again = await oms.submit(order("retry", "5"))  # a repeat of the live attempt
    assert again.duplicate and again.order_id == second.order_id
    assert broker.submissions == [second.order_id]


async def test_a_retry_after_rejected_opens_a_linked_attempt(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    broker.reject_next = "venue closed"
    rejected = await oms.submit(order("rej", "3"))
    assert rejected.status is S.REJECTED
    retry = await oms.submit(order("rej", "3"))  # the same content: a new attempt
    assert retry.ok and retry.status is S.ACCEPTED
    assert retry.context == {"previous_order_id": rejected.order_id}
    assert broker.submissions == [rejected.order_id, retry.order_id]
    assert broker.new_orders == [retry.order_id]


# --- the OMS: repeats never send again --------------------------------------------------------


class GatedBroker(RecordingBroker):
    """The first submit waits at the venue's door until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        self.door = asyncio.Event()

    async def submit(self, order: Order) -> ExecutionReport:
        self.arrived.set()
        await self.door.wait()
        return await super().submit(order)


class TimeoutAfterSend(RecordingBroker):
    """The venue takes the first submit of each order, but the answer is lost: the OMS sees
    an unknown outcome (the order is at the venue)."""

    async def submit(self, order: Order) -> ExecutionReport:
        first = (order.order_id or "") not in self.orders
        report = await super().submit(order)
        if first:
            raise BrokerUnknownOutcome("timeout after send", order_id=order.order_id or "")
        return report


class TimeoutBeforeSend(RecordingBroker):
    """The first submit of each order never reaches the venue, but the OMS cannot know that:
    an unknown outcome (the order is not at the venue)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: list[str] = []

    async def submit(self, order: Order) -> ExecutionReport:
        oid = order.order_id or ""
        if oid not in self.lost:
            self.lost.append(oid)
            self.submissions.append(oid)
            raise BrokerUnknownOutcome("timeout", order_id=oid)
        return await super().submit(order)


async def test_fifty_concurrent_repeats_make_one_broker_submit(
        store: OrderStore, make: MakeOms) -> None:
    """The issue's check: 50 concurrent repeats of one key, 1 call of broker.submit (it was 18:
    every repeat arriving while the order was pending sent it again)."""
    broker = GatedBroker()
    oms = await make(broker)
    calls = [asyncio.create_task(oms.submit(order("fifty", "7"))) for _ in range(50)]
    await broker.arrived.wait()  # the first send is at the venue's door ...
    await asyncio.sleep(0.05)  # ... and every repeat has had its turn to (not) send
    broker.door.set()
    replies = await asyncio.gather(*calls)
    assert broker.submissions == [replies[0].order_id]
    assert broker.status_requests == []  # a send in flight is waited for, not resolved
    assert len({r.order_id for r in replies}) == 1
    assert sorted(r.duplicate for r in replies) == [False] + [True] * 49
    assert {r.status for r in replies} == {S.ACCEPTED} and all(r.ok for r in replies)


async def test_unknown_outcome_and_the_broker_has_it_means_no_resend(
        store: OrderStore, make: MakeOms) -> None:
    broker = TimeoutAfterSend()
    oms = await make(broker)
    first = await oms.submit(order("u1", "4"))
    assert first.ok and first.status is S.PENDING
    replies = await asyncio.gather(*(oms.submit(order("u1", "4")) for _ in range(50)))
    assert {(r.order_id, r.status, r.duplicate) for r in replies} == {
        (first.order_id, S.ACCEPTED, True)}
    assert broker.submissions == [first.order_id]  # never sent again
    assert broker.status_requests == [first.order_id]  # asked once, the rest waited


async def test_unknown_outcome_and_the_broker_proves_absence_means_one_resend(
        store: OrderStore, make: MakeOms) -> None:
    broker = TimeoutBeforeSend()
    oms = await make(broker)
    first = await oms.submit(order("u2", "4"))
    assert first.status is S.PENDING and broker.orders == {}
    replies = await asyncio.gather(*(oms.submit(order("u2", "4")) for _ in range(50)))
    assert {(r.order_id, r.status) for r in replies} == {(first.order_id, S.ACCEPTED)}
    assert broker.submissions == [first.order_id, first.order_id]  # the one re-send
    assert broker.new_orders == [first.order_id]
    assert broker.status_requests == [first.order_id]


async def test_a_broker_that_cannot_tell_gets_no_resend(store: OrderStore,
                                                        make: MakeOms) -> None:
    class Mute(TimeoutBeforeSend):
        async def order_status(self, client_order_id: str) -> ExecutionReport | None:
            self.status_requests.append(client_order_id)
            raise BrokerTransportError("status service down")

    broker = Mute()
    oms = await make(broker)
    first = await oms.submit(order("u3", "4"))
    again = await oms.submit(order("u3", "4"))
    assert (again.ok, again.status, again.duplicate) == (True, S.PENDING, True)
    assert broker.submissions == [first.order_id] and broker.status_requests == [first.order_id]


async def test_a_restart_resolves_a_pending_order_with_the_broker(
        store: OrderStore, make: MakeOms) -> None:
    """``recover`` at start used to send every pending order again; now it asks first."""
    broker = TimeoutAfterSend()
    oms = await make(broker)
    first = await oms.submit(order("u4", "4"))
    assert first.status is S.PENDING
    await oms.stop()
    await make(broker)  # a restart on the same store: start() runs recover()
    st = await store.load_order(first.order_id or "")
    assert st is not None and st.status is S.ACCEPTED
    assert broker.submissions == [first.order_id]
    lost = TimeoutBeforeSend()
    oms2 = await make(lost, make_fund("f2"))
    second = await oms2.submit(order("u5", "4", fund_id="f2"))
    await oms2.stop()
    await make(lost, make_fund("f2"))
    assert lost.submissions == [second.order_id, second.order_id]  # absent: sent once more
    assert lost.new_orders == [second.order_id]


async def test_a_conflicting_repeat_of_a_pending_order_neither_asks_nor_sends(
        store: OrderStore, make: MakeOms) -> None:
    broker = TimeoutBeforeSend()
    oms = await make(broker)
    first = await oms.submit(order("u6", "4"))
    conflict = await oms.submit(order("u6", "40"))
    assert conflict.code is ReplyCode.IDEMPOTENCY_CONFLICT and conflict.status is S.PENDING
    assert broker.submissions == [first.order_id] and broker.status_requests == []


@pytest.mark.parametrize("qty", ["10", "10.00"])
async def test_a_repeat_written_differently_is_a_duplicate(
        qty: str, store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    first = await oms.submit(order("w", "10"))
    again = await oms.submit(order("w", qty))
    assert again.duplicate and again.order_id == first.order_id and again.ok
