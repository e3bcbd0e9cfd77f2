"""Fuzzing the submit and replace paths (issue #15): 0 internal errors, 0 hostile orders at the
broker.

Two ways in. Hypothesis builds Order-like inputs - orders made without validation
(``model_construct``) from a mix of sane and hostile values - and gives them straight to
``Oms.submit`` (in memory, a fund with the default RiskEnvelope, the recording broker), and
replace-like inputs of working orders straight to ``Oms.replace``. Then 5,000 fuzzed messages
go over NATS to the running service's submit subject and 1,000 replaces of the orders they
left working to its replace subject, with the generators and the checks of
``bench/oms_fuzz.py`` (loaded from the repository, so that CI and the 100,000-message
benchmark fuzz the same way; its figures are in ``bench/RESULTS.md``). ``MTS_FUZZ_SEED``
replays a seed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mts1b_foundation import CommandReply, Order, ReplaceRequest, ReplyCode
from mts1b_oms.memstore import InMemoryStore
from mts1b_oms.oms import Oms
from mts1b_oms.testing import RecordingBroker

BENCH = Path(__file__).resolve().parents[2] / "bench" / "oms_fuzz.py"
MESSAGES = 5000
REPLACES = 1000


def _fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_oms_fuzz", BENCH)
    assert spec is not None and spec.loader is not None, BENCH
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz_module()
SYMBOLS = [*FUZZ.PRICES, "ZZZZ", "BRK.A", "aapl", "../etc/passwd", "A" * 300]
HOSTILE_NUMBERS = ["1E+308", "1E+100", "9" * 40, "1e999999", "1E-40", "١٢٣", "NaN", "-5",
                   "0", "999999999999999", "1000001", "0.5", "0.00001", 1.5, True, None]


def _number(name: str) -> st.SearchStrategy[Any]:
    """Sane decimals near the registry's grids and the limits, or hostile values."""
    sane = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(2_000_000), places=4,
                       allow_nan=False, allow_infinity=False)
    if name != "quantity":
        sane = st.sampled_from(list(FUZZ.PRICES.values())).flatmap(
            lambda ref: st.integers(-800, 800).map(lambda bp: ref * (1 + Decimal(bp) / 10_000)))
    return st.one_of(sane, st.integers(1, 3).map(Decimal), st.sampled_from(HOSTILE_NUMBERS))


@st.composite
def order_like(draw: st.DrawFn) -> Order:
    symbol = draw(st.sampled_from(SYMBOLS))
    registered = symbol in FUZZ.PRICES
    instrument: Any = (FUZZ.registry()[symbol].instrument if registered
                       else FUZZ.registry()["AAPL"].instrument)
    if draw(st.booleans()):  # the instrument as the client dresses it
        change = draw(st.sampled_from(["symbol", "lot_size", "tick_size", "min_quantity",
                                       "currency", "sector", "keep", "keep"]))
        value = {"symbol": symbol, "lot_size": draw(_number("quantity")),
                 "tick_size": draw(_number("quantity")),
                 "min_quantity": draw(_number("quantity")), "currency": "EUR",
                 "sector": draw(st.sampled_from(["Tech", "a\x00b", "\ud800"]))}.get(change)
        if change != "keep":
            instrument = instrument.model_construct(**{**instrument.__dict__, change: value})
    elif not registered:
        instrument = instrument.model_construct(**{**instrument.__dict__, "symbol": symbol})
    order_type = draw(st.sampled_from(["market", "limit", "stop", "stop_limit", "bogus"]))
    fields: dict[str, Any] = {
        "idempotency_key": f"k{draw(st.integers(0, 6))}",
        "fund_id": draw(st.sampled_from([FUZZ.FUND_ID, FUZZ.FUND_ID, "other", None, ["x"]])),
        "strategy_id": draw(st.sampled_from(["s1", "s2", "", None])),
        "instrument": instrument,
        "side": draw(st.sampled_from(["buy", "sell", "short", None])),
        "quantity": draw(_number("quantity")),
        "order_type": order_type,
        "limit_price": draw(_number("limit_price")) if order_type in {"limit", "stop_limit"}
        else None,
        "stop_price": draw(_number("stop_price")) if order_type in {"stop", "stop_limit"}
        else None,
        "order_id": draw(st.sampled_from([None, None, None, "ord-mine"])),
        "tags": draw(st.sampled_from([{}, {"a": 1}, {"f": 1.5}, None])),
    }
    return Order.model_construct(**fields)


