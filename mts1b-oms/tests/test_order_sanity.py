"""Order sanity (issue #15, failure 4): the instrument registry, finite default limits, and an
``Oms.submit`` that never raises.

Reproduced before: a fund with the default ``RiskEnvelope`` (every limit ``None``) sent 1E+308,
1E+100 and 40-nines share market orders to the broker; lot size and minimum quantity were never
checked (1E-40 shares filled), and where they were, they came from the ``Instrument`` inside the
client's own order; ``Oms.submit`` raised. Each is a test here. The wire's numeric domain
(foundation) refuses the absurd numbers; the registry and the default limits refuse the
well-formed but insane ones.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mts1b_foundation import (
    CryptoPair,
    Equity,
    FundConfig,
    Future,
    Order,
    OrderType,
    ReplyCode,
    RiskEnvelope,
    Side,
)
from mts1b_oms.gates import GateContext, GatePipeline
from mts1b_oms.instruments import InstrumentRegistry, RegisteredInstrument, RegistryError
from mts1b_oms.oms import _unstorable_text
from mts1b_oms.orderstore import OrderStore
from mts1b_oms.testing import RecordingBroker, make_fund, make_registry
from mts1b_oms.testing import make_order as order

if TYPE_CHECKING:
    from conftest import MakeOms

D = Decimal
NOW = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)
ES = Future(symbol="ESZ6", root="ES", expiry=dt.date(2026, 12, 18), multiplier=D(50),
            tick_size=D("0.25"))
BTC = CryptoPair(symbol="BTC-USD", base="BTC", quote="USD", tick_size=D("0.01"),
                 lot_size=D("0.0001"), min_quantity=D("0.0001"))
REGISTRY = InstrumentRegistry([Equity(symbol="AAPL"), RegisteredInstrument(ES, D(20)), BTC])


def default_fund() -> FundConfig:
    """A fund that sets no limit at all: ``RiskEnvelope()``."""
    return FundConfig(fund_id="f1", name="Default fund", target_nav_usd=D(1_000_000),
                      broker="paper", broker_account_id="acc1")


def code(o: Order, fund: FundConfig | None = None, **kw: object) -> ReplyCode | None:
    ctx = GateContext(fund=fund or make_fund(), now=NOW, nav=D(1_000_000),
                      prices={"AAPL": D(100), "ESZ6": D(5000), "BTC-USD": D(60_000)},
                      instruments=REGISTRY)
    for k, v in kw.items():
        setattr(ctx, k, v)
    d = GatePipeline().evaluate(o, ctx).denial
    return None if d is None else d.code


def of(instrument: object, qty: str, **kw: object) -> Order:
    return Order(idempotency_key="k", fund_id="f1", strategy_id="s1", instrument=instrument,
                 side=Side.BUY, quantity=D(qty), **kw)


# --- the registry's formats -------------------------------------------------------------------


def test_a_json_registry_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "instruments.json"
    path.write_text(REGISTRY.to_json())
    loaded = InstrumentRegistry.load(path)
    assert dict(loaded) == dict(REGISTRY)
    assert loaded["ESZ6"].max_quantity == D(20) and loaded["AAPL"].max_quantity is None


def test_rebalance_orders_carry_the_registered_instruments() -> None:
    from mts1b_foundation import TargetPortfolio
    from mts1b_oms.rebalance import rebalance

    target = TargetPortfolio(fund_id="f1", as_of=NOW, weights={"ESZ6": D("0.5")})
    [o] = rebalance(target, fund_id="f1", positions={}, prices={"ESZ6": D(5000)},
                    nav=D(1_000_000), instruments=REGISTRY.instruments())
    assert o.instrument == ES and o.quantity == D(2)  # 500,000 / (5,000 x multiplier 50)
    assert code(o, make_fund(), prices={"ESZ6": D(5000)}) is None  # no INSTRUMENT_MISMATCH


def test_a_datalake_symbols_export_is_read_as_csv(tmp_path: Path) -> None:
    """The datalake's symbol table as exported from its DuckDB view: its descriptive columns
    are ignored, empty cells take the kind's defaults, Yahoo-style pairs are split."""
    export = tmp_path / "symbols.csv"
    export.write_text(
        "symbol,asset_class,sector,name,source,first_date,last_date,lot_size,max_quantity\n"
        "AAPL,equity,Technology,Apple,csv,2020-01-02,2024-12-31,,5000\n"
        "BTC-USD,crypto,,,yf,2014-09-17,2024-12-31,0.0001,\n"
        "EURUSD=X,fx,,,yf,2003-12-01,2024-12-31,1000,\n")
    reg = InstrumentRegistry.load(export)
    assert reg["AAPL"] == RegisteredInstrument(Equity(symbol="AAPL"), D(5000))
    btc = reg["BTC-USD"].instrument
    assert isinstance(btc, CryptoPair) and (btc.base, btc.quote, btc.lot_size) == (
        "BTC", "USD", D("0.0001"))
    eur = reg["EURUSD=X"].instrument
    assert (eur.asset_class.value, eur.currency, eur.lot_size) == ("fx", "USD", D(1000))
    overrides = tmp_path / "mine.json"  # a hand-written file after the export wins
    overrides.write_text(json.dumps([{"asset_class": "equity", "symbol": "AAPL",
                                      "lot_size": "10"}]))
    both = InstrumentRegistry.load([export, overrides])
    assert both["AAPL"].instrument.lot_size == D(10) and both["AAPL"].max_quantity is None
    assert len(both) == 3


