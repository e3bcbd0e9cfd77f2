"""Extension points as runtime-checkable Protocols, with small default implementations.

Why Protocols here: the OMS must hold "a broker" without importing any broker library, and a
backtest must read "market data" without caring where it came from. Implementations live in the
libraries above (brokers, datalake) or in plugins found through entry points; this module only
states the contract.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from mts1b_foundation.enums import ReplyCode
from mts1b_foundation.errors import MtsError
from mts1b_foundation.market_data import Bar, Quote
from mts1b_foundation.operations import Alert
from mts1b_foundation.orders import ExecutionReport, Order, Position
from mts1b_foundation.portfolio import AccountSnapshot
from mts1b_foundation.subjects import check_publishable
from mts1b_foundation.wire import WireModel

__all__ = [
    "AlertDeliveryError",
    "AlertSink",
    "BrokerError",
    "BrokerProtocol",
    "BrokerRejected",
    "BrokerTransportError",
    "BrokerUnknownOutcome",
    "Clock",
    "ConnectionState",
    "InMemoryMarketData",
    "InMemoryPublisher",
    "MarketDataProtocol",
    "PublisherProtocol",
    "StreamingMarketDataProtocol",
    "SystemClock",
    "missing_members",
]


class ConnectionState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


class BrokerError(MtsError):
    """Base of broker failures. Subclasses say whether the order may exist at the venue."""

    code = "BROKER.ERROR"


class BrokerRejected(BrokerError):
    """The venue refused: the order certainly does not exist there."""

    code = "BROKER.REJECTED"
    reply_code = ReplyCode.BROKER_REJECTED


class BrokerTransportError(BrokerError):
    """The request never reached the venue (connection down before sending)."""

    code = "BROKER.TRANSPORT"
    reply_code = ReplyCode.BROKER_TRANSPORT_ERROR


class BrokerUnknownOutcome(BrokerError):
    """The request may or may not have reached the venue (timeout after sending).

    Never treat this as a rejection: the order may be working. Reconcile by querying open
    orders with the same client order id before retrying.
    """

    code = "BROKER.UNKNOWN_OUTCOME"
    reply_code = ReplyCode.BROKER_UNKNOWN_OUTCOME


@runtime_checkable
class BrokerProtocol(Protocol):
    """What the OMS needs from a broker. Every call is async; failures raise BrokerError.

    ``submit`` is keyed by ``order.order_id`` (the client order id): submitting the same id twice
    must not create a second order at the venue.

    ``order_status`` answers what the broker knows of one of our orders by that client order
    id: its latest ``ExecutionReport`` (an ACK while working, the last fill, the CANCELED,
    EXPIRED or REJECT report at the end), or ``None`` only when the broker *proves* it never
    received the order. It is how an unknown outcome (``BrokerUnknownOutcome``) is resolved:
    the OMS sends such an order again only on ``None``. A broker that cannot tell raises
    ``BrokerError`` (``BrokerTransportError`` when it could not ask), never ``None``.
    """

    @property
    def name(self) -> str: ...

    @property
    def connection_state(self) -> ConnectionState: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, order: Order) -> ExecutionReport: ...

    async def cancel(self, order_id: str) -> ExecutionReport: ...

    async def replace(
        self,
        order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> ExecutionReport: ...

    async def order_status(self, client_order_id: str) -> ExecutionReport | None: ...

    async def open_orders(self, account_id: str | None = None) -> list[Order]: ...

    async def positions(self, account_id: str) -> list[Position]: ...

    async def account(self, account_id: str) -> AccountSnapshot: ...

    def execution_reports(self) -> AsyncIterator[ExecutionReport]: ...


class AlertDeliveryError(MtsError):
    """An :class:`AlertSink` could not deliver a notification; the router keeps it and tries
    again - after ``retry_after`` seconds when the receiver said how long to wait (Telegram's
    ``parameters.retry_after``, an HTTP ``Retry-After``), else after its own backoff.
    ``permanent`` says that trying again cannot help (a chat that does not exist, a refused
    address); the router still keeps the notification, for a person to look at."""

    code = "OPERATIONS.ALERT_DELIVERY"

    def __init__(self, message: str, /, *, retry_after: float | None = None,
                 permanent: bool = False, **context: Any) -> None:
        super().__init__(message, retry_after=retry_after, permanent=permanent, **context)
        self.retry_after = retry_after
        self.permanent = permanent


@runtime_checkable
class AlertSink(Protocol):
    """Where notifications about alerts go: a Telegram chat, a mailbox, a webhook, a plugin's
    pager. The alert router groups alerts and hands a sink one group at a time.

    ``send`` delivers ``alerts`` (one group, firing and resolved ones) or raises
    :class:`AlertDeliveryError`. ``key`` is the same on every attempt at one notification: a
    sink whose receiver deduplicates (an e-mail's Message-ID, a webhook's idempotency key)
    passes it on, because the router delivers at least once - a notification sent just before
    a crash is sent again after it.
    """

    @property
    def name(self) -> str: ...

    async def send(self, key: str, alerts: Sequence[Alert]) -> None: ...


@runtime_checkable
class MarketDataProtocol(Protocol):
    """A source of bars (and optionally quotes) by symbol and date range."""

    def symbols(self) -> Sequence[str]: ...

    def bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> Iterator[Bar]: ...

    def latest_quote(self, symbol: str) -> Quote | None: ...


@runtime_checkable
class StreamingMarketDataProtocol(Protocol):
    """A live source of quotes and bars: the streaming counterpart of
    :class:`MarketDataProtocol`.

    Why a second Protocol: a pull source answers "these symbols' bars between two dates" and
    ends; a live one subscribes once and yields what the venue sends, quotes and bars mixed,
    for as long as the consumer iterates, reconnecting on its own. What it streams (symbols,
    bar interval) is its configuration, fixed when it is built.
    """

    def stream(self) -> AsyncIterator[Quote | Bar]: ...


@runtime_checkable
class PublisherProtocol(Protocol):
    """Anything that can publish a wire model on a subject (the bus, or a test double)."""

    async def publish(self, subject: str, message: WireModel, *, msg_id: str | None = None) -> (
        None
    ): ...


@runtime_checkable
class Clock(Protocol):
    """Time source; services take one so tests and replays can control time."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class InMemoryMarketData:
    """MarketDataProtocol over a list of bars: the reference implementation for tests."""

    def __init__(self, bars: Iterable[Bar], quotes: Iterable[Quote] = ()) -> None:
        self._bars = sorted(bars, key=lambda b: (b.ts, b.symbol))
        self._quotes: dict[str, Quote] = {}
        for q in sorted(quotes, key=lambda q: q.ts):
            self._quotes[q.symbol] = q

    def symbols(self) -> Sequence[str]:
        return sorted({b.symbol for b in self._bars})

    def bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> Iterator[Bar]:
        wanted = set(symbols)
        return (b for b in self._bars
                if b.symbol in wanted and start <= b.ts.date() <= end)

    def latest_quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)


class InMemoryPublisher:
    """PublisherProtocol that checks the subject registry and keeps what was published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, WireModel, str | None]] = []

    async def publish(self, subject: str, message: WireModel, *, msg_id: str | None = None) -> (
        None
    ):
        check_publishable(subject, message)
        self.published.append((subject, message, msg_id))


def missing_members(obj: object, protocol: type) -> list[str]:
    """Names the protocol declares that ``obj`` lacks (a readable conformance check).

    ``isinstance(obj, Protocol)`` only says yes or no; plugin authors need to know *what* is
    missing.
    """
    names = [n for n in dir(protocol) if not n.startswith("_")]
    return sorted(n for n in names if not hasattr(obj, n))