async def _fuzz_oms(broker: RecordingBroker) -> Oms:
    """A started in-memory OMS with the fuzz benchmark's fund, registry and prices."""
    oms = Oms(InMemoryStore(), broker, [FUZZ.fund()], instruments=FUZZ.registry(),
              sweep_poll_seconds=None)
    for symbol, price in FUZZ.PRICES.items():
        oms.set_price(symbol, price)
    await oms.start()
    return oms


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(order_like(), min_size=1, max_size=12))
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic: dumping unvalidated fields
def test_order_like_inputs_straight_into_submit(orders: list[Order]) -> None:
    """Every answer is a coded reply, none ``INTERNAL_ERROR``, nothing raises, and every
    order that reached the broker is sane by the benchmark's independent check."""

    async def scenario() -> tuple[list[CommandReply], RecordingBroker]:
        broker = RecordingBroker()
        oms = await _fuzz_oms(broker)
        try:
            replies = [await oms.submit(o) for o in orders]
        finally:
            await oms.stop()
        return replies, broker

    replies, broker = asyncio.run(scenario())
    for reply in replies:
        assert isinstance(reply, CommandReply)
        assert reply.ok or reply.code not in {None, ReplyCode.INTERNAL_ERROR}, reply
    sent = list(broker.orders.values())
    assert [r for o in sent for r in FUZZ.hostile(o)] == []
    assert FUZZ.position_breaches(sent) == []


@st.composite
def replace_like(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a replace made without validation: an order id (``0``-``2``: the working
    orders of the scenario below), numbers - whole quantities up to beyond the notional and
    position limits, prices on the 0.25 grid near a reference, or :func:`_number`'s - or none
    of them; a stop price rarely (none of the orders takes one)."""
    fields: dict[str, Any] = {"order_id": draw(st.sampled_from([0, 1, 2, 2, "ord-nope", "",
                                                                None]))}
    for name in ("quantity", "limit_price", "stop_price"):
        if draw(st.integers(0, 7 if name == "stop_price" else 1)) == 0:
            sane = st.integers(1, 600_000).map(Decimal) if name == "quantity" else (
                st.sampled_from(list(FUZZ.PRICES.values())).flatmap(
                    lambda ref: st.integers(-30, 30).map(lambda n: ref + Decimal(n) / 4)))
            fields[name] = draw(st.one_of(sane, _number(name)))
    return fields


WORKING = [  # a market buy, a limit sell, a limit buy of a future (multiplier 50, tick 0.25)
    {"symbol": "AAPL", "side": "buy", "quantity": "10", "order_type": "market"},
    {"symbol": "MSFT", "side": "sell", "quantity": "5", "order_type": "limit",
     "limit_price": "400.00"},
    {"symbol": "ESZ6", "side": "buy", "quantity": "1", "order_type": "limit",
     "limit_price": "1000.00"},
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(replace_like(), min_size=1, max_size=12))
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic: dumping unvalidated fields
def test_replace_like_inputs_straight_into_replace(replaces: list[dict[str, Any]]) -> None:
    """Replaces of three working orders, made without validation: every answer is a coded
    reply, none ``INTERNAL_ERROR``, nothing raises, and every version of every order the
    broker worked - as submitted and after each replace - is sane by the benchmark's
    independent check, the orders together within the position cap."""

    async def scenario() -> tuple[list[CommandReply], RecordingBroker]:
        broker = RecordingBroker()
        oms = await _fuzz_oms(broker)
        try:
            ids = []
            for i, w in enumerate(WORKING):
                terms = {k: v for k, v in w.items() if k != "symbol"}
                reply = await oms.submit(Order.model_validate({
                    "idempotency_key": f"w{i}", "fund_id": FUZZ.FUND_ID, "strategy_id": "s1",
                    "instrument": FUZZ.registry()[w["symbol"]].instrument, **terms}))
                assert reply.ok, reply
                ids.append(reply.order_id)
            out = []
            for fields in replaces:
                ref = fields["order_id"]
                request = ReplaceRequest.model_construct(**{
                    **fields, "order_id": ids[ref] if isinstance(ref, int) else ref})
                out.append(await oms.replace(request))
        finally:
            await oms.stop()
        return out, broker

    replies, broker = asyncio.run(scenario())
    for reply in replies:
        assert isinstance(reply, CommandReply)
        assert reply.ok or reply.code not in {None, ReplyCode.INTERNAL_ERROR}, reply
    worked = [*broker.orders.values(), *broker.replaced]
    assert [r for o in worked for r in FUZZ.hostile(o)] == []
    assert FUZZ.position_breaches(list(broker.orders.values())) == []


@pytest.mark.integration
async def test_fuzzed_messages_over_nats_are_all_coded_and_none_hostile_reaches_the_broker(
        ) -> None:
    seed = int(os.environ.get("MTS_FUZZ_SEED", "15"))
    try:
        report = await FUZZ.run(MESSAGES, seed, replaces=REPLACES, timeout=60)
    except OSError as exc:  # pragma: no cover - no server to fuzz
        pytest.skip(f"NATS or PostgreSQL not reachable: {exc}")
    summary = "\n".join([f"seed {seed}", *report.lines()])
    assert report.internal_errors == 0, summary
    assert report.hostile_at_venue == 0, summary
    assert report.problems == [], summary
    assert report.accepted > 0 and report.at_venue == report.accepted, summary
    assert report.replaced > 0 and report.replaced_at_venue == report.replaced, summary