@pytest.mark.parametrize(("content", "says"), [
    ('[{"asset_class": "equity", "symbol": "AAPL", "lot_size": "1E-40"}]',
     "entry 0 (AAPL): equity.lot_size"),
    ('[{"asset_class": "equity", "symbol": "../etc/passwd"}]', "equity.symbol"),
    ('[{"asset_class": "bond", "symbol": "X"}]', "entry 0 (X)"),
    ('[{"asset_class": "equity", "symbol": "A", "max_quantity": "0"}]', "max_quantity"),
    ('[{"asset_class": "equity", "symbol": "A"}, {"asset_class": "etf", "symbol": "A"}]',
     "'A' is registered twice"),
    ('{"instruments": 5}', "expected a list"),
    ("not json", "is not JSON"),
])
def test_a_bad_registry_is_refused_naming_the_entry(tmp_path: Path, content: str,
                                                    says: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RegistryError, match=says.replace("(", r"\(").replace(")", r"\)")):
        InstrumentRegistry.load(path)


def test_a_csv_without_symbol_or_asset_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("ticker,kind\nAAPL,equity\n")
    with pytest.raises(RegistryError, match="the header lacks asset_class, symbol"):
        InstrumentRegistry.load(path)
    with pytest.raises(RegistryError, match="cannot read"):
        InstrumentRegistry.load(tmp_path / "missing.json")


# --- the instrument gate ----------------------------------------------------------------------


def test_an_unknown_symbol_is_denied() -> None:
    assert code(order("k", symbol="MSFT")) is ReplyCode.INSTRUMENT_NOT_FOUND


def test_the_terms_come_from_the_registry_never_from_the_order() -> None:
    """The order's instrument claims AAPL trades in lots of 0.0001: denied, whatever it says."""
    claims = Equity(symbol="AAPL", lot_size=D("0.0001"), min_quantity=D("0.0001"))
    assert code(of(claims, "0.0001")) is ReplyCode.INSTRUMENT_MISMATCH
    d = GatePipeline().evaluate(of(claims, "1"), GateContext(
        fund=make_fund(), now=NOW, nav=D(1), instruments=REGISTRY)).denial
    assert d is not None and d.context["fields"] == "lot_size,min_quantity"
    assert code(of(ES.model_copy(update={"multiplier": D(1)}), "1")) is (
        ReplyCode.INSTRUMENT_MISMATCH)  # a smaller multiplier would shrink its notional
    assert code(of(Equity(symbol="ESZ6"), "1")) is ReplyCode.INSTRUMENT_MISMATCH
    assert code(of(Equity(symbol="AAPL", sector="Tech"), "1")) is None  # descriptive only


@pytest.mark.parametrize(("instrument", "qty", "limit", "expected"), [
    (Equity(symbol="AAPL"), "0.5", None, ReplyCode.QUANTITY_BELOW_MINIMUM),
    (Equity(symbol="AAPL"), "1.5", None, ReplyCode.LOT_SIZE),
    (Equity(symbol="AAPL"), "100", "100.005", ReplyCode.TICK_SIZE),
    (Equity(symbol="AAPL"), "100", "100.01", None),
    (BTC, "0.00005", None, ReplyCode.QUANTITY_BELOW_MINIMUM),
    (BTC, "0.00015", None, ReplyCode.LOT_SIZE),
    (BTC, "0.0003", None, None),
    (ES, "20", "5000.25", None),
    (ES, "21", "5000.25", ReplyCode.QUANTITY_EXCEEDS_MAXIMUM),  # the registry's max_quantity
    (ES, "1", "5000.10", ReplyCode.TICK_SIZE),
])
def test_lot_minimum_maximum_and_tick_are_exact(instrument: object, qty: str, limit: str | None,
                                                expected: ReplyCode | None) -> None:
    kw = {"order_type": OrderType.LIMIT, "limit_price": D(limit)} if limit else {}
    assert code(of(instrument, qty, **kw)) is expected


