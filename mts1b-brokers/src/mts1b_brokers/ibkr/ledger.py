"""One of our orders at IB: its fills by execution id, and the reports they make.

Why a ledger of its own: IB's orderStatus messages are not guaranteed (TWS may skip them), so
the filled quantity is the sum of the executions seen, each counted once by its execId
however often TWS sends it (live, then again in a reqExecutions replay after a reconnect). An
execId that differs from a known one only after its last period is a *correction*: it
replaces that fill (new shares or price); it is not a new fill.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from mts1b_foundation import ExecType, ExecutionReport, Fill, Order, ReplyCode

__all__ = ["Execution", "Tracked", "trade_id_of"]


def trade_id_of(exec_id: str) -> str:
    """The part of an execId that stays the same across corrections (before its last
    period): ``0000e0d5.6554c2b9.01.01`` and its correction ``...01.02`` share it."""
    base, dot, _ = exec_id.rpartition(".")
    return base if dot else exec_id


@dataclass(frozen=True)
class Execution:
    """One execution as TWS sent it (execDetails), with its commission once known."""

    exec_id: str
    shares: Decimal
    price: Decimal
    ts: dt.datetime
    commission: Decimal | None = None


@dataclass
class Tracked:
    """Our order, the IB id it went out under, and everything heard about it."""

    order: Order
    account: str
    ib_order_id: int
    broker: str
    perm_id: int = 0
    acked: bool = False
    canceled: bool = False
    rejected: ExecutionReport | None = None
    fills: dict[str, Execution] = field(default_factory=dict)
    """trade id (execId before its last period) -> the execution that stands for it."""
    reported: set[str] = field(default_factory=set)
    """Trade ids already told in a fill report (the cumulative quantity counts only them)."""
    last: ExecutionReport | None = None
    pending: Order | None = None
    """New terms of a replace IB has not confirmed yet."""

    @property
    def order_id(self) -> str:
        return self.order.order_id or ""

    @property
    def filled(self) -> Decimal:
        return sum((e.shares for k, e in self.fills.items() if k in self.reported), Decimal(0))

    @property
    def leaves(self) -> Decimal:
        if self.canceled or self.rejected is not None:
            return Decimal(0)
        return max(self.order.quantity - self.filled, Decimal(0))

    @property
    def done(self) -> bool:
        return self.canceled or self.rejected is not None or self.filled >= self.order.quantity

    def report(self, exec_type: ExecType, *, execution: Execution | None = None,
               reason: str | None = None, code: ReplyCode | None = None,
               venue_code: int | None = None, venue_message: str | None = None,
               ts: dt.datetime | None = None) -> ExecutionReport:
        """A report on this order as it stands now."""
        extra: dict[str, object] = {}
        if execution is not None:
            extra = {"trade_id": trade_id_of(execution.exec_id),
                     "last_quantity": execution.shares, "last_price": execution.price,
                     "commission": execution.commission or Decimal(0)}
        return ExecutionReport(
            broker=self.broker, account_id=self.account, order_id=self.order_id,
            broker_order_id=str(self.ib_order_id), exec_type=exec_type,
            ts=ts or dt.datetime.now(dt.UTC), symbol=self.order.instrument.symbol,
            side=self.order.side, cumulative_quantity=self.filled, leaves_quantity=self.leaves,
            reason=reason, code=code,
            venue_code=str(venue_code) if venue_code is not None else None,
            venue_message=venue_message or None, **extra)

    def add(self, execution: Execution) -> str:
        """Take an execution in: ``"new"``, ``"duplicate"`` (same execId again) or
        ``"correction"`` (replaces the fill with the same trade id)."""
        key = trade_id_of(execution.exec_id)
        known = self.fills.get(key)
        if known is None:
            self.fills[key] = execution
            return "new"
        if known.exec_id == execution.exec_id:
            if known.commission is None and execution.commission is not None:
                self.fills[key] = execution
            return "duplicate"
        if _revision(execution.exec_id) < _revision(known.exec_id):
            return "duplicate"  # an older version arriving late (a replay): keep the newer
        self.fills[key] = execution
        return "correction"

    def as_fill(self, execution: Execution) -> Fill:
        """The foundation ``Fill`` for an execution (what ``OMS.correct`` takes)."""
        return Fill(trade_id=trade_id_of(execution.exec_id), order_id=self.order_id,
                    fund_id=self.order.fund_id, symbol=self.order.instrument.symbol,
                    side=self.order.side, quantity=execution.shares, price=execution.price,
                    commission=execution.commission or Decimal(0), ts=execution.ts,
                    venue="ibkr")


def _revision(exec_id: str) -> int:
    tail = exec_id.rpartition(".")[2]
    try:
        return int(tail, 16)
    except ValueError:
        return 0
