"""What the OMS needs from its system of record: the :class:`OrderStore` Protocol.

Why a Protocol: the OMS's lifecycle, gates, kill switch and idempotency are the same whatever
keeps the records, so they are written against this contract, and the same lifecycle tests run
against :class:`~mts1b_oms.memstore.InMemoryStore` (no server, every run) and against
PostgreSQL (:class:`~mts1b_oms.store.Store`, the production store), which makes those tests the
store's conformance suite.

The contract, in the words every implementation must keep:

* a write is all or nothing: the change, the events announcing it and their outbox rows commit
  together, and the outbox rows reach :meth:`OrderStore.on_commit` listeners after the commit,
  in commit order;
* ``create_order`` claims the idempotency key in the same write that creates the order, and
  stores the order's content hash with it; a key held inside the window by an order that did
  not end DENIED or REJECTED is not claimed (nothing is written, and the answer names the
  holder and its content hash), while a key whose order ended DENIED or REJECTED is taken
  over by the new order, which records the earlier one as its ``previous_order_id`` (a new
  attempt, linked: :meth:`OrderStore.attempts`);
* ``update_order`` writes only if the stored sequence is still the one the caller read
  (:class:`StaleState` otherwise);
* ``set_trading_state`` writes the state, the sweep's intent to cancel and one outstanding
  row per order to cancel in one write (the kill switch's durability rests on it);
* ``record_transfer`` books an internal transfer between sleeves, its credits and the positions
  it moves in one write, once per transfer id (``False``: already booked, nothing written);
  ``fills_for`` returns a sleeve's transfers beside its fills;
* ``record_split`` books a split for one fund, what its sleeves gave up in lieu, the positions
  it moves and their outbox rows in one write, once per (action id, fund) (``False``: already
  booked, nothing written); ``splits_for`` returns a sleeve's splits in a symbol, each with
  that sleeve's quantity in lieu (0 when none), in effective order;
* a :class:`FundLock` is held by one holder at a time and is released when its holder goes
  away (PostgreSQL: a session advisory lock, released when the connection closes, also when the
  process is killed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from mts1b_foundation import (
    Alert,
    Denial,
    Fill,
    MtsError,
    OrderStatus,
    Side,
    TradingState,
    TradingStateChange,
    WireModel,
)

from mts1b_oms.positions import PositionState, SplitStep
from mts1b_oms.state import OrderState

__all__ = [
    "RETRYABLE",
    "Attempt",
    "CancelOutcome",
    "FundLock",
    "KeyClaim",
    "OrderStore",
    "OutboxItem",
    "OutboxRow",
    "SplitRecord",
    "StaleState",
    "StateWrite",
    "StoreError",
    "Sweep",
    "SweepOrder",
    "Transfer",
    "in_scope",
]


class StoreError(MtsError):
    code = "OMS.STORE"


class StaleState(StoreError):
    """Another writer changed the order first (its sequence moved); reload and retry."""

    code = "OMS.STORE.STALE"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message to publish after commit: subject, model and its ``Nats-Msg-Id``."""

    subject: str
    message: WireModel
    msg_id: str


