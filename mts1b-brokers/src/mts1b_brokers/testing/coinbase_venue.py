"""The matching and accounting state behind :class:`~.coinbase_server.CoinbaseServer`.

It stands in for Coinbase Advanced Trade's venue (no live account is ever used): products with
their price and size increments, one portfolio of currency accounts with holds, orders keyed by
Coinbase's ``order_id`` and our ``client_order_id``, and fills with trade ids. Everything it
returns is shaped as Coinbase's REST API and user channel shape it (field names, status and
failure-reason enums, decimals as strings), so the adapter under test parses the real format.

What it simplifies, on purpose: there is no order book. The venue trades only when a test calls
:meth:`CoinbaseVenue.trade` (``price``, ``liquidity`` units available to our orders), as the
conformance kit's ``VenueDriver`` does. So a market order waits for the next trade instead of
filling against resting liquidity, and an IOC or FOK limit order meets the next trade and has
what it did not fill canceled (FOK: all of it when the liquidity is short).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["CoinbaseVenue", "Product", "VenueOrder", "iso"]

_OPEN = {"PENDING", "OPEN", "QUEUED"}
_TIF = {
    "market_market_ioc": "IMMEDIATE_OR_CANCEL",
    "sor_limit_ioc": "IMMEDIATE_OR_CANCEL",
    "limit_limit_gtc": "GOOD_UNTIL_CANCELLED",
    "limit_limit_gtd": "GOOD_UNTIL_DATE_TIME",
    "limit_limit_fok": "FILL_OR_KILL",
    "stop_limit_stop_limit_gtc": "GOOD_UNTIL_CANCELLED",
    "stop_limit_stop_limit_gtd": "GOOD_UNTIL_DATE_TIME",
}


def iso(ts: dt.datetime) -> str:
    """Coinbase's timestamp form: RFC 3339 with microseconds and ``Z``."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _s(value: Decimal) -> str:
    """A decimal as Coinbase writes one: plain notation, no exponent."""
    text = format(value.normalize(), "f")
    return text if text not in {"-0", ""} else "0"


@dataclass
class Product:
    """A spot product: ``BTC-USD`` trades ``base_increment`` lots at ``quote_increment`` ticks."""

    product_id: str
    base: str
    quote: str
    price: Decimal
    base_increment: Decimal = Decimal("0.00000001")
    quote_increment: Decimal = Decimal("0.01")
    base_min_size: Decimal = Decimal("0.00000001")
    base_max_size: Decimal = Decimal("1000000")

    def wire(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id, "price": _s(self.price),
            "base_increment": _s(self.base_increment),
            "quote_increment": _s(self.quote_increment),
            "price_increment": _s(self.quote_increment),
            "base_min_size": _s(self.base_min_size), "base_max_size": _s(self.base_max_size),
            "quote_min_size": "1", "quote_max_size": "100000000",
            "base_currency_id": self.base, "quote_currency_id": self.quote,
            "base_display_symbol": self.base, "quote_display_symbol": self.quote,
            "status": "online", "trading_disabled": False, "is_disabled": False,
            "cancel_only": False, "limit_only": False, "post_only": False,
            "product_type": "SPOT", "view_only": False,
        }


@dataclass
class VenueFill:
    trade_id: str
    entry_id: str
    order_id: str
    product_id: str
    side: str
    price: Decimal
    size: Decimal
    commission: Decimal
    ts: dt.datetime
    trade_type: str = "FILL"

    def wire(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id, "trade_id": self.trade_id, "order_id": self.order_id,
            "trade_time": iso(self.ts), "trade_type": self.trade_type, "price": _s(self.price),
            "size": _s(self.size), "commission": _s(self.commission),
            "product_id": self.product_id, "sequence_timestamp": iso(self.ts),
            "liquidity_indicator": "TAKER", "size_in_quote": False, "user_id": "user-1",
            "side": self.side, "retail_portfolio_id": "portfolio-1",
        }


