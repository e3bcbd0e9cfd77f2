"""A small broker test double for OMS tests and examples (not a venue simulator).

:class:`RecordingBroker` satisfies :class:`~mts1b_foundation.BrokerProtocol`: it acknowledges
every order (optionally fills it at once), treats a repeated ``order_id`` as a repeat (no second
order, as the protocol requires), and records every call. With ``path`` it appends each *new*
order id to a file (fsync'd) and reloads the file on start, so it survives the OMS process being
killed - the crash-safety test uses that to prove no order reached it twice. Cancels work the
same way: a cancel of an order already canceled is a repeat (the CANCELED report again), each
cancel request and each cancel that took are appended to ``<path>.cancels``, and
``cancel_seconds`` makes the venue slow to cancel (it takes the cancel half-way through), which
is how the kill-switch tests kill the OMS while cancels are in flight. A replace is recorded
too (``replace_requests``: every call; ``replaced``: the order's terms after each replace that
took, also appended to ``path``), so a test can say what reached the venue and check each
version of an order, not only its last.

For realistic fills use ``mts1b_brokers.paper.PaperClient`` (entry point ``paper``).

More helpers shared by the tests and the benchmarks, so each is written once:
:func:`make_fund` (a fund whose envelope disables every limit except the ones asked for),
:func:`make_order` (a market order by idempotency key), :func:`make_registry` (an instrument
registry of plain equities), :func:`drop_schema` (remove a throwaway PostgreSQL schema
after a run) and :func:`make_signing_keys` / :func:`write_signing_keys` (fresh keys to sign
trading-state commands, and their registry).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from mts1b_foundation import (
    AccountSnapshot,
    BrokerRejected,
    ConnectionState,
    Equity,
    ExecType,
    ExecutionReport,
    FundConfig,
    Order,
    Position,
    RiskEnvelope,
    Side,
)

from mts1b_oms.instruments import InstrumentRegistry
from mts1b_oms.signing import KeyRegistry, Role, SigningKey
from mts1b_oms.store import Store

__all__ = ["TEST_KEY_ROLES", "TEST_SYMBOLS", "RecordingBroker", "drop_schema", "make_fund",
           "make_order", "make_registry", "make_signing_keys", "write_signing_keys"]

TEST_KEY_ROLES = {"ops-test": (Role.OPERATIONS,), "risk-test": (Role.RISK,),
                  "desk-test": (Role.OPERATIONS, Role.RISK)}
"""The keys :func:`make_signing_keys` makes, by name, and their roles."""

TEST_SYMBOLS = ("AAPL", "MSFT", "IBM", "GME")
"""The symbols the OMS tests trade: registered by :func:`make_registry` by default."""


def make_fund(fund_id: str = "f1", *, name: str = "Fund one",
              nav: Decimal | int = Decimal(1_000_000), broker_account_id: str = "acc1",
              **risk: Any) -> FundConfig:
    """A ``paper`` fund with :meth:`RiskEnvelope.unrestricted` limits, except the ``risk``
    fields given (e.g. ``max_order_notional=Decimal(50_000)``): a test switches on only the
    gate it is about. The envelope is validated, so a ``None`` limit is refused as it is in
    a configuration file."""
    data = {**RiskEnvelope.unrestricted().model_dump(), **risk}
    return FundConfig(fund_id=fund_id, name=name, target_nav_usd=Decimal(nav), broker="paper",
                      broker_account_id=broker_account_id, risk=RiskEnvelope(**data))


def make_registry(*symbols: str) -> InstrumentRegistry:
    """An instrument registry of equities with the default terms (tick 0.01, lot 1, minimum
    1: what ``Equity(symbol=...)`` says), for ``symbols`` or :data:`TEST_SYMBOLS`."""
    return InstrumentRegistry(Equity(symbol=s) for s in symbols or TEST_SYMBOLS)


def make_order(key: str, qty: str = "10", side: Side = Side.BUY, fund_id: str = "f1",
               symbol: str = "AAPL") -> Order:
    """A market order of strategy ``s1`` whose idempotency key is ``key`` (the OMS assigns
    the order id)."""
    return Order(idempotency_key=key, fund_id=fund_id, strategy_id="s1",
                 instrument=Equity(symbol=symbol), side=side, quantity=Decimal(qty))


def make_signing_keys() -> tuple[KeyRegistry, dict[str, SigningKey]]:
    """Fresh random keys named and given roles as :data:`TEST_KEY_ROLES` says, and the
    registry of their public halves."""
    keys = {name: SigningKey.generate(name) for name in TEST_KEY_ROLES}
    return KeyRegistry(k.registered(TEST_KEY_ROLES[n]) for n, k in keys.items()), keys


def write_signing_keys(directory: Path) -> tuple[Path, dict[str, Path]]:
    """:func:`make_signing_keys` as files in ``directory``: the registry (``keys.json``, for
    ``serve --keys``) and each private key file (``<name>.key``, mode 600, for
    ``--key-file``)."""
    registry, keys = make_signing_keys()
    path = directory / "keys.json"
    path.write_text(registry.to_json())
    files = {}
    for name, key in keys.items():
        files[name] = directory / f"{name}.key"
        key.save(files[name])
    return path, files


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a throwaway OMS schema (a test's or a benchmark's) through a one-connection store."""
    store = await Store.open(dsn, schema=schema, min_size=1, max_size=1)
    try:
        await store.drop_schema()
    finally:
        await store.close()