RETRYABLE = frozenset({OrderStatus.DENIED, OrderStatus.REJECTED})
"""Final statuses whose idempotency key a new submission may take over: nothing of the order
works anywhere (denied before it was sent, or refused by the venue), so another attempt
cannot duplicate it."""


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """What :meth:`OrderStore.create_order` did with the order's idempotency key.

    ``created``: the order was written and holds the key (``order_id`` is its id; when it
    took the key over from an attempt that ended DENIED or REJECTED, ``previous_order_id``
    names that attempt). Otherwise nothing was written and ``order_id`` /
    ``content_hash`` are the holder's (``content_hash`` ``None`` for an order stored before
    hashes were kept).
    """

    created: bool
    order_id: str
    content_hash: str | None = None
    previous_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One order in the chain of attempts of an idempotency key (:meth:`OrderStore.attempts`)."""

    order_id: str
    status: OrderStatus | None
    content_hash: str | None
    previous_order_id: str | None


OutboxRow = tuple[str, str, bytes]
"""One committed outbox row as the relay publishes it: ``(msg_id, subject, payload)``."""


class CancelOutcome(StrEnum):
    """How one order of a kill-switch sweep ended (``None`` in the store while outstanding)."""

    CANCELED = "canceled"
    """The order ended canceled."""
    CLOSED = "closed"
    """It ended otherwise before the cancel took (filled, expired, rejected): nothing works."""
    REFUSED = "refused"
    """The broker refused the cancel and still lists the order as working: a person must act."""
    NOT_WORKING = "not_working"
    """The broker refused the cancel but no longer lists the order as open (it ended at the
    venue while the OMS did not hear how): nothing works there; reconciliation tells the rest."""


@dataclass(frozen=True, slots=True)
class SweepOrder:
    """One order of a sweep and its cancel status (``outcome`` None: still outstanding)."""

    order_id: str
    fund_id: str
    outcome: CancelOutcome | None = None
    status: OrderStatus | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Sweep:
    """A kill-switch sweep: the intent to cancel ``orders`` because ``scope`` became ``state``."""

    sweep_id: str
    scope: str
    scope_id: str
    state: TradingState
    actor: str
    reason: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    orders: tuple[SweepOrder, ...]

    @property
    def outstanding(self) -> int:
        """Orders whose cancel status is not settled yet."""
        return sum(o.outcome is None for o in self.orders)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True, slots=True)
class StateWrite:
    """What :meth:`OrderStore.set_trading_state` did: whether the state was written and, if a
    sweep was asked for, the sweep as committed."""

    applied: bool
    sweep: Sweep | None = None


def in_scope(scope: str, scope_id: str, fund_id: str, strategy_id: str) -> bool:
    """Whether an order of ``fund_id`` / ``strategy_id`` falls under a kill-switch scope."""
    if scope == "global":
        return True
    if scope == "fund":
        return fund_id == scope_id
    return scope == "strategy" and strategy_id == scope_id


@dataclass(frozen=True, slots=True)
class Transfer:
    """Shares changing owner between sleeves with nothing sent to the venue (a symbol whose
    sleeve deltas net to zero): ``credits`` strategy -> signed shares (summing to 0), at
    ``price``. Booked once per ``transfer_id``."""

    transfer_id: str
    fund_id: str
    symbol: str
    price: Decimal
    ts: dt.datetime
    credits: Mapping[str, Decimal]

    def as_fill(self, strategy_id: str) -> Fill:
        """The transfer as ``strategy_id``'s books see it (what positions replay)."""
        q = self.credits[strategy_id]
        return Fill(trade_id=self.transfer_id, order_id=self.transfer_id, fund_id=self.fund_id,
                    symbol=self.symbol, side=Side.BUY if q > 0 else Side.SELL, quantity=abs(q),
                    price=self.price, ts=self.ts)


@dataclass(frozen=True, slots=True)
class SplitRecord:
    """A split as booked for one fund: ``ratio`` new shares per old one in ``symbol``,
    effective at ``effective_at`` (``ex_date``'s open), and ``in_lieu`` strategy -> (signed
    quantity given up, price or ``None``). Booked once per (``action_id``, ``fund_id``).
    ``close_price``: a delisting, booked as a split of ratio 1 that closes every sleeve's
    position at that price (:attr:`~mts1b_oms.positions.SplitStep.close_price`)."""

    action_id: str
    fund_id: str
    symbol: str
    ex_date: dt.date
    ratio: Decimal
    effective_at: dt.datetime
    applied_at: dt.datetime
    in_lieu: Mapping[str, tuple[Decimal, Decimal | None]]
    close_price: Decimal | None = None

    def step(self, strategy_id: str) -> SplitStep:
        """The split as ``strategy_id``'s position history holds it."""
        q, price = self.in_lieu.get(strategy_id, (Decimal(0), None))
        return SplitStep(self.action_id, self.effective_at, self.ratio, q, price,
                         self.close_price)


@runtime_checkable
class FundLock(Protocol):
    """The right to run the kill-switch sweeps of some funds: one holder per fund at a time.

    ``held`` are the funds this holder has; :meth:`acquire` tries to take the others (never
    waits for them) and returns ``held``; :meth:`release` gives them all back.
    """

    @property
    def held(self) -> frozenset[str]: ...

    async def acquire(self) -> frozenset[str]: ...

    async def release(self) -> None: ...