@dataclass
class VenueOrder:
    order_id: str
    client_order_id: str
    product_id: str
    side: str
    kind: str
    config: dict[str, Any]
    size: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    stop_direction: str | None
    created: dt.datetime
    status: str = "OPEN"
    filled: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    hold: Decimal = Decimal(0)
    triggered: bool = False
    cancel_reason: str = ""
    fills: list[VenueFill] = field(default_factory=list)
    last_fill: dt.datetime | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def leaves(self) -> Decimal:
        return self.size - self.filled if self.status in _OPEN else Decimal(0)

    @property
    def avg_price(self) -> Decimal:
        return self.filled_value / self.filled if self.filled else Decimal(0)

    @property
    def order_type(self) -> str:
        if self.kind.startswith("market"):
            return "MARKET"
        return "STOP_LIMIT" if self.kind.startswith("stop_limit") else "LIMIT"

    def rest(self) -> dict[str, Any]:
        """The order as ``GET /orders/historical/{order_id}`` returns it."""
        return {
            "order_id": self.order_id, "product_id": self.product_id, "user_id": "user-1",
            "order_configuration": {self.kind: dict(self.config)}, "side": self.side,
            "client_order_id": self.client_order_id, "status": self.status,
            "time_in_force": _TIF[self.kind], "created_time": iso(self.created),
            "completion_percentage": _s((self.filled / self.size * 100).quantize(Decimal("0.01"))),
            "filled_size": _s(self.filled), "average_filled_price": _s(self.avg_price),
            "fee": "", "number_of_fills": str(len(self.fills)),
            "filled_value": _s(self.filled_value), "pending_cancel": False,
            "size_in_quote": False, "total_fees": _s(self.fees),
            "size_inclusive_of_fees": False,
            "total_value_after_fees": _s(self.filled_value + (
                self.fees if self.side == "BUY" else -self.fees)),
            "trigger_status": ("STOP_TRIGGERED" if self.triggered else "STOP_PENDING")
            if self.order_type == "STOP_LIMIT" else "INVALID_ORDER_TYPE",
            "order_type": self.order_type, "reject_reason": "", "settled": not self.leaves,
            "product_type": "SPOT", "reject_message": "", "cancel_message": self.cancel_reason,
            "order_placement_source": "RETAIL_ADVANCED",
            "outstanding_hold_amount": _s(self.hold), "is_liquidation": False,
            "last_fill_time": iso(self.last_fill) if self.last_fill else None,
            "edit_history": list(self.edits), "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE",
            "retail_portfolio_id": "portfolio-1", "originating_order_id": "",
            "attached_order_id": "",
        }

    def user(self) -> dict[str, Any]:
        """The order as an event of the ``user`` WebSocket channel carries it."""
        return {
            "order_id": self.order_id, "client_order_id": self.client_order_id,
            "cumulative_quantity": _s(self.filled), "leaves_quantity": _s(self.leaves),
            "avg_price": _s(self.avg_price), "total_fees": _s(self.fees),
            "status": self.status, "product_id": self.product_id, "product_type": "SPOT",
            "creation_time": iso(self.created), "order_side": self.side,
            "order_type": {"MARKET": "Market", "LIMIT": "Limit",
                           "STOP_LIMIT": "StopLimit"}[self.order_type],
            "cancel_reason": self.cancel_reason, "reject_reason": "",
            "outstanding_hold_amount": _s(self.hold),
            "total_value_after_fees": _s(self.filled_value),
            "number_of_fills": str(len(self.fills)), "filled_value": _s(self.filled_value),
            "limit_price": _s(self.limit_price or Decimal(0)),
            "stop_price": _s(self.stop_price or Decimal(0)),
            "time_in_force": _TIF[self.kind], "trigger_status": "INVALID_ORDER_TYPE",
            "contract_expiry_type": "UNKNOWN_CONTRACT_EXPIRY_TYPE",
            "risk_managed_by": "UNKNOWN_RISK_MANAGEMENT_TYPE", "post_only": False,
        }


class _Refused(Exception):
    def __init__(self, error: str, preview: str, message: str) -> None:
        super().__init__(message)
        self.error, self.preview, self.message = error, preview, message