class RecordingBroker:
    """See the module docstring. ``fill_price``: fill every order in full at this price."""

    def __init__(self, *, name: str = "paper", fill_price: Decimal | str | None = None,
                 path: str | os.PathLike[str] | None = None,
                 positions: dict[str, Decimal] | None = None,
                 cancel_seconds: float | str = 0.0,
                 cancel_rate: float | str | None = None) -> None:
        self._name = name
        self.fill_price = Decimal(fill_price) if fill_price is not None else None
        self.path = Path(path) if path else None
        self.cancel_seconds = float(cancel_seconds)
        if cancel_rate is not None:  # what the OMS's sweeps read (mts1b_oms.oms.broker_cancel_rate)
            self.cancel_rate = float(cancel_rate)
        self.orders: dict[str, Order] = {}
        self.submissions: list[str] = []  # every submit call, repeats included
        self.new_orders: list[str] = []  # order ids that created an order here
        self.canceled: list[str] = []  # cancels that took, each order once
        self.cancel_requests: list[str] = []  # every cancel call, repeats included
        self.status_requests: list[str] = []  # every order_status call
        self.replace_requests: list[str] = []  # every replace call
        self.replaced: list[Order] = []  # the order after each replace that took
        self.reject_next: str | None = None
        self.held_positions: dict[str, Decimal] = dict(positions or {})
        self._reports: asyncio.Queue[ExecutionReport] = asyncio.Queue()
        if self.path and self.path.exists():
            for line in self.path.read_text().splitlines():
                rec = json.loads(line)
                if "replaced" in rec:  # new terms of an order the venue has
                    o = Order.model_validate(rec["order"])
                    self.orders[rec["replaced"]] = o
                    self.replaced.append(o)
                    continue
                self.new_orders.append(rec["order_id"])
                o = Order.model_validate(rec["order"])
                self.orders[rec["order_id"]] = o
                if self.fill_price is not None:
                    self.held_positions[o.instrument.symbol] = self.held_positions.get(
                        o.instrument.symbol, Decimal(0)) + o.signed_quantity
        cancels = self._cancels_path
        if cancels is not None and cancels.exists():
            for line in cancels.read_text().splitlines():
                rec = json.loads(line)
                if "canceled" in rec:
                    self.canceled.append(rec["canceled"])
                else:
                    self.cancel_requests.append(rec["cancel_request"])

    @property
    def _cancels_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".cancels")

    def _append(self, path: Path, record: dict[str, Any]) -> None:
        with path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @property
    def name(self) -> str:
        return self._name

    @property
    def connection_state(self) -> ConnectionState:
        return ConnectionState.CONNECTED

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _report(self, order_id: str, exec_type: ExecType, **kw: object) -> ExecutionReport:
        return ExecutionReport(broker=self._name, account_id="acc", order_id=order_id,
                               exec_type=exec_type, ts=dt.datetime.now(dt.UTC), **kw)

    async def submit(self, order: Order) -> ExecutionReport:
        oid = order.order_id or ""
        self.submissions.append(oid)
        if self.reject_next is not None:
            reason, self.reject_next = self.reject_next, None
            raise BrokerRejected(reason, order_id=oid)
        if oid in self.orders and self.fill_price is not None:
            return self._fill_report(self.orders[oid])  # a repeat: the same execution again
        if oid not in self.orders:
            self.orders[oid] = order
            self.new_orders.append(oid)
            if self.path:
                self._append(self.path, {"order_id": oid,
                                         "order": order.model_dump(mode="json")})
            if self.fill_price is not None:
                sym = order.instrument.symbol
                self.held_positions[sym] = self.held_positions.get(sym, Decimal(0)) + (
                    order.signed_quantity)
                return self._fill_report(order)
        return self._report(oid, ExecType.ACK, leaves_quantity=order.quantity)

    def _fill_report(self, order: Order) -> ExecutionReport:
        oid = order.order_id or ""
        return self._report(oid, ExecType.FILL, trade_id=f"T-{oid}",
                            symbol=order.instrument.symbol, side=order.side,
                            last_quantity=order.quantity, last_price=self.fill_price,
                            cumulative_quantity=order.quantity)

    async def cancel(self, order_id: str) -> ExecutionReport:
        self.cancel_requests.append(order_id)
        cancels = self._cancels_path
        if cancels is not None:  # with the wall-clock time, for bench/oms_killswitch.py
            self._append(cancels, {"cancel_request": order_id, "at": time.time()})
        if order_id not in self.orders:
            raise BrokerRejected(f"unknown order {order_id}", order_id=order_id)
        if self.cancel_seconds:  # the request travels to the venue ...
            await asyncio.sleep(self.cancel_seconds / 2)
        if order_id not in self.canceled:  # a cancel of a canceled order is a repeat
            self.canceled.append(order_id)
            if cancels is not None:
                self._append(cancels, {"canceled": order_id, "at": time.time()})
        if self.cancel_seconds:  # ... and the answer back
            await asyncio.sleep(self.cancel_seconds / 2)
        return self._report(order_id, ExecType.CANCELED)

    async def replace(self, order_id: str, *, quantity: Decimal | None = None,
                      limit_price: Decimal | None = None,
                      stop_price: Decimal | None = None) -> ExecutionReport:
        self.replace_requests.append(order_id)
        if order_id not in self.orders:
            raise BrokerRejected(f"unknown order {order_id}", order_id=order_id)
        terms = {k: v for k, v in (("quantity", quantity), ("limit_price", limit_price),
                                   ("stop_price", stop_price)) if v is not None}
        order = self.orders[order_id].model_copy(update=terms)  # as sent: not validated
        self.orders[order_id] = order
        self.replaced.append(order)
        if self.path:
            self._append(self.path, {"replaced": order_id,
                                     "order": order.model_dump(mode="json")})
        return self._report(order_id, ExecType.REPLACED)

    async def order_status(self, client_order_id: str) -> ExecutionReport | None:
        """What this venue has of the order: CANCELED once canceled, its fill when it fills
        at once, else its ACK; ``None`` for an id it never created (a submit that failed
        before reaching it included), which proves absence. Every call is recorded."""
        self.status_requests.append(client_order_id)
        order = self.orders.get(client_order_id)
        if order is None:
            return None
        if client_order_id in self.canceled:
            return self._report(client_order_id, ExecType.CANCELED)
        if self.fill_price is not None:
            return self._fill_report(order)
        return self._report(client_order_id, ExecType.ACK, leaves_quantity=order.quantity)

    async def open_orders(self, account_id: str | None = None) -> list[Order]:
        return [o for oid, o in self.orders.items() if oid not in self.canceled]

    async def positions(self, account_id: str) -> list[Position]:
        now = dt.datetime.now(dt.UTC)
        return [Position(fund_id=account_id, symbol=s, quantity=q, as_of=now)
                for s, q in self.held_positions.items()]

    async def account(self, account_id: str) -> AccountSnapshot:
        return AccountSnapshot(broker=self._name, account_id=account_id, cash=Decimal(0),
                               buying_power=Decimal(0), equity=Decimal(0),
                               as_of=dt.datetime.now(dt.UTC))

    def push(self, report: ExecutionReport) -> None:
        """Queue an unsolicited report (a fill, a cancel) for :meth:`execution_reports`."""
        self._reports.put_nowait(report)

    async def execution_reports(self) -> AsyncIterator[ExecutionReport]:
        while True:
            yield await self._reports.get()
