"""Closed vocabularies shared by every library.

They are ``StrEnum`` so that their JSON form is the readable value (``"buy"``, not ``0``) and a
value read from a log line or a database row maps back without a lookup table.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AlertStatus",
    "AssetClass",
    "DenialCode",
    "OptionRight",
    "OrderEventType",
    "OrderStatus",
    "OrderType",
    "ReplyCode",
    "Severity",
    "Side",
    "StrategyState",
    "TaxLotMethod",
    "TimeInForce",
    "TradingSession",
    "TradingState",
]


class AlertStatus(StrEnum):
    """An alert's state, as Alertmanager's: it is happening, or it has stopped."""

    FIRING = "firing"
    RESOLVED = "resolved"


class AssetClass(StrEnum):
    EQUITY = "equity"
    ETF = "etf"
    OPTION = "option"
    FUTURE = "future"
    FX = "fx"
    CRYPTO = "crypto"
    SPORTS = "sports"
    PREDICTION = "prediction"


class OptionRight(StrEnum):
    CALL = "call"
    PUT = "put"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    MARKET_ON_CLOSE = "market_on_close"
    LIMIT_ON_CLOSE = "limit_on_close"


class TimeInForce(StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"
    OPG = "OPG"
    CLS = "CLS"


class TradingSession(StrEnum):
    """When an order may trade; calendars in mts1b-platform define the hours of each."""

    RTH = "RTH"
    PRE = "PRE"
    POST = "POST"
    IBEOS = "IBEOS"
    H24 = "24H"
    H24X5 = "24X5"


class OrderStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    CANCELED = "canceled"
    REJECTED = "rejected"
    DENIED = "denied"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """No further fills or state changes are expected (a bust may still reopen a fill)."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.DENIED,
     OrderStatus.EXPIRED}
)


