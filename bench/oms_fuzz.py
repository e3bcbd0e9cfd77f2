"""Fuzz the OMS service's submit subject over the real NATS, with PostgreSQL behind it.

    python bench/oms_fuzz.py                          # 100,000 messages, seed 15
    python bench/oms_fuzz.py --messages 5000 --seed 7
    python bench/oms_fuzz.py --messages 5000 --replaces 1000

The OMS service (``run_service``, the code behind ``mts mts1b-oms serve``) runs in this process
on a throw-away PostgreSQL schema and NATS namespace (both removed afterwards) with one fund
whose ``RiskEnvelope`` sets nothing - the finite defaults: 1,000,000 units, a notional of 10 %
of its target NAV, a position of 25 % of NAV, prices within 5 % of the reference. Its target
NAV, 1,000,000,000, puts the notional limit (100,000,000) below 1,000,000 units of every
symbol, so each limit binds somewhere, and keeps the position cap from closing the book to
sane orders early in a long run (nothing fills, so open orders pile up). Its instrument
registry holds five symbols (an equity with a dotted name, a crypto pair with lots of 0.0001, a
future with a multiplier of 50 and a 0.25 tick); its venue is the ``RecordingBroker``, which
writes every order it receives to a file. A seeded generator sends ``--messages``
payloads to ``mts.v1.oms.commands.submit`` by request/reply, 32 at a time. Kinds, by share:

=========== ===== ===========================================================================
valid        14 % a sane order of a registered symbol (market, or limit inside the collar)
repeat        8 % an earlier payload again, or its key with another quantity (a conflict)
numbers      18 % quantity or a price replaced: 1E+308, 1E+100, 40 nines, 1e999999, 1E-40,
                  "١٢٣", NaN, -5, 0, " 12 ", 12_000, 1.5, true, 10**40, 1E+15, null, ...
terms        22 % well-formed but insane: 999,999,999,999,999 or 1,000,001 units, a notional
                  above 10 % of NAV, half a share, off-lot and under-minimum crypto, off-tick
                  and outside-the-collar prices, unknown symbols (``ZZZZ``, ``BRK.A``,
                  ``aapl``), an instrument that differs from the registered one (lot, tick,
                  minimum, multiplier, currency, venue, kind), another fund, a set order_id
fields       12 % ``created_at`` in year 1 or 2201 or naive, ``schema_version`` "2" / 2.0 /
                  true / 3, floats in tags, 40 tags, extra, missing and null fields
types        10 % one field of the order or of its instrument replaced by a wrong type
junk         14 % random bytes, truncated JSON, arrays, scalars, deep nesting, a BOM
huge          2 % tags or a field of 100 KB up to 900 KB
=========== ===== ===========================================================================

Then ``--replaces`` replaces (default: a fifth of ``--messages``) go to
``mts.v1.oms.commands.replace``, 32 at a time, each naming an order the submits left working
(nothing fills, so every accepted order is), chosen by a second seeded generator. Kinds:

=========== ===== ===========================================================================
sane         30 % a quantity on the lot within the limits and/or a limit price on the tick
                  inside the collar
terms        40 % well-formed but insane: 1,000,001 or 999,999,999,999,999 units, a notional
                  above 10 % of NAV, the largest sane quantity (a few of those on one symbol
                  and side pass the position cap), off-lot and under-minimum quantities,
                  off-tick and outside-the-collar prices, a limit price for a market order, a
                  stop price, an unknown order id, no change at all
numbers      15 % quantity or a price replaced by one of the absurd numbers above
junk         15 % random bytes, truncated JSON, a wrong type for a field, no ``replace``
=========== ===== ===========================================================================

What is checked, and printed:

- ``internal errors`` must be 0: replies with code ``INTERNAL_ERROR`` or the bus's
  ``PLATFORM.BUS.HANDLER`` error, requests left without a reply, and ERROR lines logged by the
  OMS or the bus; every other answer is a coded reply (a decode failure is the bus's
  ``Mts-Error`` reply with the foundation's code);
- no reply's text holds internal detail (a traceback, an exception name of asyncpg, decimal or
  pydantic);
- ``hostile at the venue`` must be 0: every order the venue received, and each order again as
  every replace the venue took left it, is checked here, independently of the gates, against
  the registry (symbol, the very instrument, minimum, lot, maximum, tick) and the fund's
  default limits (quantity, notional, collar), and each symbol and side's orders, as the last
  replace left them, together against the position cap (nothing fills, the book starts flat);
- every replace answered ``ok`` is one the venue took, and no other.

``mts1b-oms/tests/test_oms_fuzz.py`` runs :func:`run` with 5,000 messages in CI; the figures
of the full run are in ``bench/RESULTS.md``. ``MTS_FUZZ_SEED`` replays a seed there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import random
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import nats.errors
from mts1b_foundation import (
    CommandReply,
    CryptoPair,
    Equity,
    FundConfig,
    Future,
    Order,
    ReplyCode,
    Side,
    ValidationFailed,
    parse_message,
)
from mts1b_oms.instruments import InstrumentRegistry, RegisteredInstrument
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.testing import drop_schema
from mts1b_platform.bus import ERROR_HEADER, Bus, BusSettings
from mts1b_platform.logging import configure_logging

SUBJECT = "mts.v1.oms.commands.submit"
REPLACE_SUBJECT = "mts.v1.oms.commands.replace"
FUND_ID = "fz"
NAV = Decimal(1_000_000_000)
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
KINDS = (("valid", 14), ("repeat", 8), ("numbers", 18), ("terms", 22), ("fields", 12),
         ("types", 10), ("junk", 14), ("huge", 2))
REPLACE_KINDS = (("sane", 30), ("terms", 40), ("numbers", 15), ("junk", 15))
INSTRUMENTS = (
    RegisteredInstrument(Equity(symbol="AAPL")),
    RegisteredInstrument(Equity(symbol="MSFT"), Decimal(5000)),
    RegisteredInstrument(Equity(symbol="BRK.B")),
    RegisteredInstrument(CryptoPair(symbol="BTC-USD", base="BTC", quote="USD",
                                    tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"),
                                    min_quantity=Decimal("0.0001"))),
    RegisteredInstrument(Future(symbol="ESZ6", root="ES", expiry=dt.date(2026, 12, 18),
                                multiplier=Decimal(50), tick_size=Decimal("0.25")), Decimal(20)),
)
PRICES = {"AAPL": Decimal("190.00"), "MSFT": Decimal("400.00"), "BRK.B": Decimal("450.00"),
          "BTC-USD": Decimal("60000.00"), "ESZ6": Decimal("1000.00")}
_NUMBERS: tuple[Any, ...] = (
    "1E+308", "1E+100", "9" * 40, "1e999999", "1E-40", "١٢٣", "NaN", "Infinity", "-5", "0",
    " 12 ", "12_000", 1.5, True, 10**40, "1E+15", "999999999999999.9999", "1E-13", None, [],
    "", "0x10", "1,5", "+", "--1")
_WRONG: tuple[Any, ...] = ([], {}, True, None, 1.5, -1, 10**40, "NaN", "", "../../etc/passwd",
                           "x" * 300, [1, 2], {"x": 1}, "\u0000", "a\u0000b", "\ud800",
                           "𝟙")
_LEAKS = ("Traceback", 'File "', "asyncpg", "InvalidOperation", "decimal.", "pydantic_core",
          "KeyError", "AttributeError")


def registry() -> InstrumentRegistry:
    return InstrumentRegistry(INSTRUMENTS)


def fund() -> FundConfig:
    """A fund that sets no limit: the RiskEnvelope's finite defaults apply."""
    return FundConfig(fund_id=FUND_ID, name="Fuzzed fund", target_nav_usd=NAV, broker="paper",
                      broker_account_id="fz-acc")


