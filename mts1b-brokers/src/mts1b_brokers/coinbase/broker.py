"""``CoinbaseBroker``: Coinbase Advanced Trade behind ``BrokerProtocol``.

REST goes through the official SDK (``coinbase-advanced-py``'s ``RESTClient``, which signs a
JWT per request with the configured Ed25519 or ES256 key); order updates come from the
``user`` WebSocket channel (:mod:`.userstream`). The rules that matter for money:

- **Idempotency**: our ``order_id`` is Coinbase's ``client_order_id``. A repeated submit of a
  known id returns the original ACK (or the original refusal) without a request; a submit
  Coinbase answers with ``DUPLICATE_CLIENT_ORDER_ID``, or with an order it already had, is
  resolved by listing orders by ``client_order_id``. Whether Coinbase deduplicates
  ``client_order_id`` itself is not documented, so nothing here relies on it.
- **Ambiguity is resolved by asking, never by sending again**: a timeout, a dropped
  connection or a 5xx after a create, cancel or edit was sent makes the broker look the order
  up (list by ``client_order_id``, get by ``order_id``). Found: the outcome is what Coinbase
  has. Not found after a few looks: :class:`~mts1b_foundation.BrokerUnknownOutcome`, and
  :meth:`order_status` answers later from Coinbase's word.
- **Fills are trades**: the user channel says that an order's cumulative quantity moved; the
  trades themselves (``trade_id``, price, size, commission) are read from ``GET
  .../orders/historical/fills``. Each ``trade_id`` is reported once (duplicates and replays
  are dropped), a fill reaching the order's quantity is a FILL, earlier ones PARTIAL_FILLs, and
  the CANCELED / EXPIRED / REJECT that ends an order comes after its fills, once.
- **Nothing is missed**: a sequence gap, a reconnect or the periodic reconciliation
  (``reconcile_interval``) re-reads every order not yet ended through REST, so a lost message or
  a fill during a disconnect is still reported.
- **Balances and positions** come from ``GET .../accounts``: cash is the quote currency
  (available plus held), each other currency with a balance is a position in
  ``<CURRENCY>-<QUOTE>``. Coinbase's balances carry no cost basis: ``avg_cost`` is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, ClassVar

import requests
from coinbase import jwt_generator
from coinbase.rest import RESTClient
from mts1b_foundation import (
    AccountSnapshot,
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    ConnectionState,
    CryptoPair,
    ExecType,
    ExecutionReport,
    Fill,
    Order,
    OrderType,
    Position,
    ReplyCode,
    Side,
    TimeInForce,
)
from mts1b_foundation.plugins import Capabilities
from mts1b_foundation.wire import fit_to_domain
from pydantic import ValidationError

from mts1b_brokers.coinbase.config import CoinbaseConfig
from mts1b_brokers.coinbase.mapping import (
    CAPABILITIES,
    TERMINAL,
    Unsupported,
    create_code,
    decimal,
    order_configuration,
    product_id,
    venue_terms,
)
from mts1b_brokers.coinbase.rest import Ambiguous, CoinbaseRest, VenueError
from mts1b_brokers.coinbase.userstream import UserStream
from mts1b_brokers.errors import BrokerConfigError
from mts1b_brokers.paper import ReportStream
from mts1b_brokers.streams import Subscription

__all__ = ["CoinbaseBroker"]

log = logging.getLogger("mts1b_brokers.coinbase")
# The SDK logs every HTTP error with its own stream handler; this adapter reports Coinbase's
# code and text in its errors and logs once through the platform's logging instead.
logging.getLogger("coinbase.RESTClient").setLevel(logging.CRITICAL)
logging.getLogger("coinbase.WSClient").setLevel(logging.CRITICAL)

_FINAL = {ExecType.FILL, ExecType.CANCELED, ExecType.EXPIRED, ExecType.REJECT}
_LOOKS = (0.0, 0.1, 0.3, 0.6)
"""Delays between looks for an order after an ambiguous create (Coinbase may lag)."""


class _CaSession(requests.Session):
    """A session that verifies Coinbase (or a stand-in) with ``ca_file`` even when
    ``REQUESTS_CA_BUNDLE`` is set: requests lets that variable override ``session.verify``."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


