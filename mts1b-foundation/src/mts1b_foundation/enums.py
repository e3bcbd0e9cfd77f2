"""Closed vocabularies shared by every library.

They are ``StrEnum`` so that their JSON form is the readable value (``"buy"``, not ``0``) and a
value read from a log line or a database row maps back without a lookup table.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AssetClass",
    "DenialCode",
    "OptionRight",
    "OrderEventType",
    "OrderStatus",
    "OrderType",
    "Severity",
    "Side",
    "StrategyState",
    "TaxLotMethod",
    "TimeInForce",
    "TradingSession",
    "TradingState",
]


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


class DenialCode(StrEnum):
    """Stable reasons a pre-trade risk gate refuses an order."""

    TRADING_HALTED = "TRADING_HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    BROKER_NOT_ALLOWED = "BROKER_NOT_ALLOWED"
    INSTRUMENT_RESTRICTED = "INSTRUMENT_RESTRICTED"
    STRATEGY_NOT_ALLOWED = "STRATEGY_NOT_ALLOWED"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    PRICE_COLLAR = "PRICE_COLLAR"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    MAX_QUANTITY = "MAX_QUANTITY"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    MAX_ADV_PCT = "MAX_ADV_PCT"
    POSITION_CAP = "POSITION_CAP"
    GROSS_EXPOSURE = "GROSS_EXPOSURE"
    NET_EXPOSURE = "NET_EXPOSURE"
    DRAWDOWN_HALT = "DRAWDOWN_HALT"
    MESSAGE_RATE = "MESSAGE_RATE"
    REPEATED_EXECUTION = "REPEATED_EXECUTION"
    INVALID_ORDER = "INVALID_ORDER"


class TradingState(StrEnum):
    """Kill-switch state of a strategy, a fund or the whole system."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class StrategyState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    SHADOW = "shadow"


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
