"""Property tests: every wire model round-trips through JSON unchanged, and no input at all makes
``parse_message`` raise anything but ``ValidationFailed``."""

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mts1b_foundation import (
    ETF,
    AuditRecord,
    Bar,
    CryptoPair,
    Equity,
    EventContract,
    Fill,
    FundConfig,
    Future,
    FxPair,
    Option,
    Order,
    OrderEvent,
    RiskEnvelope,
    Signal,
    ValidationFailed,
    WireModel,
    parse_message,
)
from mts1b_foundation.schema import wire_models

ident = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,23}", fullmatch=True)
symbols = st.from_regex(r"\^?[A-Za-z0-9](\.?[A-Za-z0-9_=^&-]){0,20}", fullmatch=True)
ccy = st.sampled_from(["USD", "EUR", "GBP", "JPY", "BTC", "ETH", "USDT"])
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
# hypothesis takes naive bounds and attaches the drawn timezone itself
aware = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001
                     timezones=offsets)
# 11 integer and 9 fraction digits at most: inside the wire's 20 significant digits
pos_dec = st.decimals(min_value=Decimal("1e-9"), max_value=Decimal("1e10"), allow_nan=False,
                      allow_infinity=False, places=9)
money = st.decimals(min_value=Decimal("-1e10"), max_value=Decimal("1e10"), allow_nan=False,
                    allow_infinity=False, places=9)
days = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1))

equity = st.builds(Equity, symbol=symbols, tick_size=pos_dec, lot_size=pos_dec,
                   sector=st.none() | st.text(max_size=20))
etf = st.builds(ETF, symbol=symbols)
option = st.builds(Option, symbol=symbols, underlying=symbols, expiry=days, strike=pos_dec,
                   right=st.sampled_from(["call", "put"]), multiplier=pos_dec)
future = st.builds(Future, symbol=symbols, root=symbols, expiry=days, multiplier=pos_dec)
fx = st.tuples(ccy, ccy).filter(lambda p: p[0] != p[1]).map(
    lambda p: FxPair(symbol=p[0] + p[1], base=p[0], quote=p[1], currency=p[1]))
crypto = st.tuples(ccy, ccy).filter(lambda p: p[0] != p[1]).map(
    lambda p: CryptoPair(symbol=f"{p[0]}-{p[1]}", base=p[0], quote=p[1]))
event = st.builds(EventContract, asset_class=st.sampled_from(["sports", "prediction"]),
                  symbol=symbols, event=st.text(min_size=1, max_size=50),
                  outcome=st.text(min_size=1, max_size=20), settlement=aware)
instrument = st.one_of(equity, etf, option, future, fx, crypto, event)


@st.composite
def orders(draw: st.DrawFn) -> Order:
    kind = draw(st.sampled_from(["market", "limit", "stop", "stop_limit"]))
    tif = draw(st.sampled_from(["DAY", "GTC", "IOC", "FOK", "GTD", "OPG", "CLS"]))
    return Order(
        order_id=draw(st.none() | ident), idempotency_key=draw(ident), fund_id=draw(ident),
        strategy_id=draw(ident), instrument=draw(instrument),
        side=draw(st.sampled_from(["buy", "sell"])), quantity=draw(pos_dec), order_type=kind,
        limit_price=draw(pos_dec) if kind in ("limit", "stop_limit") else None,
        stop_price=draw(pos_dec) if kind in ("stop", "stop_limit") else None,
        time_in_force=tif, expire_at=draw(aware) if tif == "GTD" else None,
        created_at=draw(aware),
        tags=draw(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_.:-]{0,9}", fullmatch=True),
                                  st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                                  | st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                            max_size=40),
                                  max_size=3)),
    )


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    lo, hi = sorted([draw(pos_dec), draw(pos_dec)])
    o = draw(st.sampled_from([lo, hi]))
    c = draw(st.sampled_from([lo, hi]))
    return Bar(symbol=draw(symbols), ts=draw(aware), open=o, high=hi, low=lo, close=c,
               volume=draw(pos_dec))


@st.composite
def fill_events(draw: st.DrawFn) -> OrderEvent:
    order_id = draw(ident)
    fill = Fill(trade_id=draw(ident), order_id=order_id, fund_id="F", symbol=draw(symbols),
                side=draw(st.sampled_from(["buy", "sell"])), quantity=draw(pos_dec),
                price=draw(pos_dec), commission=draw(pos_dec), ts=draw(aware))
    return OrderEvent(event_id=draw(ident), order_id=order_id, fund_id="F",
                      event_type="partially_filled", status="partially_filled",
                      ts=draw(aware), fill=fill, sequence=draw(st.integers(0, 10**9)))


signals = st.builds(Signal, strategy_id=ident, as_of=aware,
                    weights=st.dictionaries(symbols, money, max_size=5),
                    ic=st.none() | st.floats(allow_nan=False, allow_infinity=False),
                    t_stat=st.none() | st.floats(allow_nan=False, allow_infinity=False))
funds = st.builds(FundConfig, fund_id=ident, name=st.text(min_size=1, max_size=30),
                  target_nav_usd=pos_dec, broker=ident, broker_account_id=ident,
                  strategies=st.lists(ident, max_size=3),
                  risk=st.builds(RiskEnvelope,
                                 max_order_notional=st.none() | st.just("unlimited") | pos_dec,
                                 max_gross_exposure=st.just("unlimited") | pos_dec))
audits = st.builds(
    lambda seq, ids, ts, digest: AuditRecord(
        sequence=seq, prev_hash="a" * 64, hash=digest, msg_id=f"m-{seq}", subject_id=ids[0],
        ids=ids, actor="oms", action="x", payload_digest=digest, ts=ts, recorded_ts=ts),
    st.integers(0, 10**6), st.lists(ident, min_size=1, max_size=4, unique=True), aware,
    st.text("0123456789abcdef", min_size=64, max_size=64))

any_model = st.one_of(orders(), bars(), fill_events(), signals, funds, audits, instrument)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(any_model)
def test_every_model_round_trips(model: WireModel) -> None:
    back = parse_message(type(model), model.to_json())
    assert back == model
    assert back.to_json() == model.to_json()
    assert parse_message(type(model), model.model_dump(mode="json")) == model


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20,
)
MODELS = list(wire_models().values())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MODELS), json_values)
def test_arbitrary_json_only_raises_validation_failed(model: type[WireModel], value: Any) -> None:
    try:
        parse_message(model, json.dumps(value))
    except ValidationFailed as exc:
        assert exc.context["errors"], "a validation error must name at least one field"


@settings(max_examples=200)
@given(st.sampled_from(MODELS), st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_validation_failed(model: type[WireModel], data: bytes) -> None:
    # Some bytes are valid (b"{}" is a RiskEnvelope with every default); the rest must fail
    # with ValidationFailed and nothing else.
    try:
        parsed = parse_message(model, data)
    except ValidationFailed as exc:
        assert exc.context["errors"]
    else:
        assert isinstance(parsed, model)


def test_bytes_that_are_not_json_fail_cleanly() -> None:
    for data in (b"\xff", b"{", b"[1,", b"\x00\x01", b"{}}"):
        with pytest.raises(ValidationFailed):
            parse_message(RiskEnvelope, data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), st.text(min_size=1, max_size=8), json_values)
def test_mutated_valid_orders_fail_cleanly(order: Order, key: str, value: Any) -> None:
    data = order.model_dump(mode="json")
    data[key] = value
    try:
        parse_message(Order, json.dumps(data))
    except ValidationFailed as exc:
        assert exc.context["errors"]