@dataclass
class _Tracked:
    """One of our orders as this broker knows it."""

    order: Order
    venue_id: str
    ack: ExecutionReport
    last: ExecutionReport
    trades: dict[str, Decimal] = field(default_factory=dict)
    """trade_id -> the size reported for it (a correction changes it)."""
    filled: Decimal = Decimal(0)
    final: ExecutionReport | None = None
    lagging: int = 0
    """How often the fills list was found behind the order (re-read at most 3 times)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def leaves(self) -> Decimal:
        return Decimal(0) if self.final is not None else max(
            self.order.quantity - self.filled, Decimal(0))


_FillStream = Subscription[Fill]
"""One subscriber's queue of corrected fills."""


def _ts(text: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.now(dt.UTC)


class CoinbaseBroker:
    """Coinbase Advanced Trade (spot) as a ``BrokerProtocol`` broker.

    ``CoinbaseBroker(api_key=..., api_secret=...)``, ``CoinbaseBroker(config=...)``
    (:class:`~mts1b_brokers.coinbase.CoinbaseConfig`), or ``CoinbaseBroker()``, which reads
    ``CoinbaseConfig.load()`` - ``MTS_BROKERS_COINBASE_*`` variables, ``.env`` or Vault (what
    ``mts mts1b-brokers serve coinbase`` does). Other options override the configuration's
    fields; ``base_url`` / ``ws_url`` / ``ca_file`` point it at a stand-in
    (:mod:`mts1b_brokers.testing.coinbase_server`).
    """

    capabilities: ClassVar[Capabilities] = CAPABILITIES
    """Market, limit and stop-limit orders; GTC, GTD, IOC, FOK; crypto pairs; replace."""

    def __init__(self, *, config: CoinbaseConfig | None = None, name: str = "coinbase",
                 **options: Any) -> None:
        if config is None and not {"api_key", "api_secret"} & options.keys():
            config = CoinbaseConfig.load()  # the environment, .env or Vault (mts serve coinbase)
        try:
            self._cfg = CoinbaseConfig.model_validate(
                {**(config.model_dump() if config is not None else {}), **options})
        except ValidationError as exc:
            problems = [(".".join(map(str, e["loc"])), e["msg"])
                        for e in exc.errors(include_input=False)]
            raise BrokerConfigError(
                "coinbase configuration: " + "; ".join(f"{f}: {m}" for f, m in problems),
                field=problems[0][0] if problems else "", value="<hidden>") from None
        cfg = self._cfg
        self._name = name
        self._state = ConnectionState.DISCONNECTED
        self._client = RESTClient(api_key=cfg.api_key,
                                  api_secret=cfg.api_secret.get_secret_value(),
                                  base_url=cfg.base_url, timeout=cfg.timeout)
        if cfg.ca_file:
            self._client.session = _CaSession(cfg.ca_file)
        self._rest = CoinbaseRest(broker=name, max_rate=cfg.max_rate)
        ssl_context = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else (
            ssl.create_default_context())
        self._stream = UserStream(
            cfg.ws_url, jwt=self._ws_jwt, product_ids=list(cfg.product_ids),
            on_orders=self._on_orders, on_resync=self._on_resync, on_state=self._on_ws_state,
            ssl_context=ssl_context, heartbeat_timeout=cfg.heartbeat_timeout,
            backoff=cfg.reconnect_backoff)
        self._orders: dict[str, _Tracked] = {}
        self._by_venue: dict[str, str] = {}
        self._rejected: dict[str, BrokerRejected] = {}
        self._submitting: dict[str, asyncio.Lock] = {}
        self._creating: set[str] = set()
        self._early: set[str] = set()
        self._subscribers: set[ReportStream] = set()
        self._correction_subscribers: set[_FillStream] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconciler: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ BrokerProtocol
    @property
    def name(self) -> str:
        return self._name

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def stream(self) -> UserStream:
        """The user-channel client (its ``gaps``, ``reconnects``, ``duplicates`` counters)."""
        return self._stream

    @property
    def rest(self) -> CoinbaseRest:
        return self._rest

    async def connect(self) -> None:
        """Check the key against ``GET /accounts``, open the user channel (waiting for its
        first snapshot) and reconcile every order not yet ended."""
        if self._state is ConnectionState.CONNECTED:
            return
        await self._stop_background()  # a connect while reconnecting starts afresh
        self._state = ConnectionState.CONNECTING
        try:
            await self._rest.call("list accounts", self._client.get_accounts, changes=False)
            try:
                await self._stream.start(timeout=max(self._cfg.heartbeat_timeout, 2.0) * 2)
            except TimeoutError:
                raise BrokerTransportError(
                    "coinbase user channel gave no snapshot"
                    + (f": {self._stream.error}" if self._stream.error else ""),
                    broker=self._name, call="connect", ws_url=self._cfg.ws_url) from None
        except BaseException:
            self._state = ConnectionState.DISCONNECTED
            raise
        self._state = ConnectionState.CONNECTED
        await self._reconcile("connect")
        self._reconciler = asyncio.create_task(self._reconcile_forever())

    async def close(self) -> None:
        self._state = ConnectionState.DISCONNECTED
        await self._stop_background()

    async def _stop_background(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None
        await self._stream.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def __aenter__(self) -> CoinbaseBroker:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def execution_reports(self) -> AsyncIterator[ExecutionReport]:
        """Every report from now on; the subscription outlives close/connect."""
        return ReportStream(self._subscribers)

    def corrections(self) -> AsyncIterator[Fill]:
        """Corrected fills from now on (Coinbase lists a fill again as ``CORRECTION`` with the
        same trade id): the foundation ``Fill`` with the new size, what ``OMS.correct``
        takes. The execution reports carry no new fill for a correction."""
        return _FillStream(self._correction_subscribers)

    async def submit(self, order: Order) -> ExecutionReport:
        """Create the order with ``client_order_id = order.order_id`` (see the module doc)."""
        self._require_connected("submit")
        oid = order.order_id
        if oid is None:
            raise BrokerRejected("INVALID_ORDER: order_id (the client order id) is required",
                                 broker=self._name, field="order_id",
                                 reason_code=str(ReplyCode.INVALID_ORDER))
        lock = self._submitting.setdefault(oid, asyncio.Lock())
        async with lock:
            if oid in self._rejected:
                raise self._rejected[oid]
            if oid in self._orders:
                return self._orders[oid].ack
            self._creating.add(oid)
            try:
                return await self._create(oid, order)
            finally:
                self._creating.discard(oid)
                self._early.discard(oid)

    async def cancel(self, order_id: str) -> ExecutionReport:
        """Cancel through ``batch_cancel``; the answer is the CANCELED report (fills first) or a
        CANCEL_REJECT naming Coinbase's ``failure_reason`` when the order had ended."""
        self._require_connected("cancel")
        t = await self._tracked_or_raise(order_id)
        reason = "ORDER_NOT_OPEN"
        if t.final is None:
            try:
                answer = await self._rest.call("cancel order", self._client.cancel_orders,
                                               order_ids=[t.venue_id], changes=True)
                result = (answer.get("results") or [{}])[0]
                ok = bool(result.get("success"))
                reason = str(result.get("failure_reason") or "UNKNOWN_CANCEL_FAILURE_REASON")
                ambiguous = None
            except Ambiguous as amb:
                ok, ambiguous = True, amb.detail
            await self._sync(t, await self._settled(t, expect_cancel=ok))
            if t.final is not None and t.final.exec_type is ExecType.CANCELED:
                return t.final
            if ambiguous is not None and t.final is None:
                raise BrokerUnknownOutcome(
                    f"coinbase cancel of {order_id} had no clear answer ({ambiguous}); the "
                    "order is still open at Coinbase and the cancel was not re-sent",
                    broker=self._name, order_id=order_id)
        state = (f"has ended ({t.final.exec_type.value})" if t.final is not None
                 else "is still open")
        return self._emit(self._report(
            t, ExecType.CANCEL_REJECT, reason=f"{reason}: the order {state}",
            code=ReplyCode.ORDER_NOT_OPEN if t.final is not None else create_code(reason),
            venue_code=reason))

    async def replace(self, order_id: str, *, quantity: Decimal | None = None,
                      limit_price: Decimal | None = None,
                      stop_price: Decimal | None = None) -> ExecutionReport:
        """Edit price and/or size (``POST /orders/edit``; Coinbase edits GTC limit orders)."""
        self._require_connected("replace")
        t = await self._tracked_or_raise(order_id)
        if stop_price is not None:
            return self._replace_reject(t, ReplyCode.UNSUPPORTED, "UNSUPPORTED: Coinbase edits "
                                        "only the price and size of a GTC limit order")
        if t.final is not None:
            return self._replace_reject(t, ReplyCode.ORDER_NOT_OPEN,
                                        f"ORDER_NOT_OPEN: order is {t.final.exec_type.value}")
        new_qty = quantity if quantity is not None else t.order.quantity
        new_limit = limit_price if limit_price is not None else t.order.limit_price
        try:
            answer = await self._rest.call(
                "edit order", self._client.edit_order, order_id=t.venue_id,
                size=format(new_qty.normalize(), "f"),
                price=format(new_limit.normalize(), "f") if new_limit is not None else None,
                changes=True)
        except Ambiguous as amb:
            venue = await self._get_order(t.venue_id)
            size, limit = venue_terms(venue) if venue else (None, None)
            if size != new_qty or limit != new_limit:
                raise BrokerUnknownOutcome(
                    f"coinbase edit of {order_id} had no clear answer ({amb.detail}) and "
                    "Coinbase still shows the old terms; the edit was not re-sent",
                    broker=self._name, order_id=order_id) from None
            answer = {"success": True}
        except VenueError as err:
            return self._replace_reject(t, create_code(err.code), f"{err.code}: {err.message}",
                                        venue_code=err.code)
        if not answer.get("success"):
            errors = answer.get("errors") or [{}]
            reason = str(errors[0].get("edit_failure_reason") or "EDIT_FAILED")
            preview = str(errors[0].get("preview_failure_reason") or "")
            return self._replace_reject(t, create_code(reason, preview),
                                        f"{reason}: {preview}" if preview else reason,
                                        venue_code=reason)
        async with t.lock:
            t.order = t.order.model_copy(update={"quantity": new_qty,
                                                 "limit_price": new_limit})
            return self._emit(self._report(t, ExecType.REPLACED, reason="edited at Coinbase"))

    async def order_status(self, client_order_id: str) -> ExecutionReport | None:
        """Coinbase's word on ``client_order_id`` (listed by it), after reporting any fill not
        yet reported; ``None`` only when neither Coinbase nor this broker has it."""
        self._require_connected("order_status")
        if client_order_id in self._rejected:
            report = self._rejected[client_order_id].context.get("report")
            return report if isinstance(report, ExecutionReport) else None
        venue = await self._find(client_order_id)
        t = self._orders.get(client_order_id)
        if venue is None:
            return t.last if t is not None else None
        t = t or self._adopt(venue)
        await self._sync(t, venue)
        return t.last

    async def open_orders(self, account_id: str | None = None) -> list[Order]:
        self._require_connected("open_orders")
        if account_id is not None:
            self._account_or_raise(account_id)
        out = []
        for venue in await self._list_orders(order_status=["OPEN", "PENDING", "QUEUED"]):
            cid = str(venue.get("client_order_id") or "")
            t = self._orders.get(cid) or self._adopt(venue)
            size, limit = venue_terms(venue)
            out.append(t.order.model_copy(update={
                "quantity": size or t.order.quantity,
                "limit_price": limit if t.order.limit_price is not None else None}))
        return out

    async def positions(self, account_id: str) -> list[Position]:
        self._require_connected("positions")
        self._account_or_raise(account_id)
        now = dt.datetime.now(dt.UTC)
        quote = self._cfg.quote_currency
        return [Position(fund_id=account_id, symbol=f"{ccy}-{quote}", quantity=qty, as_of=now)
                for ccy, qty in sorted((await self._balances()).items())
                if ccy != quote and qty != 0]

    async def account(self, account_id: str) -> AccountSnapshot:
        """Cash and buying power in the quote currency; equity marks each currency at its
        ``<CURRENCY>-<QUOTE>`` product's price."""
        self._require_connected("account")
        self._account_or_raise(account_id)
        answer = await self._rest.call("list accounts", self._client.get_accounts,
                                       changes=False)
        quote = self._cfg.quote_currency
        cash = available = Decimal(0)
        held: dict[str, Decimal] = {}
        for acct in answer.get("accounts") or []:
            ccy = str(acct.get("currency"))
            free = decimal((acct.get("available_balance") or {}).get("value"))
            total = free + decimal((acct.get("hold") or {}).get("value"))
            if ccy == quote:
                cash, available = total, free
            elif total:
                held[ccy] = total
        equity = cash
        for ccy, qty in held.items():
            product = await self._rest.call("get product", self._client.get_product,
                                            f"{ccy}-{quote}", changes=False)
            equity += qty * decimal(product.get("price"))
        return AccountSnapshot(broker=self._name, account_id=account_id, cash=cash,
                               buying_power=available, equity=fit_to_domain(equity),
                               positions={f"{c}-{quote}": q for c, q in sorted(held.items())},
                               as_of=dt.datetime.now(dt.UTC))

    # ---------------------------------------------------------------------- submit
    async def _create(self, oid: str, order: Order) -> ExecutionReport:
        account = order.account_id or self._cfg.account_id
        if account != self._cfg.account_id:
            self._refuse(order, ReplyCode.ACCOUNT_NOT_FOUND,
                         f"ACCOUNT_NOT_FOUND: this Coinbase broker trades account "
                         f"{self._cfg.account_id!r}, not {account!r}", None, None)
        try:
            configuration = order_configuration(order)
        except Unsupported as exc:
            self._refuse(order, ReplyCode.UNSUPPORTED, f"UNSUPPORTED: {exc}", None, None)
        side = "BUY" if order.side is Side.BUY else "SELL"
        try:
            answer = await self._rest.call(
                "create order", self._client.create_order, client_order_id=oid,
                product_id=product_id(order.instrument), side=side,
                order_configuration=configuration, changes=True)
        except Ambiguous as amb:
            venue = await self._look_for(oid)
            if venue is None:
                raise BrokerUnknownOutcome(
                    f"coinbase create of {oid} had no clear answer ({amb.detail}) and no "
                    "order with that client_order_id is listed yet; it was not re-sent - "
                    "order_status tells what Coinbase has", broker=self._name,
                    order_id=oid) from None
            return await self._accepted(order, str(venue["order_id"]), venue)
        except VenueError as err:
            self._refuse(order, create_code(err.code), f"{err.code}: {err.message}",
                         err.code, err.message)
        if answer.get("success"):
            venue_id = str((answer.get("success_response") or {}).get("order_id")
                           or answer.get("order_id"))
            return await self._accepted(order, venue_id, None)
        error = answer.get("error_response") or {}
        code = str(error.get("error") or answer.get("failure_reason") or "UNKNOWN")
        preview = str(error.get("preview_failure_reason") or "")
        if code == "DUPLICATE_CLIENT_ORDER_ID":
            venue = await self._look_for(oid)
            if venue is not None:
                return await self._accepted(order, str(venue["order_id"]), venue)
        message = str(error.get("message") or error.get("error_details") or code)
        self._refuse(order, create_code(code, preview),
                     f"{code}: {message}" + (f" ({preview})" if preview and preview not in
                                             {"UNKNOWN_PREVIEW_FAILURE_REASON"} else ""),
                     code, message)
        raise AssertionError("unreachable")  # pragma: no cover - _refuse raises

    def _refuse(self, order: Order, code: ReplyCode, reason: str, venue_code: str | None,
                venue_message: str | None) -> Any:
        oid = order.order_id or ""
        report = self._emit(ExecutionReport(
            broker=self._name, account_id=self._cfg.account_id, order_id=oid,
            exec_type=ExecType.REJECT, ts=dt.datetime.now(dt.UTC),
            symbol=order.instrument.symbol, side=order.side, leaves_quantity=Decimal(0),
            reason=reason[:2000], code=code,
            venue_code=(venue_code or None) and venue_code[:64].replace(" ", "_"),
            venue_message=(venue_message or None) and venue_message[:2000]))
        error = BrokerRejected(reason, broker=self._name, order_id=oid,
                               reason_code=str(code), venue_code=venue_code,
                               venue_message=venue_message, report=report)
        self._rejected[oid] = error
        raise error

    async def _accepted(self, order: Order, venue_id: str,
                        venue: dict[str, Any] | None) -> ExecutionReport:
        oid = order.order_id or ""
        ack = ExecutionReport(
            broker=self._name, account_id=self._cfg.account_id, order_id=oid,
            broker_order_id=venue_id, exec_type=ExecType.ACK, ts=dt.datetime.now(dt.UTC),
            symbol=order.instrument.symbol, side=order.side, leaves_quantity=order.quantity)
        t = _Tracked(order=order, venue_id=venue_id, ack=ack, last=ack)
        self._orders[oid] = t
        self._by_venue[venue_id] = oid
        self._emit(ack)
        if venue is not None or oid in self._early:
            self._spawn(self._sync(t, venue))
        return ack

    # ----------------------------------------------------------------- venue state
    async def _sync(self, t: _Tracked, venue: dict[str, Any] | None) -> None:
        """Report what Coinbase has for ``t`` that was not reported yet: new trades in
        order, corrections of reported ones, then the end of the order (once)."""
        async with t.lock:
            if venue is None:
                if t.final is not None:
                    return
                venue = await self._get_order(t.venue_id)
                if venue is None:
                    return
            cum = decimal(venue.get("filled_size", venue.get("cumulative_quantity")))
            status = str(venue.get("status") or "")
            if cum != t.filled or (status == "FILLED" and t.final is None):
                for fill in await self._fills(t.venue_id):
                    self._apply_fill(t, fill)
                if cum > t.filled and t.lagging < 3:
                    # Coinbase's order is ahead of its fills list: look again shortly
                    t.lagging += 1
                    self._spawn(self._sync_later(t, 0.2 * 2 ** t.lagging))
            if status in TERMINAL - {"FILLED"} and t.final is None:
                exec_type = {"CANCELLED": ExecType.CANCELED, "EXPIRED": ExecType.EXPIRED,
                             "FAILED": ExecType.REJECT}[status]
                reason = str(venue.get("cancel_message") or venue.get("cancel_reason")
                             or venue.get("reject_reason") or status.lower())
                self._emit(self._report(t, exec_type, reason=reason or status,
                                        venue_code=status))

    async def _sync_later(self, t: _Tracked, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._sync(t, await self._get_order(t.venue_id))

    def _apply_fill(self, t: _Tracked, fill: dict[str, Any]) -> None:
        """A new trade becomes a fill report; a known trade id with another size is a
        correction (no new fill: the filled quantity follows, ``corrections()`` gets the
        corrected ``Fill``); a repeat of a known trade is dropped."""
        trade_id = str(fill.get("trade_id") or "")[:128]
        size = decimal(fill.get("size"))
        if not trade_id or size < 0:
            return
        if trade_id in t.trades:
            if t.trades[trade_id] != size:
                self._correct(t, trade_id, size, fill)
            return
        if size == 0:
            return
        t.trades[trade_id] = size
        t.filled += size
        done = t.filled >= t.order.quantity
        self._emit(ExecutionReport(
            broker=self._name, account_id=self._cfg.account_id, order_id=t.ack.order_id,
            broker_order_id=t.venue_id,
            exec_type=ExecType.FILL if done else ExecType.PARTIAL_FILL,
            ts=_ts(fill.get("trade_time")), trade_id=trade_id,
            symbol=t.order.instrument.symbol, side=t.order.side, last_quantity=size,
            last_price=decimal(fill.get("price")), commission=decimal(fill.get("commission")),
            cumulative_quantity=t.filled,
            leaves_quantity=max(t.order.quantity - t.filled, Decimal(0))))

    def _correct(self, t: _Tracked, trade_id: str, size: Decimal,
                 fill: dict[str, Any]) -> None:
        log.warning("coinbase corrected trade %s of %s: %s -> %s", trade_id, t.ack.order_id,
                    t.trades[trade_id], size)
        t.filled += size - t.trades[trade_id]
        t.trades[trade_id] = size
        leaves = Decimal(0) if t.final is not None else max(t.order.quantity - t.filled,
                                                            Decimal(0))
        t.last = t.last.model_copy(update={"cumulative_quantity": t.filled,
                                           "leaves_quantity": leaves})
        if size > 0:
            corrected = Fill(trade_id=trade_id, order_id=t.ack.order_id,
                             fund_id=t.order.fund_id, symbol=t.order.instrument.symbol,
                             side=t.order.side, quantity=size,
                             price=decimal(fill.get("price")),
                             commission=decimal(fill.get("commission")),
                             ts=_ts(fill.get("trade_time")), venue=self._name)
            for sub in list(self._correction_subscribers):
                sub.put(corrected)

    async def _settled(self, t: _Tracked, *, expect_cancel: bool) -> dict[str, Any] | None:
        """The order after a cancel: waits briefly while Coinbase still queues the cancel."""
        venue: dict[str, Any] | None = None
        for delay in (0.0, 0.05, 0.1, 0.2, 0.4):
            await asyncio.sleep(delay)
            venue = await self._get_order(t.venue_id)
            if venue is None or not expect_cancel or venue.get("status") in TERMINAL:
                return venue
        return venue

    async def _fills(self, venue_id: str) -> list[dict[str, Any]]:
        fills: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self._rest.call("list fills", self._client.get_fills,
                                         order_ids=[venue_id], limit=100, cursor=cursor,
                                         changes=False)
            fills.extend(f for f in page.get("fills") or [] if isinstance(f, dict))
            cursor = str(page.get("cursor") or "") or None
            if not cursor:
                break
        return sorted(fills, key=lambda f: (str(f.get("trade_time")), str(f.get("entry_id"))))

    async def _get_order(self, venue_id: str) -> dict[str, Any] | None:
        try:
            answer = await self._rest.call("get order", self._client.get_order, venue_id,
                                           changes=False)
        except VenueError as err:
            if err.status == 404:
                return None
            raise BrokerTransportError(f"coinbase get order: {err}", broker=self._name,
                                       venue_code=err.code) from None
        order = answer.get("order")
        return order if isinstance(order, dict) else None

    async def _list_orders(self, **query: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            try:
                page = await self._rest.call("list orders", self._client.list_orders,
                                             limit=100, cursor=cursor, changes=False, **query)
            except VenueError as err:
                raise BrokerTransportError(f"coinbase list orders: {err}", broker=self._name,
                                           venue_code=err.code) from None
            found.extend(o for o in page.get("orders") or [] if isinstance(o, dict))
            cursor = str(page.get("cursor") or "") or None
            if not page.get("has_next") or not cursor:
                return found

    async def _find(self, client_order_id: str) -> dict[str, Any] | None:
        """Coinbase's order with this ``client_order_id`` (listed by it), or ``None``."""
        for venue in await self._list_orders(client_order_id=client_order_id):
            if venue.get("client_order_id") == client_order_id:
                return venue
        return None

    async def _look_for(self, client_order_id: str) -> dict[str, Any] | None:
        for delay in _LOOKS:
            await asyncio.sleep(delay)
            with contextlib.suppress(BrokerTransportError):
                venue = await self._find(client_order_id)
                if venue is not None:
                    return venue
        return None

    def _adopt(self, venue: dict[str, Any]) -> _Tracked:
        """Track an order this process did not send (sent before a restart, or elsewhere)."""
        cid = str(venue.get("client_order_id") or venue.get("order_id"))
        pid = str(venue.get("product_id") or "")
        base, _, quote = pid.partition("-")
        size, limit = venue_terms(venue)
        instrument = CryptoPair(symbol=pid, base=base, quote=quote or self._cfg.quote_currency)
        order = Order(
            order_id=cid, idempotency_key=cid, fund_id=self._cfg.account_id,
            account_id=self._cfg.account_id, strategy_id="external", instrument=instrument,
            side=Side.BUY if venue.get("side") == "BUY" else Side.SELL,
            quantity=size or Decimal(1),
            order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
            limit_price=limit, time_in_force=TimeInForce.GTC if limit is not None
            else TimeInForce.IOC)
        ack = ExecutionReport(
            broker=self._name, account_id=self._cfg.account_id, order_id=cid,
            broker_order_id=str(venue.get("order_id")), exec_type=ExecType.ACK,
            ts=_ts(venue.get("created_time")), symbol=pid, side=order.side,
            leaves_quantity=order.quantity)
        t = _Tracked(order=order, venue_id=str(venue.get("order_id")), ack=ack, last=ack)
        self._orders[cid] = t
        self._by_venue[t.venue_id] = cid
        return t

    async def _tracked_or_raise(self, order_id: str) -> _Tracked:
        t = self._orders.get(order_id)
        if t is None:
            venue = await self._find(order_id)
            if venue is None:
                raise BrokerRejected(f"ORDER_NOT_FOUND: Coinbase has no order with "
                                     f"client_order_id {order_id!r}", broker=self._name,
                                     order_id=order_id,
                                     reason_code=str(ReplyCode.ORDER_NOT_FOUND))
            t = self._adopt(venue)
            await self._sync(t, venue)
        return t

    async def _balances(self) -> dict[str, Decimal]:
        answer = await self._rest.call("list accounts", self._client.get_accounts,
                                       changes=False)
        out: dict[str, Decimal] = {}
        for acct in answer.get("accounts") or []:
            ccy = str(acct.get("currency"))
            out[ccy] = out.get(ccy, Decimal(0)) + decimal(
                (acct.get("available_balance") or {}).get("value")) + decimal(
                (acct.get("hold") or {}).get("value"))
        return out

    # ------------------------------------------------------------------ user channel
    def _ws_jwt(self) -> str:
        try:
            token: str = jwt_generator.build_ws_jwt(self._cfg.api_key,
                                                    self._cfg.api_secret.get_secret_value())
        except Exception:  # the SDK's text may quote the key: none of it goes further
            raise ValueError("the API secret could not sign the user channel's JWT") from None
        return token

    async def _on_orders(self, orders: list[dict[str, Any]], snapshot: bool) -> None:
        for venue in orders:
            cid = str(venue.get("client_order_id") or "")
            t = self._orders.get(cid)
            if t is None:
                if cid in self._creating:  # its create has not been answered yet
                    self._early.add(cid)
                continue
            cum = decimal(venue.get("cumulative_quantity"))
            if t.final is None or cum != t.filled:
                self._spawn(self._sync(t, None if snapshot else venue))

    async def _on_resync(self, why: str) -> None:
        self._spawn(self._reconcile(why))

    def _on_ws_state(self, up: bool) -> None:
        if self._state in {ConnectionState.CONNECTED, ConnectionState.RECONNECTING}:
            self._state = ConnectionState.CONNECTED if up else ConnectionState.RECONNECTING

    async def _reconcile(self, why: str) -> None:
        """Re-read every order not yet ended (a gap, a reconnect, the periodic check)."""
        pending = [t for t in self._orders.values() if t.final is None]
        if pending:
            log.info("coinbase reconciling %d order(s) (%s)", len(pending), why)
        for t in pending:
            try:
                await self._sync(t, None)
            except BrokerTransportError as exc:
                log.warning("coinbase reconciliation of %s failed: %s", t.ack.order_id, exc)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.reconcile_interval)
            await self._reconcile("periodic")

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except BrokerTransportError as exc:
                log.warning("coinbase background sync failed: %s", exc)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------------- reports
    def _require_connected(self, call: str) -> None:
        if self._state not in {ConnectionState.CONNECTED, ConnectionState.RECONNECTING}:
            raise BrokerTransportError(f"{self._name} is {self._state.value}: {call} not sent",
                                       broker=self._name, call=call)

    def _account_or_raise(self, account_id: str) -> None:
        if account_id != self._cfg.account_id:
            raise BrokerRejected(f"ACCOUNT_NOT_FOUND: this Coinbase broker has account "
                                 f"{self._cfg.account_id!r}, not {account_id!r}",
                                 broker=self._name, account_id=account_id,
                                 reason_code=str(ReplyCode.ACCOUNT_NOT_FOUND))

    def _report(self, t: _Tracked, exec_type: ExecType, *, reason: str | None = None,
                code: ReplyCode | None = None,
                venue_code: str | None = None) -> ExecutionReport:
        ending = exec_type in {ExecType.CANCELED, ExecType.EXPIRED, ExecType.REJECT}
        return ExecutionReport(
            broker=self._name, account_id=self._cfg.account_id, order_id=t.ack.order_id,
            broker_order_id=t.venue_id, exec_type=exec_type, ts=dt.datetime.now(dt.UTC),
            symbol=t.order.instrument.symbol, side=t.order.side,
            cumulative_quantity=t.filled,
            leaves_quantity=Decimal(0) if ending else t.leaves,
            reason=reason[:2000] if reason else None, code=code,
            venue_code=venue_code[:64].replace(" ", "_") if venue_code else None)

    def _replace_reject(self, t: _Tracked, code: ReplyCode, reason: str,
                        venue_code: str | None = None) -> ExecutionReport:
        return self._emit(self._report(t, ExecType.REPLACE_REJECT, reason=reason, code=code,
                                       venue_code=venue_code))

    def _emit(self, report: ExecutionReport) -> ExecutionReport:
        t = self._orders.get(report.order_id)
        if t is not None and report.exec_type not in {ExecType.CANCEL_REJECT,
                                                       ExecType.REPLACE_REJECT}:
            t.last = report
            if report.exec_type in _FINAL:
                t.final = report
        for sub in list(self._subscribers):
            sub.put(report)
        return report

