"""Translations between the stack's orders and Coinbase Advanced Trade's wire terms.

Kept apart from the broker so each rule is one table: which of our order types and times in
force Coinbase can take (and as which ``order_configuration``), which product an instrument
is, and which :class:`~mts1b_foundation.ReplyCode` each of Coinbase's failure reasons means.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from mts1b_foundation import (
    AssetClass,
    CryptoPair,
    Instrument,
    Order,
    OrderType,
    ReplyCode,
    Side,
    TimeInForce,
    TradingSession,
)
from mts1b_foundation.plugins import Capabilities
from mts1b_foundation.wire import fit_to_domain

__all__ = [
    "CAPABILITIES",
    "TERMINAL",
    "Unsupported",
    "check_session",
    "create_code",
    "decimal",
    "order_configuration",
    "product_id",
    "venue_terms",
]

CAPABILITIES = Capabilities(
    order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT}),
    time_in_force=frozenset({TimeInForce.GTC, TimeInForce.GTD, TimeInForce.IOC,
                             TimeInForce.FOK}),
    asset_classes=frozenset({AssetClass.CRYPTO}), streaming=True, supports_replace=True)
"""What ``CoinbaseBroker`` declares (read by the OMS's capability gate and the conformance kit):
the order types and times in force :func:`order_configuration` maps (FOK and GTD for limit and
stop-limit orders only, IOC and GTC market orders both go as market IOC), spot crypto pairs,
execution reports pushed as they happen, replace as Coinbase's edit (GTC limit orders)."""

TERMINAL = {"FILLED", "CANCELLED", "EXPIRED", "FAILED"}
"""Coinbase order statuses after which nothing more happens to the order."""


class Unsupported(ValueError):
    """The order cannot be expressed as a Coinbase order; the text says why."""


def decimal(value: Any, default: str = "0") -> Decimal:
    """A Coinbase decimal string in the wire's numeric domain (``""`` -> ``default``)."""
    text = str(value) if value not in (None, "") else default
    return fit_to_domain(Decimal(text))


def product_id(instrument: Instrument) -> str:
    """``BTC-USD`` for a crypto pair (base-quote), else the symbol as it is."""
    if isinstance(instrument, CryptoPair):
        return f"{instrument.base}-{instrument.quote}"
    return instrument.symbol


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _end_time(order: Order) -> str:
    if order.expire_at is None:  # pragma: no cover - Order requires it with GTD
        raise Unsupported("GTD needs expire_at")
    return order.expire_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_SESSIONS = frozenset({TradingSession.RTH, TradingSession.H24})
"""The sessions a Coinbase order can honour. Coinbase trades every pair around the clock, so
its regular hours are all 24 of them: ``RTH`` (what ``Order.session`` defaults to) and ``H24``
ask for the same thing. ``PRE``/``POST``/``IBEOS`` are equity-market windows Coinbase has no
equivalent of, and ``H24X5`` asks for weekdays only, which Coinbase cannot hold an order to:
those are refused rather than sent to trade at hours the order did not ask for."""


def check_session(order: Order) -> None:
    """Raise :class:`Unsupported` when Coinbase cannot keep to ``order.session``."""
    if order.session not in _SESSIONS:
        raise Unsupported(f"session {order.session.value!r} cannot be kept on Coinbase, which "
                          "trades around the clock; send it as '24H' (or 'RTH', the same "
                          "hours there)")


def order_configuration(order: Order) -> dict[str, dict[str, Any]]:
    """The ``order_configuration`` of ``POST /orders`` for ``order``.

    Coinbase spot takes: market (IOC; a GTC market order goes as one), limit GTC / GTD / IOC
    (``sor_limit_ioc``) / FOK, and stop-limit GTC / GTD. Everything else (DAY - Coinbase has
    no trading day -, stop-market, on-close orders, OPG/CLS) raises
    :class:`Unsupported`: sending an approximation would trade differently than asked. So
    does a session other than RTH/24H (:func:`check_session`).
    """
    check_session(order)
    size = _plain(order.quantity)
    tif = order.time_in_force
    t = order.order_type
    if t is OrderType.MARKET:
        if tif not in {TimeInForce.IOC, TimeInForce.GTC}:
            raise Unsupported(f"a market order on Coinbase is immediate-or-cancel; "
                              f"time_in_force {tif.value!r} is not offered")
        return {"market_market_ioc": {"base_size": size}}
    if t is OrderType.LIMIT and order.limit_price is not None:
        limit = _plain(order.limit_price)
        if tif is TimeInForce.GTC:
            return {"limit_limit_gtc": {"base_size": size, "limit_price": limit,
                                        "post_only": False}}
        if tif is TimeInForce.GTD:
            return {"limit_limit_gtd": {"base_size": size, "limit_price": limit,
                                        "end_time": _end_time(order), "post_only": False}}
        if tif is TimeInForce.IOC:
            return {"sor_limit_ioc": {"base_size": size, "limit_price": limit}}
        if tif is TimeInForce.FOK:
            return {"limit_limit_fok": {"base_size": size, "limit_price": limit}}
    if (t is OrderType.STOP_LIMIT and order.limit_price is not None
            and order.stop_price is not None):
        direction = ("STOP_DIRECTION_STOP_UP" if order.side is Side.BUY
                     else "STOP_DIRECTION_STOP_DOWN")
        body = {"base_size": size, "limit_price": _plain(order.limit_price),
                "stop_price": _plain(order.stop_price), "stop_direction": direction}
        if tif is TimeInForce.GTC:
            return {"stop_limit_stop_limit_gtc": body}
        if tif is TimeInForce.GTD:
            return {"stop_limit_stop_limit_gtd": {**body, "end_time": _end_time(order)}}
    raise Unsupported(f"Coinbase has no {t.value} order with time_in_force {tif.value!r} "
                      "(market IOC; limit GTC/GTD/IOC/FOK; stop-limit GTC/GTD)")


def venue_terms(order: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    """``(base_size, limit_price)`` of a REST order's ``order_configuration``."""
    configs = order.get("order_configuration") or {}
    for config in configs.values():
        if isinstance(config, dict) and "base_size" in config:
            limit = config.get("limit_price")
            return decimal(config["base_size"]), decimal(limit) if limit else None
    return None, None


_CREATE_CODES: dict[str, ReplyCode] = {
    "INVALID_PRICE_PRECISION": ReplyCode.TICK_SIZE,
    "INVALID_LIMIT_PRICE_PRECISION": ReplyCode.TICK_SIZE,
    "PREVIEW_INVALID_LIMIT_PRICE_PRECISION": ReplyCode.TICK_SIZE,
    "PREVIEW_INVALID_STOP_PRICE_PRECISION": ReplyCode.TICK_SIZE,
    "INVALID_SIZE_PRECISION": ReplyCode.LOT_SIZE,
    "PREVIEW_INVALID_SIZE_PRECISION": ReplyCode.LOT_SIZE,
    "INSUFFICIENT_FUND": ReplyCode.INSUFFICIENT_BUYING_POWER,
    "INSUFFICIENT_FUNDS": ReplyCode.INSUFFICIENT_BUYING_POWER,
    "PREVIEW_INSUFFICIENT_FUND": ReplyCode.INSUFFICIENT_BUYING_POWER,
    "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL": ReplyCode.QUANTITY_BELOW_MINIMUM,
    "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE": ReplyCode.QUANTITY_EXCEEDS_MAXIMUM,
    "INVALID_PRODUCT_ID": ReplyCode.INSTRUMENT_NOT_FOUND,
    "PREVIEW_INVALID_PRODUCT_ID": ReplyCode.INSTRUMENT_NOT_FOUND,
    "UNSUPPORTED_ORDER_CONFIGURATION": ReplyCode.UNSUPPORTED,
    "INVALID_LIMIT_PRICE": ReplyCode.INVALID_PRICE,
    "ORDER_ENTRY_DISABLED": ReplyCode.INSTRUMENT_CLOSED,
    "DUPLICATE_CLIENT_ORDER_ID": ReplyCode.DUPLICATE_ORDER,
    # edit_failure_reason
    "ONLY_OPEN_ORDERS_CAN_BE_EDITED": ReplyCode.ORDER_NOT_OPEN,
    "ORDER_NOT_FOUND": ReplyCode.ORDER_NOT_FOUND,
    "CANNOT_EDIT_TO_BELOW_FILLED_SIZE": ReplyCode.INVALID_QUANTITY,
    "INVALID_EDITED_SIZE": ReplyCode.LOT_SIZE,
    "INVALID_EDITED_PRICE": ReplyCode.TICK_SIZE,
    "ONLY_LIMIT_ORDER_EDITS_SUPPORTED": ReplyCode.UNSUPPORTED,
    # cancel failure_reason
    "UNKNOWN_CANCEL_ORDER": ReplyCode.ORDER_NOT_FOUND,
    "ORDER_IS_FULLY_FILLED": ReplyCode.ORDER_NOT_OPEN,
    "DUPLICATE_CANCEL_REQUEST": ReplyCode.ORDER_NOT_OPEN,
}


def create_code(*reasons: str | None) -> ReplyCode:
    """The stack's code for the first of Coinbase's reasons it knows, else BROKER_REJECTED."""
    for reason in reasons:
        if reason and reason in _CREATE_CODES:
            return _CREATE_CODES[reason]
    return ReplyCode.BROKER_REJECTED
