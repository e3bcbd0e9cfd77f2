"""The TWS API socket protocol's classic framing and the messages :class:`FakeTws` sends.

Why a module of its own: the byte layout is the part a test must be able to check against
``ib_async``'s decoder field by field, apart from the venue's behaviour.

Framing (TWS API before 10.35, server versions below 201): the client opens with ``b"API\\0"``
followed by one length-prefixed message ``"v<min>..<max>[ <options>]"``; every later message
in either direction is a 4-byte big-endian length and then ASCII fields, each ended by a NUL.
The server's first message is two fields: its server version and the connection time.

The field lists below follow ``ib_async`` 2.1.0's ``Decoder`` (and the TWS API's
``EDecoder``) for server versions 157-178: where a field depends on the version, the encoder
takes ``server_version``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "IN",
    "OUT",
    "ContractFields",
    "FrameDecoder",
    "OrderFields",
    "account_download_end",
    "account_summary",
    "account_summary_end",
    "account_update_multi",
    "account_update_multi_end",
    "account_update_time",
    "account_value",
    "commission_report",
    "completed_order",
    "completed_orders_end",
    "current_time",
    "error",
    "exec_details",
    "exec_details_end",
    "fmt",
    "frame",
    "managed_accounts",
    "next_valid_id",
    "open_order",
    "open_order_end",
    "order_status",
    "position",
    "position_end",
    "realtime_bar",
]

MAX_FRAME = 16 * 1024 * 1024
"""A frame longer than this is a protocol error (TWS's own limit is 16 MiB)."""


class IN:
    """Message ids the client sends (``EClient``'s outgoing ids)."""

    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51


class OUT:
    """Message ids the server sends (``EDecoder``'s incoming ids)."""

    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    CURRENT_TIME = 49
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    REAL_TIME_BARS = 50
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


def fmt(value: object) -> str:
    """One field as TWS writes it: decimals in plain notation, booleans as 0/1, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    return str(value)


def frame(fields: Sequence[object]) -> bytes:
    """A length-prefixed message of NUL-ended fields."""
    body = "".join(fmt(f) + "\0" for f in fields).encode("ascii", "backslashreplace")
    return struct.pack(">I", len(body)) + body


class FrameDecoder:
    """Splits a byte stream into messages (lists of text fields)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[list[str]]:
        self._buf += data
        out: list[list[str]] = []
        while len(self._buf) >= 4:
            (size,) = struct.unpack(">I", self._buf[:4])
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            if len(self._buf) < 4 + size:
                break
            body, self._buf = self._buf[4:4 + size], self._buf[4 + size:]
            fields = body.decode("ascii", "backslashreplace").split("\0")
            if fields and fields[-1] == "":
                fields.pop()
            out.append(fields)
        return out


@dataclass(frozen=True)
class ContractFields:
    """The contract fields TWS echoes (``conId`` .. ``tradingClass``)."""

    con_id: int
    symbol: str
    sec_type: str = "STK"
    last_trade: str = ""
    strike: Decimal | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""

    @property
    def key(self) -> str:
        """How :class:`FakeTws` names the market: the symbol of a stock, ``EUR.USD`` of a
        currency pair, else ``<symbol> <secType> <lastTrade> <strike><right>``."""
        if self.sec_type == "STK":
            return self.symbol
        if self.sec_type == "CASH":
            return f"{self.symbol}.{self.currency}"
        strike = fmt(self.strike) if self.strike is not None else ""
        return f"{self.symbol} {self.sec_type} {self.last_trade} {strike}{self.right}".strip()

    def short(self) -> list[object]:
        """conId .. tradingClass without primaryExchange (openOrder, execDetails, position)."""
        return [self.con_id, self.symbol, self.sec_type, self.last_trade,
                self.strike if self.strike is not None else Decimal(0), self.right,
                self.multiplier, self.exchange, self.currency,
                self.local_symbol or self.symbol, self.trading_class or self.symbol]


@dataclass(frozen=True)
class OrderFields:
    """What an openOrder/completedOrder message says about one order."""

    order_id: int
    client_id: int
    perm_id: int
    action: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    aux_price: Decimal | None
    tif: str
    account: str
    order_ref: str
    filled: Decimal = Decimal(0)


# ------------------------------------------------------------------- small messages
def next_valid_id(order_id: int) -> list[object]:
    return [OUT.NEXT_VALID_ID, 1, order_id]


def managed_accounts(accounts: Sequence[str]) -> list[object]:
    return [OUT.MANAGED_ACCTS, 1, ",".join(accounts)]


def current_time(epoch: int) -> list[object]:
    return [OUT.CURRENT_TIME, 1, epoch]


def error(server_version: int, req_id: int, code: int, text: str,
          advanced_json: str = "") -> list[object]:
    fields: list[object] = [OUT.ERR_MSG, 2, req_id, code, text]
    if server_version >= 166:
        fields.append(advanced_json)
    return fields


def order_status(order_id: int, status: str, filled: Decimal, remaining: Decimal,
                 avg_price: Decimal, perm_id: int, last_price: Decimal,
                 client_id: int) -> list[object]:
    # no version field since server version 136 (MARKET_CAP_PRICE)
    return [OUT.ORDER_STATUS, order_id, status, filled, remaining, avg_price, perm_id, 0,
            last_price, client_id, "", Decimal(0)]


def realtime_bar(req_id: int, epoch: int, open_: Decimal, high: Decimal, low: Decimal,
                 close: Decimal, volume: Decimal, wap: Decimal, count: int) -> list[object]:
    """realTimeBars (50): one 5-second bar; ``epoch`` is the bar's start in Unix seconds."""
    return [OUT.REAL_TIME_BARS, 3, req_id, epoch, open_, high, low, close, volume, wap, count]


def open_order_end() -> list[object]:
    return [OUT.OPEN_ORDER_END, 1]


def completed_orders_end() -> list[object]:
    return [OUT.COMPLETED_ORDERS_END]


def exec_details(server_version: int, req_id: int, order_id: int, c: ContractFields,
                 exec_id: str, time: str, account: str, side: str, shares: Decimal,
                 price: Decimal, perm_id: int, client_id: int, cum_qty: Decimal,
                 avg_price: Decimal, order_ref: str) -> list[object]:
    fields: list[object] = [OUT.EXECUTION_DATA, req_id, order_id, *c.short(), exec_id, time,
                            account, c.exchange if c.exchange != "SMART" else "ISLAND", side,
                            shares, price, perm_id, client_id, 0, cum_qty, avg_price,
                            order_ref, "", "", "", 1]
    if server_version >= 178:
        fields.append(0)  # pendingPriceRevision
    return fields


def exec_details_end(req_id: int) -> list[object]:
    return [OUT.EXECUTION_DATA_END, 1, req_id]


def commission_report(exec_id: str, commission: Decimal, currency: str = "USD",
                      realized_pnl: Decimal | None = None) -> list[object]:
    # TWS writes "unset" doubles as 1.7976931348623157E308
    unset = "1.7976931348623157E308"
    return [OUT.COMMISSION_REPORT, 1, exec_id, commission, currency,
            realized_pnl if realized_pnl is not None else unset, unset, ""]


def position(account: str, c: ContractFields, quantity: Decimal,
             avg_cost: Decimal) -> list[object]:
    return [OUT.POSITION_DATA, 3, account, *c.short(), quantity, avg_cost]


def position_end() -> list[object]:
    return [OUT.POSITION_END, 1]


def account_summary(req_id: int, account: str, tag: str, value: Decimal,
                    currency: str = "USD") -> list[object]:
    return [OUT.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list[object]:
    return [OUT.ACCOUNT_SUMMARY_END, 1, req_id]


def account_value(key: str, value: Decimal, account: str,
                  currency: str = "USD") -> list[object]:
    return [OUT.ACCT_VALUE, 2, key, value, currency, account]


def account_update_time(hhmm: str) -> list[object]:
    return [OUT.ACCT_UPDATE_TIME, 1, hhmm]


def account_download_end(account: str) -> list[object]:
    return [OUT.ACCT_DOWNLOAD_END, 1, account]


def account_update_multi(req_id: int, account: str, key: str, value: Decimal,
                         currency: str = "USD") -> list[object]:
    return [OUT.ACCOUNT_UPDATE_MULTI, 1, req_id, account, "", key, value, currency]


def account_update_multi_end(req_id: int) -> list[object]:
    return [OUT.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


# ------------------------------------------------------------------ openOrder
_UNSET = ""  # an unset double or integer travels as an empty field


def open_order(server_version: int, c: ContractFields, o: OrderFields,
               status: str) -> list[object]:
    """openOrder (5) as ``EDecoder.processOpenOrderMsg`` reads it for versions 157-178."""
    f: list[object] = [OUT.OPEN_ORDER, o.order_id, *c.short(), o.action, o.quantity,
                       o.order_type, o.limit_price, o.aux_price, o.tif, "", o.account, "O",
                       0, o.order_ref, o.client_id, o.perm_id, 0, 0, Decimal(0), "", "",
                       "", "", ""]
    if server_version < 177:
        f.append("")  # faProfile
    f += ["", "", "0", _UNSET, "", 0, "", "",  # modelCode .. exemptCode
          0, _UNSET, _UNSET, _UNSET, _UNSET, _UNSET,  # auctionStrategy .. stockRangeUpper
          _UNSET, 0, 0, 0, _UNSET, 3, 0, 0, _UNSET,  # displaySize .. nbboPriceCap
          0, 0, _UNSET, 0, "", _UNSET]  # parentId .. deltaNeutralAuxPrice
    f += [0, 0, _UNSET, _UNSET, _UNSET, _UNSET, ""]  # continuousUpdate .. comboLegsDescrip
    f += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    f += [_UNSET, _UNSET, _UNSET]  # scaleInitLevelSize, scaleSubsLevelSize, increment
    f += [""]  # hedgeType
    f += [0, "", "", 0, 0]  # optOutSmartRouting, clearingAccount/Intent, notHeld, dnc
    f += [""]  # algoStrategy
    f += [0, 0, status]  # solicited, whatIf, status
    f += ["1.7976931348623157E308"] * 9  # margin fields
    f += [_UNSET, _UNSET, _UNSET, "", "", 0, 0]  # commissions .. randomizePrice
    f += [0]  # conditions
    f += ["None", _UNSET, _UNSET, _UNSET, _UNSET, _UNSET, _UNSET, 0,  # adjusted .. unit
          "", "", "", _UNSET, 0, 0, 0, 0]  # softDollarTier .. usePriceMgmtAlgo
    if server_version >= 159:
        f.append(_UNSET)  # duration
    if server_version >= 160:
        f.append(_UNSET)  # postToAts
    if server_version >= 162:
        f.append(0)  # autoCancelParent
    if server_version >= 170:
        f += [_UNSET, _UNSET, _UNSET, _UNSET, _UNSET]
    return f


def completed_order(server_version: int, c: ContractFields, o: OrderFields, status: str,
                    completed_time: str, completed_status: str) -> list[object]:
    """completedOrder (101) as ``EDecoder.processCompletedOrderMsg`` reads it."""
    f: list[object] = [OUT.COMPLETED_ORDER, *c.short(), o.action, o.quantity, o.order_type,
                       o.limit_price, o.aux_price, o.tif, "", o.account, "O", 0, o.order_ref,
                       o.perm_id, 0, 0, Decimal(0), "", "", "", ""]
    if server_version < 177:
        f.append("")  # faProfile
    f += ["", "", "0", _UNSET, "", 0, "", "",  # modelCode .. exemptCode
          _UNSET, _UNSET, _UNSET, _UNSET, _UNSET,  # startingPrice .. stockRangeUpper
          _UNSET, 0, 0, _UNSET, 3, 0, _UNSET, 0, "", _UNSET]  # .. deltaNeutralAuxPrice
    f += [0, 0, _UNSET, _UNSET, ""]  # continuousUpdate .. comboLegsDescrip
    f += [0, 0, 0]
    f += [_UNSET, _UNSET, _UNSET]
    f += [""]  # hedgeType
    f += ["", "", 0, 0]  # clearingAccount, clearingIntent, notHeld, dnc
    f += [""]  # algoStrategy
    f += [0, status, 0, 0]  # solicited, status, randomizeSize, randomizePrice
    f += [0]  # conditions
    f += [_UNSET, _UNSET, _UNSET, 0, 0, "", o.filled, _UNSET, 0, "", 0, 0, _UNSET,
          completed_time, completed_status]
    if server_version >= 170:
        f += [_UNSET, _UNSET, _UNSET, _UNSET, _UNSET]
    return f