@runtime_checkable
class OrderStore(Protocol):
    """The OMS's system of record (see the module docstring for the rules every write keeps)."""

    def on_commit(self, listener: Callable[[list[OutboxRow]], None]) -> Callable[[], None]: ...

    async def close(self) -> None: ...

    # --- writes

    async def create_order(self, state: OrderState, outbox: Sequence[OutboxItem], *,
                           now: dt.datetime, window: dt.timedelta,
                           denial: tuple[str, Denial] | None = None,
                           content_hash: str | None = None) -> KeyClaim: ...

    async def update_order(self, before_sequence: int, state: OrderState,
                           outbox: Sequence[OutboxItem], *, now: dt.datetime,
                           fill: Fill | None = None, busted_trade_id: str | None = None,
                           positions: Sequence[tuple[str, str, str, PositionState]] = (),
                           ) -> None: ...

    async def set_trading_state(self, change: TradingStateChange,
                                outbox: Sequence[OutboxItem], *, escalate_only: bool = False,
                                sweep_id: str | None = None,
                                sweep_orders: Sequence[str] | None = None) -> StateWrite: ...

    async def create_sweep(self, change: TradingStateChange, sweep_id: str,
                           order_ids: Sequence[str] | None, *, now: dt.datetime
                           ) -> Sweep | None: ...

    async def record_cancel_outcome(self, sweep_id: str, order_id: str,
                                    outcome: CancelOutcome, status: OrderStatus | None,
                                    detail: str | None, *, now: dt.datetime) -> bool: ...

    async def record_alert(self, alert: Alert, outbox: Sequence[OutboxItem]) -> None: ...

    async def record_transfer(self, transfer: Transfer, outbox: Sequence[OutboxItem], *,
                              positions: Sequence[tuple[str, str, str, PositionState]]
                              ) -> bool: ...

    async def record_split(self, split: SplitRecord, outbox: Sequence[OutboxItem], *,
                           positions: Sequence[tuple[str, str, str, PositionState]]
                           ) -> bool: ...

    async def set_nav(self, fund_id: str, nav: Decimal, now: dt.datetime) -> Decimal: ...

    def fund_lock(self, fund_ids: Collection[str]) -> FundLock: ...

    # --- reads

    async def load_order(self, order_id: str) -> OrderState | None: ...

    async def open_orders(self, fund_id: str | None = None) -> list[OrderState]: ...

    async def orders(self, fund_id: str | None = None) -> list[OrderState]: ...

    async def events(self, order_id: str) -> list[dict[str, Any]]: ...

    async def attempts(self, idempotency_key: str) -> list[Attempt]: ...

    async def denials(self, fund_id: str | None = None) -> list[dict[str, Any]]: ...

    async def fills(self, order_id: str | None = None, *,
                    include_busted: bool = False) -> list[Fill]: ...

    async def fills_for(self, fund_id: str, strategy_id: str, symbol: str) -> list[Fill]: ...

    async def splits_for(self, fund_id: str, strategy_id: str, symbol: str
                         ) -> list[SplitStep]: ...

    async def split_booked(self, action_id: str, fund_id: str) -> bool: ...

    async def split_times(self) -> dict[tuple[str, str], dt.datetime]: ...

    async def positions(self, fund_id: str | None = None
                        ) -> list[tuple[str, str, str, PositionState]]: ...

    async def trading_states(self) -> list[tuple[str, str, TradingState]]: ...

    async def state_changes(self) -> list[TradingStateChange]: ...

    async def nav(self, fund_id: str) -> tuple[Decimal, Decimal] | None: ...

    async def sweep(self, sweep_id: str) -> Sweep | None: ...

    async def unfinished_sweeps(self, fund_ids: Collection[str] | None = None
                                ) -> list[Sweep]: ...

    # --- outbox

    async def unpublished(self, limit: int, *, older_than: dt.timedelta = dt.timedelta(0)
                          ) -> list[OutboxRow]: ...

    async def mark_published(self, msg_ids: Sequence[str]) -> None: ...

    async def unpublished_count(self) -> int: ...
