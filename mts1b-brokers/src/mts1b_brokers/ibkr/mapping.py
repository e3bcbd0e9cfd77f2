"""Foundation instruments, order types and IB error codes in IB's terms.

Contracts: equities and ETFs (``STK``), options (``OPT``), futures (``FUT``) and FX pairs
(``CASH`` on IDEALPRO). Crypto and event contracts are refused as ``UNSUPPORTED``.

Sessions (``Order.session``, see :func:`session_route`): IB holds an order to the regular hours
unless ``outsideRth`` is set, and takes limit orders only outside them; its overnight session
is a venue of its own (``exchange="OVERNIGHT"``). An order whose session IB cannot honour as
asked - a market order before the open, a stock for 24 hours - is refused before it is sent,
never sent to trade at other hours than the order says.

Error codes: IB's codes fall in three kinds for an order we sent - the venue refused it (the
order does not exist there: :data:`REJECT_CODES`), the request never reached the venue
(:data:`TRANSPORT_CODES`), or the message is informational and the order lives on
(:data:`INFO_CODES`, notably 10349 which ib_async reports as a cancel, ib_async #191).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ib_async import Contract, Forex, Future, Option, Stock
from ib_async import Order as IbOrder
from mts1b_foundation import (
    ETF,
    AssetClass,
    Equity,
    FxPair,
    Instrument,
    Order,
    OrderType,
    ReplyCode,
    TimeInForce,
    TradingSession,
)
from mts1b_foundation import Future as FutureInstrument
from mts1b_foundation import Option as OptionInstrument
from mts1b_foundation.plugins import Capabilities

__all__ = [
    "CAPABILITIES",
    "INFO_CODES",
    "REJECT_CODES",
    "TRANSPORT_CODES",
    "UnsupportedOrder",
    "ib_order",
    "order_contract",
    "session_route",
    "stack_code",
    "to_contract",
]

REJECT_CODES: dict[int, ReplyCode] = {
    103: ReplyCode.DUPLICATE_ORDER,          # duplicate order id
    110: ReplyCode.TICK_SIZE,                # price does not conform to the minimum tick
    200: ReplyCode.INSTRUMENT_NOT_FOUND,     # no security definition
    201: ReplyCode.BROKER_REJECTED,          # order rejected - reason: ...
    203: ReplyCode.INSTRUMENT_RESTRICTED,    # security not available/allowed for the account
    321: ReplyCode.INVALID_ORDER,            # error validating request
    387: ReplyCode.UNSUPPORTED,              # unsupported order type
    434: ReplyCode.INVALID_QUANTITY,         # order size cannot be zero
    10147: ReplyCode.ORDER_NOT_FOUND,        # cancel: order id not found
    10148: ReplyCode.CANCEL_REJECTED,        # cancel: cannot be cancelled, state: ...
    104: ReplyCode.ORDER_NOT_OPEN,           # can't modify a filled order
}
"""Codes that mean the request was refused (for a new order: it does not exist at IB)."""

TRANSPORT_CODES = frozenset({502, 504, 1100, 1300, 2110})
"""Codes that mean TWS is not connected (to us or to IB's servers): nothing was sent on."""

INFO_CODES = frozenset({399, 404, 10349, 2104, 2106, 2107, 2108, 2158, 1102, 1101})
"""Codes that change nothing about an order: it lives on (10349: TIF set by a preset)."""


class UnsupportedOrder(ValueError):
    """The order cannot be expressed in IB's terms; the text names the field and value."""


def to_contract(instrument: Instrument) -> Contract:
    """The ib_async contract of a foundation instrument."""
    exchange = instrument.venue or "SMART"
    if isinstance(instrument, Equity | ETF):
        return Stock(instrument.symbol, exchange, instrument.currency)
    if isinstance(instrument, OptionInstrument):
        return Option(instrument.underlying, instrument.expiry.strftime("%Y%m%d"),
                      float(instrument.strike), "C" if instrument.right.value.upper()
                      .startswith("C") else "P", exchange,
                      _plain(instrument.multiplier), instrument.currency)
    if isinstance(instrument, FutureInstrument):
        return Future(instrument.root, instrument.expiry.strftime("%Y%m%d"),
                      "" if exchange == "SMART" else exchange,
                      multiplier=_plain(instrument.multiplier),
                      currency=instrument.currency)
    if isinstance(instrument, FxPair):
        return Forex(instrument.base + instrument.quote,
                     "IDEALPRO" if exchange == "SMART" else exchange)
    raise UnsupportedOrder(f"instrument.asset_class {instrument.asset_class.value!r} is not "
                           "traded through IBKR by this adapter")


_TYPES = {OrderType.MARKET: "MKT", OrderType.LIMIT: "LMT", OrderType.STOP: "STP",
          OrderType.STOP_LIMIT: "STP LMT", OrderType.MARKET_ON_CLOSE: "MOC",
          OrderType.LIMIT_ON_CLOSE: "LOC"}
_TIFS = {TimeInForce.DAY: "DAY", TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC",
         TimeInForce.FOK: "FOK", TimeInForce.GTD: "GTD", TimeInForce.OPG: "OPG",
         TimeInForce.CLS: "DAY"}


CAPABILITIES = Capabilities(
    order_types=frozenset(_TYPES), time_in_force=frozenset(_TIFS),
    asset_classes=frozenset({AssetClass.EQUITY, AssetClass.ETF, AssetClass.OPTION,
                             AssetClass.FUTURE, AssetClass.FX}),
    streaming=True, supports_replace=True)
"""What ``IbkrBroker`` declares: the order types and times in force this module maps, the
asset classes :func:`to_contract` builds a contract for; execution reports are pushed as they
come, and an order is replaced in place (``placeOrder`` with its IB order id)."""


OVERNIGHT = "OVERNIGHT"
"""IB's destination for its overnight session (20:00-03:50 New York; Blue Ocean ATS)."""
_OUTSIDE_RTH_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
"""What IB works before the open and after the close: orders with a limit price (a market or
stop-market order there would wait for the open, or fill at an extended-hours quote nobody
chose; on-close orders belong to the regular close)."""
_EXTENDED = frozenset({TradingSession.PRE, TradingSession.POST})


def session_route(order: Order) -> tuple[bool, str | None]:
    """``(outsideRth, exchange or None)`` for ``order.session``, or :class:`UnsupportedOrder`.

    - ``RTH``: ``outsideRth`` False (IB's default: the order works in regular hours only);
    - ``PRE`` / ``POST``: ``outsideRth`` True, limit and stop-limit orders only (the flag lets
      the order work outside regular hours as well as in them, and covers both windows: a PRE
      order left working also trades in the regular session and after the close);
    - ``IBEOS``: limit orders for a stock or ETF, sent to the ``OVERNIGHT`` destination;
    - ``24X5``: FX only (IDEALPRO trades Sunday to Friday), with ``outsideRth`` True;
    - ``24H``, and ``24X5`` for anything but FX: refused - nothing this adapter trades at IB
      trades around the clock.
    """
    session, kind = order.session, order.order_type
    stock = isinstance(order.instrument, Equity | ETF)
    if session is TradingSession.RTH:
        return False, None
    if session in _EXTENDED:
        if kind not in _OUTSIDE_RTH_TYPES:
            raise UnsupportedOrder(
                f"a {kind.value} order cannot trade in the {session.value} session at IB "
                "(outside regular hours IB takes limit and stop-limit orders only)")
        return True, None
    if session is TradingSession.IBEOS:
        if not stock:
            raise UnsupportedOrder(
                f"session 'IBEOS' (IB's overnight venue) trades stocks and ETFs, not "
                f"{order.instrument.asset_class.value}")
        if kind is not OrderType.LIMIT:
            raise UnsupportedOrder(
                f"a {kind.value} order cannot trade in the IBEOS session (IB's overnight "
                "venue takes limit orders only)")
        return True, OVERNIGHT
    if session is TradingSession.H24X5 and isinstance(order.instrument, FxPair):
        return True, None
    raise UnsupportedOrder(
        f"session {session.value!r} is not a session IB trades "
        f"{order.instrument.asset_class.value} in (use RTH, PRE, POST or IBEOS)")


def order_contract(order: Order) -> Contract:
    """:func:`to_contract` of the order's instrument, sent to the venue its session needs."""
    contract = to_contract(order.instrument)
    _outside, exchange = session_route(order)
    if exchange is not None:
        contract.exchange = exchange
    return contract


def ib_order(order: Order, account: str, ib_order_id: int) -> IbOrder:
    """The ib_async order for ``order``: our ``order_id`` in ``orderRef``, ``outsideRth`` from
    its session (:func:`session_route`)."""
    kind = _TYPES.get(order.order_type)
    if kind is None:
        raise UnsupportedOrder(f"order_type {order.order_type.value!r} is not supported")
    outside_rth, _exchange = session_route(order)
    ib = IbOrder(orderId=ib_order_id, action="BUY" if order.side.value == "buy" else "SELL",
                 totalQuantity=float(order.quantity), orderType=kind,
                 tif=_TIFS[order.time_in_force], account=account,
                 orderRef=order.order_id or "", transmit=True, outsideRth=outside_rth)
    if order.limit_price is not None:
        ib.lmtPrice = float(order.limit_price)
    if order.stop_price is not None:
        ib.auxPrice = float(order.stop_price)
    if order.expire_at is not None:
        ib.goodTillDate = order.expire_at.astimezone(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
    return ib


def _plain(value: Decimal) -> str:
    """``Decimal("100")`` -> ``"100"`` (``normalize`` alone gives ``"1E+2"``)."""
    return format(value.normalize(), "f")


def stack_code(code: int) -> ReplyCode:
    """The stack's code for an IB error code that refused a request."""
    return REJECT_CODES.get(code, ReplyCode.BROKER_REJECTED)


def decimal(value: float) -> Decimal:
    """An IB double as a Decimal (its shortest repr: 99.5, not 99.4999...)."""
    return Decimal(repr(value))