# --- the generator ------------------------------------------------------------------------------


def _instrument(symbol: str) -> dict[str, Any]:
    return registry()[symbol].instrument.model_dump(mode="json")


def _on_grid(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value() * step


def _valid(rng: random.Random, key: str) -> dict[str, Any]:
    """A sane order: lots of the registered lot size, within the default notional."""
    symbol = rng.choice(list(PRICES))
    entry = registry()[symbol]
    inst = entry.instrument
    ref, mult = PRICES[symbol], Decimal(getattr(inst, "multiplier", 1))
    most = (NAV / 10 / (ref * mult * Decimal("1.05")) / inst.lot_size).to_integral_value()
    fewest = (inst.min_quantity / inst.lot_size).to_integral_value(ROUND_CEILING)
    lots = rng.randint(int(fewest), max(int(fewest), min(int(most), 40)))
    order: dict[str, Any] = {
        "idempotency_key": key, "fund_id": FUND_ID, "strategy_id": rng.choice(("s1", "s2")),
        "instrument": _instrument(symbol), "side": rng.choice(("buy", "sell")),
        "quantity": str(inst.lot_size * lots)}
    if rng.random() < 0.5:
        price = _on_grid(ref * (1 + Decimal(rng.randint(-400, 400)) / 10_000), inst.tick_size)
        order.update(order_type="limit", limit_price=str(price),
                     time_in_force=rng.choice(("DAY", "GTC", "IOC")))
    return order


def _terms(rng: random.Random, order: dict[str, Any]) -> None:
    """Make a valid order well-formed but insane (outside the limits or the registry)."""
    symbol = order["instrument"]["symbol"]
    ref = PRICES[symbol]
    choice = rng.randrange(17)
    if choice == 0:
        order["quantity"] = rng.choice(("999999999999999", "1000001", "1000000", "500000"))
    elif choice == 1:  # a notional above 10 % of NAV
        order["quantity"] = str((NAV / 10 / ref).to_integral_value() + rng.randint(1, 10**6))
        if symbol == "BTC-USD":
            order["quantity"] = str(Decimal(rng.randint(2, 500)))
    elif choice == 2:
        order["quantity"] = rng.choice(("0.5", "1.5", "0.00015", "0.00001", "10.0000001"))
    elif choice in (3, 4):  # off the tick, or outside the collar
        price = ref + Decimal(rng.choice(("0.005", "0.1", "0.001"))) if choice == 3 else (
            _on_grid(ref * Decimal(rng.choice(("1.06", "0.9", "2", "0.5"))), Decimal("0.25")))
        order.update(order_type="limit", limit_price=str(price))
    elif choice == 5:
        order.update(order_type="stop", stop_price=str(ref * 3))
    elif choice in (6, 7):  # unknown symbols: valid names that are not registered, or are not
        symbol = rng.choice(("ZZZZ", "BRK.A", "aapl", "EURUSD=X", "AAPL.", "../etc/passwd",
                             "AAPL\n", "X;DROP TABLE orders;--", "A" * 300))
        order["instrument"] = {**_instrument("AAPL"), "symbol": symbol}
    elif choice in (8, 9, 10, 11):  # the instrument differs from the registered one
        inst = order["instrument"]
        name, value = rng.choice((("lot_size", "0.0001"), ("min_quantity", "0.0001"),
                                  ("tick_size", "0.0001"), ("currency", "EUR"),
                                  ("venue", "XNAS"), ("lot_size", "100")))
        if inst["asset_class"] == "future" and rng.random() < 0.5:
            name, value = "multiplier", rng.choice(("1", "0.5", "5"))
        inst[name] = value
        if rng.random() < 0.2:
            order["instrument"] = {**inst, "asset_class": "etf"}
            order["instrument"].pop("multiplier", None)
            for extra in ("root", "expiry", "base", "quote"):
                order["instrument"].pop(extra, None)
    elif choice == 12:
        order["fund_id"] = rng.choice(("other", "FZ", "fz ", "*", "fz/../x"))
    elif choice == 13:
        order["order_id"] = rng.choice(("ord-mine", "ord-1"))
    elif choice == 14:
        order["strategy_id"] = rng.choice(("x" * 129, "", "../s", "s 1"))
    elif choice == 15:
        order.update(order_type="market_on_close", time_in_force="GTC")
    else:
        order["side"] = "sell"
        order["quantity"] = "999999999999999"


def _fields(rng: random.Random, order: dict[str, Any], envelope: dict[str, Any]) -> None:
    choice = rng.randrange(9)
    if choice == 0:
        order["created_at"] = rng.choice(("0001-01-01T00:00:00Z", "2201-01-01T00:00:00Z",
                                          "2026-01-01T00:00:00", "yesterday", 0))
    elif choice == 1:
        envelope["schema_version"] = rng.choice(("2", 2.0, True, 3, 0, None, -1))
    elif choice == 2:
        order["schema_version"] = rng.choice(("2", 2.0, True, 3, 99))
    elif choice == 3:
        order["tags"] = rng.choice(({"x": 1.5}, {f"t{i}": i for i in range(40)},
                                    {"bad key": 1}, {"k": 2**70}, {"k": "\x00"}, []))
    elif choice == 4:
        order[f"x_{rng.randint(0, 99)}"] = rng.choice(_WRONG)
    elif choice == 5:
        del order[rng.choice(("instrument", "side", "quantity", "fund_id", "idempotency_key"))]
    elif choice == 6:
        order[rng.choice(("side", "quantity", "instrument", "strategy_id"))] = None
    elif choice == 7:
        order["instrument"]["asset_class"] = rng.choice(("bond", "", None, "EQUITY"))
    else:
        order.update(time_in_force="GTD")  # without expire_at


def _payload(kind: str, rng: random.Random, i: int, seed: int,
             earlier: list[tuple[dict[str, Any], bytes]]) -> bytes:
    key = f"fz{seed}-{i}"
    order = _valid(rng, key)
    envelope: dict[str, Any] = {"schema_version": 2}
    if kind == "valid":
        data = json.dumps({**envelope, "order": order}).encode()
        earlier.append((order, data))
        return data
    if kind == "repeat" and earlier:
        first, data = rng.choice(earlier[-200:])
        if rng.random() < 0.5:
            return data
        other = dict(first)
        other["quantity"] = str(Decimal(first["quantity"]) * 2)
        return json.dumps({**envelope, "order": other}).encode()
    if kind == "numbers":
        name = rng.choice(("quantity", "limit_price", "stop_price"))
        if name == "limit_price":
            order["order_type"] = "limit"
        elif name == "stop_price":
            order.update(order_type="stop", limit_price=None)
        order[name] = rng.choice(_NUMBERS)
        if rng.random() < 0.2:  # the instrument's own numbers
            order["instrument"][rng.choice(("tick_size", "lot_size", "min_quantity"))] = (
                rng.choice(_NUMBERS))
    elif kind == "terms":
        _terms(rng, order)
    elif kind == "fields":
        _fields(rng, order, envelope)
    elif kind == "types":
        target = order["instrument"] if rng.random() < 0.3 else order
        target[rng.choice(list(target))] = rng.choice(_WRONG)
    elif kind == "junk":
        text = json.dumps({**envelope, "order": order}).encode()
        return rng.choice((
            rng.randbytes(rng.randint(0, 2048)), text[:rng.randint(0, len(text) - 1)],
            json.dumps([order]).encode(), json.dumps(rng.choice((1, "x", None, 1.5))).encode(),
            b"\xef\xbb\xbf" + text, b"[" * 3000 + b"]" * 3000,
            b'{"order":' * 500 + b"1" + b"}" * 500, b'{"order": "\\ud800"}', b"",
            text.replace(b'"quantity"', b'"quantity": "1", "quantity"')))
    elif kind == "huge":
        size = rng.choice((100_000, rng.randint(100_000, 900_000)))
        if rng.random() < 0.5:
            order["tags"] = {"note": "x" * size}
        else:
            order["strategy_id"] = "s" * size
    return json.dumps({**envelope, "order": order}, default=str).encode()


def generate(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` fuzzed ``(kind, payload)`` for the submit subject."""
    rng = random.Random(seed)
    names = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    earlier: list[tuple[dict[str, Any], bytes]] = []
    out = []
    for i in range(n):
        kind = rng.choices(names, weights)[0]
        out.append((kind, _payload(kind, rng, i, seed, earlier)))
    return out


def _replace_terms(rng: random.Random, order: dict[str, Any], terms: dict[str, Any]) -> None:
    """Well-formed but insane new terms for a working ``order``."""
    symbol = order["instrument"]["symbol"]
    inst = registry()[symbol].instrument
    ref, mult = PRICES[symbol], Decimal(getattr(inst, "multiplier", 1))
    choice = rng.randrange(10)
    if choice == 0:
        terms["quantity"] = rng.choice(("999999999999999", "1000001"))
    elif choice == 1:  # a notional above 10 % of NAV
        terms["quantity"] = str((NAV / 10 / (ref * mult) / inst.lot_size).to_integral_value()
                                * inst.lot_size + inst.lot_size * rng.randint(1, 1000))
    elif choice == 2:  # the most a sane order may be: a few of them fill the position cap
        terms["quantity"] = str((NAV / 10 / (ref * mult * Decimal("1.05")) / inst.lot_size
                                 ).to_integral_value() * inst.lot_size)
    elif choice == 3:
        terms["quantity"] = rng.choice(("0.5", "1.5", "0.00015", "0.00001", "10.0000001"))
    elif choice in (4, 5):  # off the tick, or outside the collar (also for a market order)
        terms["limit_price"] = str(ref + Decimal(rng.choice(("0.005", "0.1", "0.001")))
                                   if choice == 4 else _on_grid(
            ref * Decimal(rng.choice(("1.06", "0.9", "2", "0.5"))), Decimal("0.25")))
    elif choice == 6:
        terms["stop_price"] = str(ref)
    elif choice == 7:
        terms["order_id"] = rng.choice(("ord-nope", "ord-01a24a28-0000-7000-8000-000000000000"))
        terms["quantity"] = "1"
    elif choice == 8:
        for name in ("quantity", "limit_price", "stop_price"):
            terms.pop(name, None)
    else:
        terms.update(quantity=str(inst.lot_size), limit_price=str(ref * 3))


def _replace_payload(kind: str, rng: random.Random, working: list[tuple[str, dict[str, Any]]]
                     ) -> bytes:
    order_id, order = rng.choice(working)
    symbol = order["instrument"]["symbol"]
    inst = registry()[symbol].instrument
    ref = PRICES[symbol]
    terms: dict[str, Any] = {"order_id": order_id}
    if kind in ("sane", "numbers") or rng.random() < 0.5:
        terms["quantity"] = str(inst.lot_size * rng.randint(
            int((inst.min_quantity / inst.lot_size).to_integral_value(ROUND_CEILING)), 40))
    if order.get("order_type") == "limit" and (rng.random() < 0.5 or "quantity" not in terms):
        terms["limit_price"] = str(_on_grid(ref * (1 + Decimal(rng.randint(-400, 400)) / 10_000),
                                            inst.tick_size))
    if kind == "terms":
        _replace_terms(rng, order, terms)
    elif kind == "numbers":
        terms[rng.choice(("quantity", "limit_price", "stop_price"))] = rng.choice(_NUMBERS)
    elif kind == "junk":
        text = json.dumps({"schema_version": 2, "replace": terms}).encode()
        return rng.choice((
            rng.randbytes(rng.randint(0, 512)), text[:rng.randint(0, len(text) - 1)],
            json.dumps({"schema_version": 2, "order": terms}).encode(),
            json.dumps({"schema_version": 2, "replace": {**terms, "order_id": rng.choice(
                _WRONG)}}, default=str).encode(),
            json.dumps({"schema_version": 2, "replace": {
                **terms, rng.choice(("quantity", "limit_price")): rng.choice(_WRONG)}},
                default=str).encode(),
            json.dumps([terms]).encode()))
    return json.dumps({"schema_version": 2, "replace": terms}, default=str).encode()


def generate_replaces(n: int, seed: int, working: list[tuple[str, dict[str, Any]]]
                      ) -> list[tuple[str, bytes]]:
    """``n`` fuzzed ``(kind, payload)`` for the replace subject, each naming one of the
    ``working`` orders (order id, the order as submitted)."""
    if not working:
        return []
    rng = random.Random(f"replaces-{seed}")
    working = sorted(working, key=lambda w: str(w[1]["idempotency_key"]))
    names = [k for k, _ in REPLACE_KINDS]
    weights = [w for _, w in REPLACE_KINDS]
    out = []
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        out.append((kind, _replace_payload(kind, rng, working)))
    return out


# --- the checks ---------------------------------------------------------------------------------


def hostile(order: Order) -> list[str]:
    """Why an order at the venue breaks the registry or the fund's default limits (empty: it
    is sane). Written apart from the gates, so that it checks them."""
    symbol = order.instrument.symbol
    entry = registry().get(symbol)
    if entry is None:
        return [f"{symbol!r} is not registered"]
    inst, q = entry.instrument, order.quantity
    out = []
    if order.instrument.model_dump(exclude={"sector"}) != inst.model_dump(exclude={"sector"}):
        out.append("its instrument is not the registered one")
    if q < inst.min_quantity:
        out.append(f"quantity {q} below the minimum {inst.min_quantity}")
    if (q / inst.lot_size) % 1:
        out.append(f"quantity {q} off the lot {inst.lot_size}")
    if entry.max_quantity is not None and q > entry.max_quantity:
        out.append(f"quantity {q} above the registry's {entry.max_quantity}")
    if q > 1_000_000:
        out.append(f"quantity {q} above 1,000,000")
    ref = PRICES[symbol]
    mult = Decimal(getattr(inst, "multiplier", 1))
    for px in (order.limit_price, order.stop_price):
        if px is not None and ((px / inst.tick_size) % 1 or abs(px - ref) / ref > Decimal(
                "0.05")):
            out.append(f"price {px} off the tick {inst.tick_size} or outside the collar")
    notional = q * (order.limit_price or ref) * mult
    if notional > NAV / 10:
        out.append(f"notional {notional} above 10 % of NAV")
    if order.fund_id != FUND_ID or not (order.order_id or "").startswith("ord-"):
        out.append(f"fund {order.fund_id!r}, order_id {order.order_id!r}")
    return out


def position_breaches(orders: list[Order]) -> list[str]:
    """Orders of one symbol and side, together, beyond 25 % of NAV. The gate values them all
    at the newest order's price, so the check uses the lowest price of the group."""
    groups: dict[tuple[str, Side], list[Order]] = defaultdict(list)
    for o in orders:
        groups[(o.instrument.symbol, o.side)].append(o)
    out = []
    for (symbol, side), group in groups.items():
        entry = registry().get(symbol)
        mult = Decimal(getattr(entry.instrument, "multiplier", 1)) if entry else Decimal(1)
        low = min(o.limit_price or PRICES.get(symbol, Decimal(0)) for o in group)
        value = sum((o.quantity for o in group), Decimal(0)) * low * mult
        if value > NAV / 4:
            out.append(f"{symbol} {side.value}: {value} in open orders, above 25 % of NAV")
    return out


@dataclass
class Tally:
    """The answers to one subject's messages."""

    ok: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    undecodable: Counter[str] = field(default_factory=Counter)

    def lines(self, what: str) -> list[str]:
        refused = ", ".join(f"{k} {v:,}" for k, v in self.refused.most_common())
        undecodable = ", ".join(f"{k} {v:,}" for k, v in self.undecodable.most_common())
        return [f"{what} {self.ok:,}; duplicates {self.duplicates:,}",
                f"refused with a code: {refused}",
                f"refused undecoded (Mts-Error): {undecodable}"]


@dataclass
class Report:
    """What a run found; ``ok`` when nothing went wrong."""

    messages: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    submits: Tally = field(default_factory=Tally)
    replaces: int = 0
    replace_kinds: dict[str, int] = field(default_factory=dict)
    replace_replies: Tally = field(default_factory=Tally)
    internal_errors: int = 0
    at_venue: int = 0
    replaced_at_venue: int = 0
    hostile_at_venue: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    replace_seconds: float = 0.0

    @property
    def accepted(self) -> int:
        return self.submits.ok

    @property
    def duplicates(self) -> int:
        return self.submits.duplicates

    @property
    def replaced(self) -> int:
        """Replaces answered ``ok``."""
        return self.replace_replies.ok

    @property
    def ok(self) -> bool:
        return not self.internal_errors and not self.hostile_at_venue and not self.problems

    def lines(self) -> list[str]:
        rate = self.messages / self.seconds if self.seconds else 0.0
        kinds = ", ".join(f"{k} {v:,}" for k, v in self.by_kind.items())
        replace_rate = self.replaces / self.replace_seconds if self.replace_seconds else 0.0
        replace_kinds = ", ".join(f"{k} {v:,}" for k, v in self.replace_kinds.items())
        return [
            f"messages {self.messages:,} ({kinds})",
            *self.submits.lines("accepted"),
            f"{self.seconds:.1f} s ({rate:,.0f} messages/s)",
            f"replaces {self.replaces:,} ({replace_kinds})",
            *self.replace_replies.lines("replaced"),
            f"{self.replace_seconds:.1f} s ({replace_rate:,.0f} replaces/s)",
            f"internal errors {self.internal_errors}; orders at the venue {self.at_venue:,}, "
            f"replaces at the venue {self.replaced_at_venue:,}, hostile "
            f"{self.hostile_at_venue}",
            *(f"PROBLEM: {p}" for p in self.problems[:20]),
        ]


class _Errors(logging.Handler):
    """ERROR lines of the OMS and the bus: each is an internal error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _send(bus: Bus, subject: str, payloads: list[tuple[str, bytes]], report: Report,
                tally: Tally, concurrency: int, timeout: float,
                working: list[tuple[str, dict[str, Any]]] | None = None) -> None:
    """Send ``payloads`` to ``subject`` and count the answers in ``tally``; with ``working``,
    collect each order an ``ok`` answer accepted (not a duplicate): its id and the order as
    sent."""
    queue = list(reversed(payloads))

    async def worker() -> None:
        while queue:
            _kind, data = queue.pop()
            try:
                msg = await bus.nc.request(bus.wire_subject(subject), data, timeout=timeout)
            except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
                report.internal_errors += 1
                report.problems.append(f"no reply to {data[:80]!r}")
                continue
            text = msg.data.decode("utf-8", "replace")
            if any(leak in text for leak in _LEAKS):
                report.problems.append(f"internal detail in a reply: {text[:300]}")
            if msg.headers and ERROR_HEADER in msg.headers:
                code = msg.headers[ERROR_HEADER]
                tally.undecodable[code] += 1
                if code == "PLATFORM.BUS.HANDLER":
                    report.internal_errors += 1
                    report.problems.append(f"handler failed on {data[:80]!r}")
                continue
            try:
                reply = parse_message(CommandReply, msg.data)
            except ValidationFailed:
                report.internal_errors += 1
                report.problems.append(f"an unreadable reply: {text[:200]}")
                continue
            if reply.code is ReplyCode.INTERNAL_ERROR:
                report.internal_errors += 1
                report.problems.append(f"INTERNAL_ERROR: {reply.message}")
            elif reply.ok and reply.duplicate:
                tally.duplicates += 1
            elif reply.ok:
                tally.ok += 1
                if working is not None and reply.order_id:
                    working.append((reply.order_id, json.loads(data)["order"]))
            else:
                tally.refused[reply.code.value if reply.code else "?"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run(messages: int, seed: int, *, replaces: int | None = None, concurrency: int = 32,
              timeout: float = 30.0, dsn: str = DSN, url: str = URL) -> Report:
    """Start the service, send ``messages`` fuzzed submits, then ``replaces`` fuzzed replaces
    of the orders they left working (default: a fifth of ``messages``), stop it, check
    everything."""
    report = Report(messages=messages)
    replaces = messages // 5 if replaces is None else replaces
    working: list[tuple[str, dict[str, Any]]] = []
    payloads = generate(messages, seed)
    report.by_kind = dict(Counter(kind for kind, _ in payloads))
    namespace = f"ofz{uuid.uuid4().hex[:8]}"
    schema = f"oms_fz_{namespace}"
    errors = _Errors()
    watched = [logging.getLogger(n) for n in ("mts1b_oms", "mts1b_platform.bus")]
    with tempfile.TemporaryDirectory(prefix="oms-fuzz-") as tmp:
        venue = Path(tmp) / "venue.jsonl"
        opts = ServeOptions(dsn=dsn, funds=[fund()], instruments=registry(),
                            broker="mts1b_oms.testing:RecordingBroker",
                            broker_args={"path": str(venue)}, schema=schema,
                            namespace=namespace, nats_url=url, prices=PRICES)
        bus = await Bus.connect(BusSettings(url=url, namespace=namespace, connect_timeout=5))
        stop, ready = asyncio.Event(), asyncio.Event()
        service = asyncio.get_running_loop().create_task(run_service(opts, ready=ready,
                                                                     stop=stop))
        for log in watched:
            log.addHandler(errors)
        try:
            await asyncio.wait({service, asyncio.ensure_future(ready.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
            if service.done():
                await service  # it failed to start: say why
            started = time.perf_counter()
            await _send(bus, SUBJECT, payloads, report, report.submits, concurrency, timeout,
                        working)
            report.seconds = time.perf_counter() - started
            changes = generate_replaces(replaces, seed, working)
            report.replaces = len(changes)
            report.replace_kinds = dict(Counter(kind for kind, _ in changes))
            started = time.perf_counter()
            await _send(bus, REPLACE_SUBJECT, changes, report, report.replace_replies,
                        concurrency, timeout)
            report.replace_seconds = time.perf_counter() - started
        finally:
            stop.set()
            await asyncio.wait_for(service, 120)
            for log in watched:
                log.removeHandler(errors)
            await bus.delete_streams()
            await bus.drain()
            await drop_schema(dsn, schema)
        # the venue's record: each new order, and the order again after each replace it took
        records = ([json.loads(line) for line in venue.read_text().splitlines()]
                   if venue.exists() else [])
    report.internal_errors += len(errors.records)
    report.problems += [f"logged: {r.getMessage()}" for r in errors.records]
    last: dict[str, Order] = {}  # each order as the last replace left it
    for rec in records:
        order_id = rec.get("replaced") or rec["order_id"]
        try:
            o = Order.model_validate(rec["order"])
        except ValueError as exc:  # the venue was sent terms that make no valid order
            report.hostile_at_venue += 1
            report.problems.append(f"at the venue: {order_id} is no valid order: "
                                   f"{str(exc)[:200]}")
            continue
        last[order_id] = o
        reasons = hostile(o)
        if reasons:
            report.hostile_at_venue += 1
            report.problems.append(f"at the venue: {o.order_id} {o.instrument.symbol} "
                                   f"{o.quantity}: {'; '.join(reasons)}")
    report.at_venue = sum(1 for rec in records if "replaced" not in rec)
    report.replaced_at_venue = len(records) - report.at_venue
    if report.replaced_at_venue != report.replaced:
        report.problems.append(f"{report.replaced:,} replaces answered ok, "
                               f"{report.replaced_at_venue:,} taken at the venue")
    orders = list(last.values())
    breaches = position_breaches(orders)
    report.hostile_at_venue += len(breaches)
    report.problems += breaches
    return report


def _loadavg() -> str:
    path = Path("/proc/loadavg")
    return path.read_text().strip() if path.exists() else "n/a"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--replaces", type=int, default=None,
                        help="replaces after the submits (default: a fifth of --messages)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    # The OMS logs each denial at INFO and the bus each dead letter at WARNING; the run
    # counts ERROR lines itself.
    configure_logging("oms-fuzz", level="ERROR")
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}; "
          f"{os.cpu_count()} cores; loadavg {_loadavg()}")
    report = await run(args.messages, args.seed, replaces=args.replaces,
                       concurrency=args.concurrency)
    for line in report.lines():
        print(line)
    print(f"loadavg after: {_loadavg()}")
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