# --- finite default limits --------------------------------------------------------------------


def test_a_default_fund_has_finite_limits_at_their_boundaries() -> None:
    """Quantity 1,000,000 units, notional 10 % of target NAV (100,000 of 1,000,000), position
    25 % of NAV; each exactly at the limit passes, one step beyond is denied."""
    fund = default_fund()
    prices = {"AAPL": D("0.01")}
    assert code(order("k", "1000000"), fund, prices=prices) is None
    assert code(order("k", "1000001"), fund, prices=prices) is ReplyCode.QUANTITY_EXCEEDS_MAXIMUM
    assert code(order("k", "999999999999999"), fund, prices=prices) is (
        ReplyCode.QUANTITY_EXCEEDS_MAXIMUM)
    assert code(order("k", "1000")) is None  # 100,000 at 100: the notional limit exactly
    assert code(order("k", "1000"), fund) is None
    assert code(order("k", "1001"), fund) is ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM
    assert code(of(ES, "1", order_type=OrderType.LIMIT, limit_price=D("5000")), fund) is (
        ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM)  # 1 x 5,000 x the registry's multiplier 50
    held = {"AAPL": D(1500)}  # 150,000 held + 1,000 more = 250,000: 25 % of NAV exactly
    assert code(order("k", "1000"), fund, positions=held) is None
    assert code(order("k", "1000"), fund, positions={"AAPL": D(1501)}) is ReplyCode.POSITION_CAP


def test_unlimited_lifts_a_default_limit() -> None:
    fund = default_fund().model_copy(update={"risk": RiskEnvelope(
        max_order_notional="unlimited", max_position_pct_nav="unlimited")})
    assert code(order("k", "1001"), fund) is None
    assert code(order("k", "1000001"), fund) is ReplyCode.QUANTITY_EXCEEDS_MAXIMUM


# --- Oms.submit: the issue's orders never reach the broker, and nothing raises ----------------


ABSURD = ["1E+308", "1E+100", "9" * 40, "1e999999", "1E-40", "١٢٣", "NaN", "-5", "0"]