class CoinbaseVenue:
    """Orders, fills and balances of one Coinbase portfolio, with Coinbase's answers.

    ``on_change(order)`` is called after every change to an order (the server turns it into a
    ``user`` channel update). ``fee_rate`` is the taker fee charged on each fill's value.
    ``duplicate_client_order_id``: what a create with a ``client_order_id`` already used does
    - ``"existing"`` answers success with the existing order (no second order), ``"reject"``
    fails it with ``DUPLICATE_CLIENT_ORDER_ID``. Coinbase does not document which it does;
    the adapter must not create a second order under either.
    """

    def __init__(self, *, balances: dict[str, Decimal] | None = None,
                 products: list[Product] | None = None, fee_rate: Decimal = Decimal("0.001"),
                 duplicate_client_order_id: str = "existing") -> None:
        if duplicate_client_order_id not in {"existing", "reject"}:
            raise ValueError("duplicate_client_order_id must be 'existing' or 'reject', "
                             f"got {duplicate_client_order_id!r}")
        self.products = {p.product_id: p for p in (products or [
            Product("BTC-USD", "BTC", "USD", Decimal(100))])}
        self.available: dict[str, Decimal] = {"USD": Decimal(1_000_000)}
        self.available.update(balances or {})
        self.holds: dict[str, Decimal] = {}
        self.orders: dict[str, VenueOrder] = {}
        self.by_client: dict[str, VenueOrder] = {}
        self.fee_rate = fee_rate
        self.duplicates = duplicate_client_order_id
        self.on_change: Callable[[VenueOrder], None] = lambda order: None
        self._ids = itertools.count(1)
        self.creates: dict[str, int] = {}
        """client_order_id -> how many creates for it reached the venue (a re-send: 2)."""
        self.duplicate_fills = 0
        """How many of the next fills are listed twice by ``list_fills`` (same trade id)."""
        self._listed_twice: set[str] = set()
        self.last_fill: VenueFill | None = None
        self.filters_client_order_id = True
        self.fills_lag = 0
        """How many of the next ``list fills`` answers leave out the newest fill (Coinbase's
        fills list can trail its order status)."""
        """Whether ``list orders`` honours a ``client_order_id`` filter. Coinbase's
        documentation does not list that filter; with ``False`` it is ignored, as a venue that
        does not know it would, and the client must find its order among all of them."""

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    # ------------------------------------------------------------------------------ REST
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /orders``: success with the new order's id, or ``success: false`` with
        Coinbase's ``error_response`` (HTTP 200 either way, as Coinbase answers)."""
        cid = str(body.get("client_order_id") or "")
        self.creates[cid] = self.creates.get(cid, 0) + 1
        if cid and cid in self.by_client:
            existing = self.by_client[cid]
            if self.duplicates == "reject":
                return self._failure("DUPLICATE_CLIENT_ORDER_ID", "",
                                     "client_order_id was already used", body)
            return self._success(existing)
        try:
            order = self._new_order(cid or uuid.uuid4().hex, body)
        except _Refused as ref:
            return self._failure(ref.error, ref.preview, ref.message, body)
        self.orders[order.order_id] = order
        self.by_client[order.client_order_id] = order
        self.on_change(order)
        return self._success(order)

    @staticmethod
    def _success(order: VenueOrder) -> dict[str, Any]:
        return {"success": True, "success_response": {
            "order_id": order.order_id, "product_id": order.product_id, "side": order.side,
            "client_order_id": order.client_order_id},
            "order_configuration": {order.kind: dict(order.config)}}

    @staticmethod
    def _failure(error: str, preview: str, message: str, body: dict[str, Any]
                 ) -> dict[str, Any]:
        return {"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
                "error_response": {"error": error, "message": message,
                                   "error_details": message,
                                   "preview_failure_reason": preview or
                                   "UNKNOWN_PREVIEW_FAILURE_REASON",
                                   "new_order_failure_reason": error},
                "order_configuration": body.get("order_configuration") or {}}

    def _new_order(self, cid: str, body: dict[str, Any]) -> VenueOrder:
        product = self.products.get(str(body.get("product_id")))
        if product is None:
            raise _Refused("INVALID_PRODUCT_ID", "PREVIEW_INVALID_PRODUCT_ID",
                           f"product {body.get('product_id')!r} is not traded")
        side = body.get("side")
        if side not in {"BUY", "SELL"}:
            raise _Refused("INVALID_SIDE", "", f"side must be BUY or SELL, got {side!r}")
        configs = body.get("order_configuration") or {}
        if not isinstance(configs, dict) or len(configs) != 1 or next(iter(configs)) not in _TIF:
            raise _Refused("UNSUPPORTED_ORDER_CONFIGURATION", "",
                           f"order_configuration {sorted(configs)!r} is not supported here")
        kind, config = next(iter(configs.items()))
        try:
            size = Decimal(str(config["base_size"]))
            limit = Decimal(str(config["limit_price"])) if "limit_price" in config else None
            stop = Decimal(str(config["stop_price"])) if "stop_price" in config else None
        except (KeyError, ArithmeticError) as exc:
            raise _Refused("INVALID_REQUEST", "", f"order_configuration.{kind} lacks or "
                           f"garbles {exc}") from None
        if kind != "market_market_ioc" and limit is None:
            raise _Refused("INVALID_LIMIT_PRICE", "PREVIEW_INVALID_LIMIT_PRICE",
                           "limit_price is required")
        if size % product.base_increment:
            raise _Refused("INVALID_SIZE_PRECISION", "PREVIEW_INVALID_SIZE_PRECISION",
                           f"base_size {size} is not a multiple of {product.base_increment}")
        for name, price in (("limit_price", limit), ("stop_price", stop)):
            if price is not None and (price <= 0 or price % product.quote_increment):
                raise _Refused("INVALID_PRICE_PRECISION",
                               "PREVIEW_INVALID_LIMIT_PRICE_PRECISION" if name == "limit_price"
                               else "PREVIEW_INVALID_STOP_PRICE_PRECISION",
                               f"{name} {price} is not a multiple of {product.quote_increment}")
        if size < product.base_min_size:
            raise _Refused("INVALID_SIZE", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL",
                           f"base_size {size} is below {product.base_min_size}")
        if size > product.base_max_size:
            raise _Refused("INVALID_SIZE", "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE",
                           f"base_size {size} is above {product.base_max_size}")
        hold_ccy, hold = self._hold_for(product, side, size, limit)
        if hold > self.available.get(hold_ccy, Decimal(0)):
            raise _Refused("INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND",
                           f"Insufficient balance in source account ({hold_ccy})")
        self._move_hold(hold_ccy, hold)
        return VenueOrder(
            order_id=str(uuid.uuid4()), client_order_id=cid, product_id=product.product_id,
            side=side, kind=kind, config=dict(config), size=size, limit_price=limit,
            stop_price=stop, stop_direction=config.get("stop_direction"), created=self.now(),
            hold=hold)

    def _hold_for(self, product: Product, side: str, size: Decimal,
                  limit: Decimal | None) -> tuple[str, Decimal]:
        if side == "SELL":
            return product.base, size
        price = limit if limit is not None else product.price
        return product.quote, size * price * (1 + self.fee_rate)

    def _move_hold(self, ccy: str, amount: Decimal) -> None:
        self.available[ccy] = self.available.get(ccy, Decimal(0)) - amount
        self.holds[ccy] = self.holds.get(ccy, Decimal(0)) + amount

    def _release(self, order: VenueOrder) -> None:
        product = self.products[order.product_id]
        ccy = product.base if order.side == "SELL" else product.quote
        self._move_hold(ccy, -order.hold)
        order.hold = Decimal(0)

    def cancel(self, order_ids: list[str]) -> dict[str, Any]:
        """``POST /orders/batch_cancel``: one result per id."""
        results = []
        for oid in order_ids:
            order = self.orders.get(oid)
            reason = "UNKNOWN_CANCEL_FAILURE_REASON"
            if order is None:
                ok, reason = False, "UNKNOWN_CANCEL_ORDER"
            elif order.status == "FILLED":
                ok, reason = False, "ORDER_IS_FULLY_FILLED"
            elif order.status not in _OPEN:
                ok, reason = False, "DUPLICATE_CANCEL_REQUEST"
            else:
                ok = True
                self._end(order, "CANCELLED", "User requested cancel")
            results.append({"success": ok, "failure_reason": reason, "order_id": oid})
        return {"results": results}

    def _end(self, order: VenueOrder, status: str, reason: str = "") -> None:
        order.status = status
        order.cancel_reason = reason
        self._release(order)
        self.on_change(order)

    def edit(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /orders/edit``: a GTC limit order's new ``price`` and ``size``."""
        order = self.orders.get(str(body.get("order_id")))

        def refuse(reason: str, preview: str = "") -> dict[str, Any]:
            return {"success": False, "errors": [{
                "edit_failure_reason": reason,
                "preview_failure_reason": preview or "UNKNOWN_PREVIEW_FAILURE_REASON"}]}

        if order is None:
            return refuse("ORDER_NOT_FOUND")
        if order.status not in _OPEN:
            return refuse("ONLY_OPEN_ORDERS_CAN_BE_EDITED")
        if order.kind != "limit_limit_gtc":
            return refuse("ONLY_LIMIT_ORDER_EDITS_SUPPORTED")
        product = self.products[order.product_id]
        try:
            price = Decimal(str(body.get("price") or order.limit_price))
            size = Decimal(str(body.get("size") or order.size))
        except ArithmeticError:
            return refuse("INVALID_EDITED_SIZE")
        if price <= 0 or price % product.quote_increment:
            return refuse("INVALID_EDITED_PRICE", "PREVIEW_INVALID_LIMIT_PRICE_PRECISION")
        if size <= 0 or size % product.base_increment:
            return refuse("INVALID_EDITED_SIZE", "PREVIEW_INVALID_SIZE_PRECISION")
        if size <= order.filled:
            return refuse("CANNOT_EDIT_TO_BELOW_FILLED_SIZE")
        if price == order.limit_price and size == order.size:
            return refuse("EDIT_REQUEST_EQUAL_TO_ORIGINAL_REQUEST")
        self._release(order)
        ccy, hold = self._hold_for(product, order.side, size - order.filled, price)
        if hold > self.available.get(ccy, Decimal(0)):
            self._move_hold(ccy, self._hold_for(product, order.side,
                                                order.size - order.filled,
                                                order.limit_price)[1])
            order.hold = self._hold_for(product, order.side, order.size - order.filled,
                                        order.limit_price)[1]
            return refuse("COMMANDER_REJECTED_EDIT_ORDER", "PREVIEW_INSUFFICIENT_FUND")
        self._move_hold(ccy, hold)
        order.hold = hold
        order.edits.append({"price": _s(price), "size": _s(size),
                            "replace_accept_timestamp": iso(self.now())})
        order.size, order.limit_price = size, price
        order.config.update(base_size=_s(size), limit_price=_s(price))
        self.on_change(order)
        return {"success": True, "errors": []}

    def list_orders(self, query: dict[str, list[str]]) -> list[VenueOrder]:
        """``GET /orders/historical/batch`` filtered by ``order_ids``, ``product_ids``,
        ``order_status`` and ``client_order_id`` (newest first, as Coinbase sorts)."""
        found = list(self.orders.values())
        if query.get("order_ids"):
            found = [o for o in found if o.order_id in query["order_ids"]]
        if query.get("client_order_id") and self.filters_client_order_id:
            found = [o for o in found if o.client_order_id in query["client_order_id"]]
        if query.get("product_ids"):
            found = [o for o in found if o.product_id in query["product_ids"]]
        if query.get("order_status"):
            wanted = set(query["order_status"])
            found = [o for o in found if o.status in wanted]
        return sorted(found, key=lambda o: o.created, reverse=True)

    def list_fills(self, query: dict[str, list[str]]) -> list[VenueFill]:
        fills = [f for o in self.orders.values() for f in o.fills]
        fills += [f for f in fills if f.trade_id in self._listed_twice]
        if query.get("order_ids"):
            fills = [f for f in fills if f.order_id in query["order_ids"]]
        if query.get("trade_ids"):
            fills = [f for f in fills if f.trade_id in query["trade_ids"]]
        if query.get("product_ids"):
            fills = [f for f in fills if f.product_id in query["product_ids"]]
        listed = sorted(fills, key=lambda f: (f.ts, f.entry_id), reverse=True)
        if self.fills_lag and listed:
            self.fills_lag -= 1
            newest = max(fills, key=lambda f: (f.ts, f.entry_id))
            listed = [f for f in listed if f is not newest]
        return listed

    def accounts(self) -> list[dict[str, Any]]:
        out = []
        for ccy in sorted(set(self.available) | set(self.holds)):
            out.append({
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"coinbase-fixture/{ccy}")),
                "name": f"{ccy} Wallet", "currency": ccy,
                "available_balance": {"value": _s(self.available.get(ccy, Decimal(0))),
                                      "currency": ccy},
                "default": ccy == "USD", "active": True, "created_at": "2024-01-01T00:00:00Z",
                "updated_at": iso(self.now()), "deleted_at": None,
                "type": "ACCOUNT_TYPE_FIAT" if ccy == "USD" else "ACCOUNT_TYPE_CRYPTO",
                "ready": True, "hold": {"value": _s(self.holds.get(ccy, Decimal(0))),
                                        "currency": ccy},
                "retail_portfolio_id": "portfolio-1", "platform": "ACCOUNT_PLATFORM_CONSUMER",
            })
        return out

    # ----------------------------------------------------------------------------- market
    def working(self, product_id: str) -> list[VenueOrder]:
        return sorted((o for o in self.orders.values()
                       if o.product_id == product_id and o.status in _OPEN),
                      key=lambda o: o.created)

    def expire_due(self) -> list[VenueOrder]:
        """End every GTD order whose ``end_time`` has passed (status EXPIRED)."""
        now, ended = self.now(), []
        for order in list(self.orders.values()):
            end = order.config.get("end_time")
            if order.status in _OPEN and end and dt.datetime.fromisoformat(
                    str(end).replace("Z", "+00:00")) <= now:
                self._end(order, "EXPIRED", "good-till-date time reached")
                ended.append(order)
        return ended

    def trade(self, product_id: str, price: Decimal, liquidity: Decimal) -> list[VenueFill]:
        """The market trades ``product_id`` at ``price`` with ``liquidity`` units for our
        orders, in time priority (GTD orders past their time expire first); returns the
        fills made."""
        self.expire_due()
        product = self.products[product_id]
        product.price = price
        made: list[VenueFill] = []
        left = liquidity
        for order in self.working(product_id):
            if order.stop_price is not None and not order.triggered:
                up = order.stop_direction == "STOP_DIRECTION_STOP_UP"
                if (price >= order.stop_price) if up else (price <= order.stop_price):
                    order.triggered = True
                else:
                    continue
            crosses = (order.limit_price is None
                       or (price <= order.limit_price if order.side == "BUY"
                           else price >= order.limit_price))
            immediate = order.kind in {"sor_limit_ioc", "limit_limit_fok"}
            if crosses and left > 0 and not (order.kind == "limit_limit_fok"
                                             and left < order.leaves):
                qty = min(order.leaves, left)
                left -= qty
                made.append(self.fill(order, qty, price))
            if immediate and order.status in _OPEN:
                self._end(order, "CANCELLED", "IOC/FOK remainder")
        return made

    def fill(self, order: VenueOrder, qty: Decimal, price: Decimal, *,
             notify: bool = True) -> VenueFill:
        """Execute ``qty`` of ``order`` at ``price``: balances, the fill, the order's state."""
        product = self.products[order.product_id]
        value = qty * price
        fee = (value * self.fee_rate).quantize(Decimal("0.00000001"))
        ts = self.now()
        trade = VenueFill(trade_id=str(uuid.uuid4()), entry_id=f"{next(self._ids):012d}",
                          order_id=order.order_id, product_id=order.product_id,
                          side=order.side, price=price, size=qty, commission=fee, ts=ts)
        order.fills.append(trade)
        self.last_fill = trade
        if self.duplicate_fills:
            self.duplicate_fills -= 1
            self._listed_twice.add(trade.trade_id)
        order.filled += qty
        order.filled_value += value
        order.fees += fee
        order.last_fill = ts
        if order.side == "BUY":
            used = min(order.hold, value + fee)
            self._move_hold(product.quote, -used)  # the hold goes back, the cost goes out
            self.available[product.quote] -= value + fee
            order.hold -= used
            self.available[product.base] = self.available.get(product.base, Decimal(0)) + qty
        else:
            self._move_hold(product.base, -qty)
            self.available[product.base] -= qty
            order.hold -= qty
            self.available[product.quote] = (self.available.get(product.quote, Decimal(0))
                                             + value - fee)
        if order.filled >= order.size:
            order.status = "FILLED"
            self._release(order)
        if notify:
            self.on_change(order)
        return trade

    def correct(self, fill: VenueFill, size: Decimal) -> None:
        """Correct ``fill`` to ``size`` (Coinbase lists it with ``trade_type`` CORRECTION,
        same trade id): the order's filled quantity, value, fees and the balances follow."""
        order = self.orders[fill.order_id]
        product = self.products[order.product_id]
        delta = size - fill.size
        fee = (size * fill.price * self.fee_rate).quantize(Decimal("0.00000001"))
        value_delta, fee_delta = delta * fill.price, fee - fill.commission
        fill.size, fill.commission, fill.trade_type = size, fee, "CORRECTION"
        fill.entry_id = f"{next(self._ids):012d}"
        order.filled += delta
        order.filled_value += value_delta
        order.fees += fee_delta
        sign = 1 if order.side == "BUY" else -1
        self.available[product.base] = self.available.get(product.base, Decimal(0)) + sign * delta
        self.available[product.quote] -= sign * value_delta + fee_delta
        self.on_change(order)
