"""An :class:`~mts1b_oms.orderstore.OrderStore` in memory: the OMS without a database.

Why: the lifecycle, idempotency and kill-switch tests then run on every machine in
milliseconds, and the same tests run against PostgreSQL as that store's conformance suite.
It keeps the rules of the contract - one write is all or nothing, the idempotency key is
claimed by the write that creates the order, a stale sequence is refused, a sweep and its
outstanding rows are written with the state, a fund lock has one holder - and it stores each
order as the same JSON column PostgreSQL gets, so what survives a round trip there survives
here. Nothing survives the process: for tests, examples and backtests, never for money.

Every write yields to the event loop once before it applies, as a database round trip does,
so concurrent callers interleave as they would against a server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from mts1b_foundation import (
    Alert,
    Denial,
    Fill,
    OrderEvent,
    OrderStatus,
    TradingState,
    TradingStateChange,
)
from mts1b_foundation.subjects import check_publishable

from mts1b_oms.orderstore import (
    RETRYABLE,
    Attempt,
    CancelOutcome,
    KeyClaim,
    OutboxItem,
    OutboxRow,
    SplitRecord,
    StaleState,
    StateWrite,
    Sweep,
    SweepOrder,
    Transfer,
    in_scope,
)
from mts1b_oms.positions import PositionState, SplitStep
from mts1b_oms.sleeves import SleeveFill, credit_fill, sleeve_fills
from mts1b_oms.state import OrderState
from mts1b_oms.store import state_from_json, state_to_json
from mts1b_oms.tradingstate import restrictiveness

__all__ = ["InMemoryStore"]


@dataclass
class _Order:
    idempotency_key: str
    fund_id: str
    strategy_id: str
    status: str
    sequence: int
    state: str  # the JSON column
    created_at: dt.datetime
    content_hash: str | None = None
    previous_order_id: str | None = None


@dataclass
class _Outbox:
    seq: int
    msg_id: str
    subject: str
    payload: bytes
    created_at: dt.datetime


@dataclass
class _Fill:
    fill: Fill
    strategy_id: str
    busted: bool = False


@dataclass
class _Sweep:
    sweep: Sweep
    orders: dict[str, SweepOrder] = field(default_factory=dict)


class InMemoryStore:
    """See the module docstring. ``InMemoryStore()``; :meth:`close` does nothing."""

    def __init__(self) -> None:
        self._orders: dict[str, _Order] = {}
        self._keys: dict[str, tuple[str, dt.datetime]] = {}  # key -> (order_id, created_at)
        self._events: dict[str, list[tuple[int, str]]] = {}  # order_id -> [(sequence, json)]
        self._event_ids: set[str] = set()
        self._denials: list[dict[str, Any]] = []
        self._fills: dict[str, _Fill] = {}
        self._sleeve_fills: dict[tuple[str, str], SleeveFill] = {}  # (trade, strategy) -> part
        self._transfers: dict[str, Transfer] = {}
        self._splits: dict[tuple[str, str], SplitRecord] = {}  # (action_id, fund_id)
        self._positions: dict[tuple[str, str, str], PositionState] = {}
        self._states: dict[tuple[str, str], TradingStateChange] = {}
        self._nav: dict[str, tuple[Decimal, Decimal]] = {}
        self._alerts: dict[str, Alert] = {}
        self._outbox: dict[str, _Outbox] = {}
        self._outbox_seq = itertools.count(1)
        self._sweeps: dict[str, _Sweep] = {}
        self._lock_holders: dict[str, object] = {}  # fund_id -> the _MemoryFundLock holding it
        self._listeners: list[Callable[[list[OutboxRow]], None]] = []
        self._write = asyncio.Lock()  # one write at a time, as one transaction at a time
        self._nonces: dict[tuple[str, str], dt.datetime] = {}  # (key_id, nonce) -> signed_at

    # --- plumbing -----------------------------------------------------------------------------

    def on_commit(self, listener: Callable[[list[OutboxRow]], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    async def close(self) -> None:
        return None

    def _committed(self, rows: list[OutboxRow]) -> None:
        if rows:
            for listener in list(self._listeners):
                listener(rows)

    def _outbox_rows(self, items: Sequence[OutboxItem]) -> list[OutboxRow]:
        """Check and encode ``items`` (raising before anything is written, as the PostgreSQL
        store does); the rows are inserted by :meth:`_insert_outbox` after every check."""
        for it in items:
            check_publishable(it.subject, it.message)
        return [(it.msg_id, it.subject, it.message.to_json()) for it in items]

    def _insert_outbox(self, rows: list[OutboxRow]) -> None:
        now = dt.datetime.now(dt.UTC)
        for msg_id, subject, payload in rows:
            if msg_id not in self._outbox:  # ON CONFLICT (msg_id) DO NOTHING
                self._outbox[msg_id] = _Outbox(next(self._outbox_seq), msg_id, subject,
                                               payload, now)

    def _insert_events(self, order_id: str, rows: list[OutboxRow],
                       items: Sequence[OutboxItem]) -> None:
        for (_msg_id, _subject, payload), it in zip(rows, items, strict=True):
            ev = it.message
            if isinstance(ev, OrderEvent) and ev.event_id not in self._event_ids:
                self._event_ids.add(ev.event_id)
                self._events.setdefault(order_id, []).append((ev.sequence, payload.decode()))

    # --- writes -------------------------------------------------------------------------------

    async def create_order(self, state: OrderState, outbox: Sequence[OutboxItem], *,
                           now: dt.datetime, window: dt.timedelta,
                           denial: tuple[str, Denial] | None = None,
                           content_hash: str | None = None) -> KeyClaim:
        rows = self._outbox_rows(outbox)
        text = state_to_json(state)
        async with self._write:
            await asyncio.sleep(0)
            o = state.order
            held = self._keys.get(o.idempotency_key)
            holder = None if held is None else self._orders.get(held[0])
            retryable = holder is not None and holder.status in _RETRYABLE
            if held is not None and not held[1] < now - window and not retryable:
                return KeyClaim(False, held[0], holder.content_hash if holder else None)
            previous = held[0] if held is not None and retryable else None
            self._keys[o.idempotency_key] = (state.order_id, now)
            self._orders[state.order_id] = _Order(
                o.idempotency_key, o.fund_id, o.strategy_id, _status(state), state.sequence,
                text, now, content_hash, previous)
            if denial is not None:
                event_id, d = denial
                self._denials.append({"order_id": state.order_id, "code": d.code.value,
                                      "gate": d.gate, "message": d.message,
                                      "context": json.loads(json.dumps(d.context)),
                                      "fund_id": o.fund_id, "ts": now, "event_id": event_id})
            self._insert_events(state.order_id, rows, outbox)
            self._insert_outbox(rows)
        self._committed(rows)
        return KeyClaim(True, state.order_id, content_hash, previous)

    async def update_order(self, before_sequence: int, state: OrderState,
                           outbox: Sequence[OutboxItem], *, now: dt.datetime,
                           fill: Fill | None = None, busted_trade_id: str | None = None,
                           positions: Sequence[tuple[str, str, str, PositionState]] = (),
                           ) -> None:
        rows = self._outbox_rows(outbox)
        text = state_to_json(state)
        oid = state.order_id
        async with self._write:
            await asyncio.sleep(0)
            row = self._orders.get(oid)
            if row is None or row.sequence != before_sequence:
                raise StaleState(f"order {oid} changed since sequence {before_sequence}",
                                 order_id=oid)
            row.status, row.sequence, row.state = _status(state), state.sequence, text
            if fill is not None:
                old = self._fills.get(fill.trade_id)
                self._fills[fill.trade_id] = _Fill(fill, state.order.strategy_id,
                                                   old.busted if old else False)
                for part in sleeve_fills(state, fill):  # in the same write, as PostgreSQL
                    self._sleeve_fills[(fill.trade_id, part.strategy_id)] = part
            if busted_trade_id is not None and busted_trade_id in self._fills:
                self._fills[busted_trade_id].busted = True
            for fund_id, strategy_id, symbol, pos in positions:
                self._positions[(fund_id, strategy_id, symbol)] = pos
            self._insert_events(oid, rows, outbox)
            self._insert_outbox(rows)
        self._committed(rows)

    async def set_trading_state(self, change: TradingStateChange,
                                outbox: Sequence[OutboxItem], *, escalate_only: bool = False,
                                sweep_id: str | None = None,
                                sweep_orders: Sequence[str] | None = None) -> StateWrite:
        rows = self._outbox_rows(outbox)
        async with self._write:
            await asyncio.sleep(0)
            key = (change.scope, change.scope_id)
            current = self._states.get(key)
            if escalate_only and current is not None and (
                    restrictiveness(current.state) >= restrictiveness(change.state)):
                return StateWrite(False)
            self._states[key] = change
            self._insert_outbox(rows)
            sweep = None
            if sweep_id is not None and change.state is not TradingState.ACTIVE:
                sweep = self._insert_sweep(change, sweep_id, sweep_orders, change.ts,
                                           keep_empty=True)
        self._committed(rows)
        return StateWrite(True, sweep)

    async def create_sweep(self, change: TradingStateChange, sweep_id: str,
                           order_ids: Sequence[str] | None, *, now: dt.datetime
                           ) -> Sweep | None:
        async with self._write:
            await asyncio.sleep(0)
            return self._insert_sweep(change, sweep_id, order_ids, now, keep_empty=False)

    def _insert_sweep(self, change: TradingStateChange, sweep_id: str,
                      order_ids: Sequence[str] | None, now: dt.datetime, *,
                      keep_empty: bool) -> Sweep | None:
        outstanding = {oid for s in self._sweeps.values() for oid, o in s.orders.items()
                       if o.outcome is None}
        wanted = None if order_ids is None else set(order_ids)
        picked = [SweepOrder(oid, row.fund_id) for oid, row in sorted(self._orders.items())
                  if not OrderStatus(row.status).is_terminal
                  and in_scope(change.scope, change.scope_id, row.fund_id, row.strategy_id)
                  and (wanted is None or oid in wanted) and oid not in outstanding]
        if not picked and not keep_empty:
            return None
        sweep = Sweep(sweep_id, change.scope, change.scope_id, change.state, change.actor,
                      change.reason, now, None if picked else now, tuple(picked))
        self._sweeps[sweep_id] = _Sweep(sweep, {o.order_id: o for o in picked})
        return sweep

    async def record_cancel_outcome(self, sweep_id: str, order_id: str,
                                    outcome: CancelOutcome, status: OrderStatus | None,
                                    detail: str | None, *, now: dt.datetime) -> bool:
        async with self._write:
            await asyncio.sleep(0)
            entry = self._sweeps.get(sweep_id)
            if entry is None or entry.sweep.finished:
                return False
            row = entry.orders.get(order_id)
            if row is not None and row.outcome is None:
                entry.orders[order_id] = replace(row, outcome=outcome, status=status,
                                                 detail=detail[:2000] if detail else None)
            if any(o.outcome is None for o in entry.orders.values()):
                return False
            entry.sweep = replace(entry.sweep, finished_at=now)
            return True

    async def claim_nonce(self, key_id: str, nonce: str, *, command: str,
                          signed_at: dt.datetime, now: dt.datetime,
                          forget_before: dt.datetime) -> bool:
        """As :meth:`Store.claim_nonce <mts1b_oms.store.Store.claim_nonce>`: one claim per
        (key, nonce) for as long as this store lives."""
        async with self._write:
            await asyncio.sleep(0)
            for old in [k for k, t in self._nonces.items() if t < forget_before]:
                del self._nonces[old]
            if (key_id, nonce) in self._nonces:
                return False
            self._nonces[(key_id, nonce)] = signed_at
            return True

    async def record_alert(self, alert: Alert, outbox: Sequence[OutboxItem]) -> None:
        rows = self._outbox_rows(outbox)
        async with self._write:
            await asyncio.sleep(0)
            self._alerts.setdefault(alert.alert_id, alert)
            self._insert_outbox(rows)
        self._committed(rows)

    async def record_transfer(self, transfer: Transfer, outbox: Sequence[OutboxItem], *,
                              positions: Sequence[tuple[str, str, str, PositionState]]
                              ) -> bool:
        rows = self._outbox_rows(outbox)
        async with self._write:
            await asyncio.sleep(0)
            if transfer.transfer_id in self._transfers:
                return False
            self._transfers[transfer.transfer_id] = transfer
            for fund_id, strategy_id, symbol, pos in positions:
                self._positions[(fund_id, strategy_id, symbol)] = pos
            self._insert_outbox(rows)
        self._committed(rows)
        return True

    async def record_split(self, split: SplitRecord, outbox: Sequence[OutboxItem], *,
                           positions: Sequence[tuple[str, str, str, PositionState]]
                           ) -> bool:
        rows = self._outbox_rows(outbox)
        async with self._write:
            await asyncio.sleep(0)
            key = (split.action_id, split.fund_id)
            if key in self._splits:
                return False
            self._splits[key] = split
            for fund_id, strategy_id, symbol, pos in positions:
                self._positions[(fund_id, strategy_id, symbol)] = pos
            self._insert_outbox(rows)
        self._committed(rows)
        return True

    async def splits_for(self, fund_id: str, strategy_id: str, symbol: str
                         ) -> list[SplitStep]:
        await asyncio.sleep(0)
        found = sorted((s for s in self._splits.values()
                        if s.fund_id == fund_id and s.symbol == symbol),
                       key=lambda s: (s.effective_at, s.action_id))
        return [s.step(strategy_id) for s in found]

    async def split_booked(self, action_id: str, fund_id: str) -> bool:
        await asyncio.sleep(0)
        return (action_id, fund_id) in self._splits

    async def split_times(self) -> dict[tuple[str, str], dt.datetime]:
        await asyncio.sleep(0)
        out: dict[tuple[str, str], dt.datetime] = {}
        for s in self._splits.values():
            key = (s.fund_id, s.symbol)
            out[key] = max(out.get(key, s.effective_at), s.effective_at)
        return out

    async def set_nav(self, fund_id: str, nav: Decimal, now: dt.datetime) -> Decimal:
        async with self._write:
            await asyncio.sleep(0)
            old = self._nav.get(fund_id)
            peak = nav if old is None else max(old[1], nav)
            self._nav[fund_id] = (nav, peak)
            return peak

    def fund_lock(self, fund_ids: Collection[str]) -> _MemoryFundLock:
        return _MemoryFundLock(self._lock_holders, fund_ids)

    # --- reads --------------------------------------------------------------------------------

    async def load_order(self, order_id: str) -> OrderState | None:
        await asyncio.sleep(0)
        row = self._orders.get(order_id)
        return None if row is None else state_from_json(row.state)

    async def open_orders(self, fund_id: str | None = None) -> list[OrderState]:
        await asyncio.sleep(0)
        return [state_from_json(r.state) for r in self._by_created(fund_id)
                if not OrderStatus(r.status).is_terminal]

    async def orders(self, fund_id: str | None = None) -> list[OrderState]:
        await asyncio.sleep(0)
        return [state_from_json(r.state) for r in self._by_created(fund_id)]

    def _by_created(self, fund_id: str | None) -> list[_Order]:
        rows = [r for r in self._orders.values() if fund_id is None or r.fund_id == fund_id]
        return sorted(rows, key=lambda r: r.created_at)  # stable: insertion order on ties

    async def events(self, order_id: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return [json.loads(text) for _seq, text in
                sorted(self._events.get(order_id, []), key=lambda e: e[0])]

    async def attempts(self, idempotency_key: str) -> list[Attempt]:
        await asyncio.sleep(0)
        held = self._keys.get(idempotency_key)
        chain: list[Attempt] = []
        order_id = None if held is None else held[0]
        while order_id is not None and (row := self._orders.get(order_id)) is not None:
            chain.append(Attempt(order_id, OrderStatus(row.status) if row.status != "new"
                                 else None, row.content_hash, row.previous_order_id))
            order_id = row.previous_order_id
        return chain[::-1]

    async def denials(self, fund_id: str | None = None) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return [{k: d[k] for k in ("order_id", "code", "gate", "message", "context")}
                for d in sorted(self._denials, key=lambda d: d["ts"])
                if fund_id is None or d["fund_id"] == fund_id]

    async def fills(self, order_id: str | None = None, *,
                    include_busted: bool = False) -> list[Fill]:
        await asyncio.sleep(0)
        return sorted((f.fill for f in self._fills.values()
                       if (order_id is None or f.fill.order_id == order_id)
                       and (include_busted or not f.busted)),
                      key=lambda f: (f.ts, f.trade_id))

    async def fills_for(self, fund_id: str, strategy_id: str, symbol: str) -> list[Fill]:
        await asyncio.sleep(0)
        out = []
        for (trade_id, strategy), part in self._sleeve_fills.items():
            f = self._fills[trade_id]
            if (strategy == strategy_id and f.fill.fund_id == fund_id
                    and f.fill.symbol == symbol and not f.busted and part.quantity != 0):
                out.append(credit_fill(f.fill, part.quantity, part.commission))
        out += [t.as_fill(strategy_id) for t in self._transfers.values()
                if t.fund_id == fund_id and t.symbol == symbol and t.credits.get(strategy_id)]
        return sorted(out, key=lambda f: (f.ts, f.trade_id))

    async def positions(self, fund_id: str | None = None
                        ) -> list[tuple[str, str, str, PositionState]]:
        await asyncio.sleep(0)
        return [(*key, p) for key, p in sorted(self._positions.items())
                if fund_id is None or key[0] == fund_id]

    async def trading_states(self) -> list[tuple[str, str, TradingState]]:
        await asyncio.sleep(0)
        return [(c.scope, c.scope_id, c.state) for c in self._states.values()]

    async def state_changes(self) -> list[TradingStateChange]:
        await asyncio.sleep(0)
        return sorted(self._states.values(), key=lambda c: c.ts)

    async def nav(self, fund_id: str) -> tuple[Decimal, Decimal] | None:
        await asyncio.sleep(0)
        return self._nav.get(fund_id)

    async def sweep(self, sweep_id: str) -> Sweep | None:
        await asyncio.sleep(0)
        entry = self._sweeps.get(sweep_id)
        return None if entry is None else _snapshot(entry)

    async def unfinished_sweeps(self, fund_ids: Collection[str] | None = None
                                ) -> list[Sweep]:
        await asyncio.sleep(0)
        funds = None if fund_ids is None else set(fund_ids)
        return [_snapshot(e) for e in sorted(self._sweeps.values(),
                                             key=lambda e: (e.sweep.created_at,
                                                            e.sweep.sweep_id))
                if not e.sweep.finished and any(
                    o.outcome is None and (funds is None or o.fund_id in funds)
                    for o in e.orders.values())]

    # --- outbox -------------------------------------------------------------------------------

    async def unpublished(self, limit: int, *, older_than: dt.timedelta = dt.timedelta(0)
                          ) -> list[OutboxRow]:
        await asyncio.sleep(0)
        horizon = dt.datetime.now(dt.UTC) - older_than
        rows = sorted((r for r in self._outbox.values() if r.created_at <= horizon),
                      key=lambda r: r.seq)[:limit]
        return [(r.msg_id, r.subject, r.payload) for r in rows]

    async def mark_published(self, msg_ids: Sequence[str]) -> None:
        await asyncio.sleep(0)
        for msg_id in msg_ids:
            self._outbox.pop(msg_id, None)

    async def unpublished_count(self) -> int:
        await asyncio.sleep(0)
        return len(self._outbox)


def _snapshot(entry: _Sweep) -> Sweep:
    return replace(entry.sweep, orders=tuple(entry.orders[o.order_id]
                                             for o in entry.sweep.orders))


def _status(state: OrderState) -> str:
    return state.status.value if state.status else "new"


_RETRYABLE = frozenset(s.value for s in RETRYABLE)


class _MemoryFundLock:
    """One holder per fund among the locks of one :class:`InMemoryStore`."""

    def __init__(self, holders: dict[str, object], fund_ids: Collection[str]) -> None:
        self._holders = holders
        self._funds = list(fund_ids)

    @property
    def held(self) -> frozenset[str]:
        return frozenset(f for f in self._funds if self._holders.get(f) is self)

    async def acquire(self) -> frozenset[str]:
        for fund_id in self._funds:
            self._holders.setdefault(fund_id, self)
        return self.held

    async def release(self) -> None:
        for fund_id in self._funds:
            if self._holders.get(fund_id) is self:
                del self._holders[fund_id]