class OrderEventType(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    DENIED = "denied"
    REJECTED = "rejected"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_REJECTED = "cancel_rejected"
    CANCELED = "canceled"
    REPLACE_REQUESTED = "replace_requested"
    REPLACE_REJECTED = "replace_rejected"
    REPLACED = "replaced"
    EXPIRED = "expired"
    BUSTED = "busted"
    CORRECTED = "corrected"


class ReplyCode(StrEnum):
    """Every stable code a command reply, a gate's denial or a broker's reject can carry.

    One closed vocabulary for the gates, the OMS and the brokers, so that a client branches on
    one enum whoever answered, and a code nobody declared is refused when the message is read.
    What a venue said in its own words travels beside it, in ``venue_code`` / ``venue_message``.
    Values equal names and never change once released; a new code is a wire change.
    The names follow NautilusTrader's denial reasons where the concept is the same.
    """

    # -- the request itself -----------------------------------------------------------------
    VALIDATION_FAILED = "VALIDATION_FAILED"
    """The message did not validate; the reply's context names the field and the value."""
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
    """No handler for this command subject."""
    INVALID_ORDER = "INVALID_ORDER"
    """Well-formed, but not acceptable as it stands (client-set order_id, wrong fund, GTD in the
    past, a replace that changes nothing)."""
    UNSUPPORTED = "UNSUPPORTED"
    """The receiver does not support this order type, time in force or request."""
    UNAUTHORIZED = "UNAUTHORIZED"
    """The sender may not issue this command."""
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    """A signed command whose signature does not verify."""
    STALE_COMMAND = "STALE_COMMAND"
    """A command older than the receiver accepts (outside its freshness window)."""
    REPLAY_REFUSED = "REPLAY_REFUSED"
    """A command (nonce, sequence) that was already used."""
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    """An idempotency key reused with different terms."""
    INTERNAL_ERROR = "INTERNAL_ERROR"
    """The receiver failed; the request may be retried."""
    # -- things the request names -------------------------------------------------------------
    FUND_NOT_FOUND = "FUND_NOT_FOUND"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    INSTRUMENT_NOT_FOUND = "INSTRUMENT_NOT_FOUND"
    INSTRUMENT_MISMATCH = "INSTRUMENT_MISMATCH"
    """The order's instrument differs from the registered one of the same symbol."""
    # -- the order's lifecycle ----------------------------------------------------------------
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
    """The order is already final (filled, canceled, rejected, ...)."""
    INVALID_STATE_TRANSITION = "INVALID_STATE_TRANSITION"
    CANCEL_REJECTED = "CANCEL_REJECTED"
    """The cancel did not take (the venue refused it, or the order filled first)."""
    ORDER_DENIED = "ORDER_DENIED"
    """Denied by a gate, when the gate's own code is not at hand."""
    # -- pre-trade gates ----------------------------------------------------------------------
    TRADING_HALTED = "TRADING_HALTED"
    TRADING_STATE_REDUCING = "TRADING_STATE_REDUCING"
    """The scope is REDUCING and the order would not reduce exposure."""
    STRATEGY_NOT_ALLOWED = "STRATEGY_NOT_ALLOWED"
    BROKER_NOT_ALLOWED = "BROKER_NOT_ALLOWED"
    INSTRUMENT_RESTRICTED = "INSTRUMENT_RESTRICTED"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    PRICE_COLLAR = "PRICE_COLLAR"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    QUANTITY_EXCEEDS_MAXIMUM = "QUANTITY_EXCEEDS_MAXIMUM"
    QUANTITY_BELOW_MINIMUM = "QUANTITY_BELOW_MINIMUM"
    NOTIONAL_EXCEEDS_MAXIMUM = "NOTIONAL_EXCEEDS_MAXIMUM"
    LOT_SIZE = "LOT_SIZE"
    """The quantity is not a multiple of the instrument's lot size."""
    TICK_SIZE = "TICK_SIZE"
    """A price is not on the instrument's tick grid."""
    MAX_ADV_PCT = "MAX_ADV_PCT"
    POSITION_CAP = "POSITION_CAP"
    GROSS_EXPOSURE = "GROSS_EXPOSURE"
    NET_EXPOSURE = "NET_EXPOSURE"
    DRAWDOWN_HALT = "DRAWDOWN_HALT"
    MESSAGE_RATE = "MESSAGE_RATE"
    REPEATED_EXECUTION = "REPEATED_EXECUTION"
    # -- brokers and venues -------------------------------------------------------------------
    BROKER_REJECTED = "BROKER_REJECTED"
    """The venue refused: the order does not exist there (its words in venue_code/message)."""
    BROKER_TRANSPORT_ERROR = "BROKER_TRANSPORT_ERROR"
    """Nothing reached the venue."""
    BROKER_UNKNOWN_OUTCOME = "BROKER_UNKNOWN_OUTCOME"
    """The request may have reached the venue: reconcile before retrying."""
    INVALID_PRICE = "INVALID_PRICE"
    """A price the order type does not take, or one that is not positive."""
    INVALID_QUANTITY = "INVALID_QUANTITY"
    """A quantity that is not positive, or not above what already filled."""
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
    INSTRUMENT_CLOSED = "INSTRUMENT_CLOSED"
    """Halted, expired or settled."""
    SESSION_CLOSED = "SESSION_CLOSED"


DenialCode = ReplyCode
"""The codes a pre-trade gate puts in a :class:`~mts1b_foundation.orders.Denial`: the same enum
as :class:`ReplyCode` (one source of truth), under the name the gates have always used."""


class TradingState(StrEnum):
    """Kill-switch state of a strategy, a fund or the whole system."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class StrategyState(StrEnum):
    """Where a strategy is in its life (the research registry's states).

    ``draft`` -> ``shadow`` (signals computed and published on the shadow subject, never traded)
    -> ``paper`` (traded on a paper broker) -> ``live`` (real money); ``disabled`` stops a
    strategy wherever it was (enabling it again restores that state) and ``retired`` ends it.
    Version 2 of :class:`~mts1b_foundation.StrategySpec` had ``enabled``, read as ``live``.
    """

    DRAFT = "draft"
    SHADOW = "shadow"
    PAPER = "paper"
    LIVE = "live"
    DISABLED = "disabled"
    RETIRED = "retired"


class TaxLotMethod(StrEnum):
    FIFO = "fifo"
    LIFO = "lifo"
    HIFO = "hifo"
    AVERAGE_COST = "average_cost"
    SPECIFIC_ID = "specific_id"


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"