@pytest.mark.parametrize("qty", ABSURD)
async def test_the_issues_absurd_quantities_are_refused_not_sent(
        qty: str, store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """Built as the issue's client built them - without validation - and given straight to
    ``Oms.submit``: a coded refusal naming the field, nothing at the broker, nothing raised."""
    oms = await make(broker, default_fund())
    hostile = order("absurd", "1").model_copy(update={"quantity": qty})
    reply = await oms.submit(hostile)
    assert (reply.ok, reply.code, reply.context.get("field")) == (
        False, ReplyCode.VALIDATION_FAILED, "quantity")
    assert broker.submissions == [] and await store.orders() == []


async def test_well_formed_but_insane_orders_are_denied_for_a_default_fund(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, default_fund())
    cases = [
        (order("a", "999999999999999"), ReplyCode.QUANTITY_EXCEEDS_MAXIMUM),
        (order("b", "5000"), ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM),  # 500,000 of a 1M fund
        (order("c", "0.5"), ReplyCode.QUANTITY_BELOW_MINIMUM),
        (order("d", "10", symbol="ZZZZ"), ReplyCode.INSTRUMENT_NOT_FOUND),
        (of(Equity(symbol="AAPL", lot_size=D("0.001"), min_quantity=D("0.001")), "0.001")
         .model_copy(update={"idempotency_key": "e"}), ReplyCode.INSTRUMENT_MISMATCH),
    ]
    for o, expected in cases:
        reply = await oms.submit(o)
        assert (reply.ok, reply.code) == (False, expected), o.idempotency_key
    assert broker.submissions == []
    assert (await oms.submit(order("fine", "10"))).ok  # and a sane order still goes


@pytest.mark.parametrize("hostile", [
    Order.model_construct(),  # no fields at all
    Order.model_construct(fund_id=["f1"]),  # unhashable where a key goes
    Order.model_construct(**{**order("x").__dict__, "instrument": {"symbol": "AAPL"}}),
    Order.model_construct(**{**order("x").__dict__, "side": "sideways", "tags": None}),
    Order.model_construct(**{**order("x").__dict__, "order_id": "ord-mine"}),
    Order.model_construct(**{**order("x").__dict__, "expire_at": "year one"}),
    "not an order",
])
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic: serialising unvalidated fields
async def test_submit_never_raises_for_bad_input(
        hostile: object, store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    reply = await oms.submit(hostile)  # type: ignore[arg-type]  # the point of the test
    assert not reply.ok and reply.code in {ReplyCode.VALIDATION_FAILED, ReplyCode.INVALID_ORDER,
                                           ReplyCode.FUND_NOT_FOUND}
    assert broker.submissions == []



@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic: dumping unvalidated fields
async def test_an_order_validated_with_a_bad_part_is_still_refused(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """An Order validates an instrument object it is given no further, and its tags dict can
    be changed after validation: the OMS's acceptance, which skips validating a validated
    order in full, still validates those (``Order.assigned``)."""
    oms = await make(broker)
    odd = Equity.model_construct(**{**Equity(symbol="AAPL").__dict__, "lot_size": D("NaN")})
    with_odd = Order(**{**order("odd").__dict__, "instrument": odd})
    mutated = order("mutated")
    mutated.tags["no spaces"] = "x"
    for o, field in [(with_odd, "instrument"), (mutated, "tags")]:
        reply = await oms.submit(o)
        assert reply.code is ReplyCode.VALIDATION_FAILED and field in (reply.message or "")
    assert broker.submissions == [] and await store.orders() == []

@pytest.mark.parametrize("sector", ["a\x00b", "\ud800"])
async def test_text_postgresql_cannot_store_is_refused_not_an_internal_error(
        sector: str, store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """Found by the fuzzer: an instrument's free-text ``sector`` with a NUL passed validation
    and failed inside PostgreSQL (INTERNAL_ERROR, UntranslatableCharacterError)."""
    oms = await make(broker)
    o = order("nul").model_copy(update={"instrument": Equity.model_construct(
        **{**Equity(symbol="AAPL").__dict__, "sector": sector})})
    reply = await oms.submit(o)
    assert (reply.code, reply.context) == (ReplyCode.VALIDATION_FAILED,
                                           {"field": "instrument.sector"})
    assert broker.submissions == [] and await store.orders() == []




def test_halves_of_a_surrogate_pair_in_two_texts_are_still_found() -> None:
    """The text check looks at all of an order's text at once first (its fast path): two lone
    surrogates that would make a pair side by side are still two lone surrogates, and the
    field is still named. (Tags refuse them on the wire already; the check does not rely on
    that.)"""
    pair = order("pair").model_copy(update={"tags": {"a": "\ud83d", "b": "\ude00"}})
    assert _unstorable_text(pair) == "tags"
    sector = Equity.model_construct(**{**Equity(symbol="AAPL").__dict__, "sector": "\ude00"})
    split = order("split").model_copy(update={"fund_id": "f\ud83d", "instrument": sector})
    assert _unstorable_text(split) == "fund_id"
    fine = order("fine").model_copy(update={"tags": {"a": "\u00e9\U0001f600"}})
    assert _unstorable_text(fine) is None


async def test_an_internal_failure_is_a_coded_reply_without_its_text(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)

    async def broken(*args: object, **kw: object) -> object:
        raise RuntimeError("password=hunter2 at 10.0.0.7: relation orders does not exist")

    oms.store.create_order = broken  # type: ignore[method-assign, assignment]
    reply = await oms.submit(order("boom"))
    assert (reply.ok, reply.code) == (False, ReplyCode.INTERNAL_ERROR)
    assert reply.message == "the OMS failed (RuntimeError); its log has the details"
    assert oms.gate_context(oms.funds["f1"], oms.clock.now()).open_buy == {}  # released


async def test_the_service_logs_each_funds_effective_limits(caplog: pytest.LogCaptureFixture,
                                                            tmp_path: Path) -> None:
    """At start, at INFO: what the gates will apply - numbers, "unlimited", and the notional
    default worked out from the target NAV."""
    from mts1b_oms import service

    caplog.set_level(logging.INFO, logger="mts1b_oms.service")
    opts = service.ServeOptions(dsn="postgresql://unused", funds=[default_fund()],
                                instruments=make_registry())
    service._log_limits(opts)  # what run_service logs once connected, before it serves
    [line] = [r for r in caplog.records if r.getMessage() == "fund limits"]
    fields = line.__dict__["mts_context"]
    assert fields["fund_id"] == "f1" and fields["max_order_quantity"] == "1000000"
    assert fields["max_order_notional"] == "100000.00 (10% of target NAV 1000000)"
    assert fields["max_position_pct_nav"] == "0.25" and fields["max_adv_pct"] == "unlimited"
    assert [r.__dict__["mts_context"]["instruments"] for r in caplog.records
            if r.getMessage() == "instrument registry"] == [4]
