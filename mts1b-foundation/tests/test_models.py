import datetime as dt
import json
from decimal import Decimal

import pytest
from mts1b_foundation import (
    GENESIS_HASH,
    AuditRecord,
    Bar,
    CommandReply,
    Denial,
    Equity,
    EventContract,
    ExecutionReport,
    Fill,
    FundConfig,
    FxPair,
    Option,
    Order,
    OrderEvent,
    ReplyCode,
    RiskEnvelope,
    StrategySpec,
    TradingStateChange,
    ValidationFailed,
    instrument_adapter,
    parse_message,
)

NOW = dt.datetime(2024, 3, 1, 14, 30, tzinfo=dt.UTC)


def order(**kw: object) -> Order:
    base: dict[str, object] = dict(idempotency_key="k-1", fund_id="F1", strategy_id="s1",
                                   instrument=Equity(symbol="AAPL"), side="buy",
                                   quantity=Decimal("100"), created_at=NOW)
    base.update(kw)
    return Order.model_validate(base)


def test_decimal_and_datetime_round_trip_exactly() -> None:
    # the edges of the numeric domain: 20 significant digits, 12 after the point
    o = order(order_type="limit", limit_price=Decimal("12345678.123456789012"),
              quantity=Decimal("0.000000000001"))
    back = parse_message(Order, o.to_json())
    assert back == o
    assert back.limit_price == Decimal("12345678.123456789012")
    assert back.quantity == Decimal("1E-12")
    assert isinstance(back.quantity, Decimal)
    assert back.created_at.tzinfo is not None
    assert json.loads(o.to_json())["limit_price"] == "12345678.123456789012"


def test_models_are_frozen() -> None:
    o = order()
    with pytest.raises(ValueError, match="frozen"):
        o.quantity = Decimal(1)  # type: ignore[misc]


def test_naive_datetime_rejected_and_aware_normalised() -> None:
    with pytest.raises(ValidationFailed, match="created_at") as info:
        parse_message(Order, order().model_dump(mode="json") | {
            "created_at": "2024-03-01T14:30:00"})
    assert info.value.context["errors"][0]["field"] == "created_at"
    est = dt.timezone(dt.timedelta(hours=-5))
    o = order(created_at=dt.datetime(2024, 3, 1, 9, 30, tzinfo=est))
    assert o.created_at == NOW - dt.timedelta(minutes=0) and o.created_at.tzinfo == dt.UTC


def test_unknown_field_and_wrong_type_named() -> None:
    data = order().model_dump(mode="json")
    with pytest.raises(ValidationFailed) as info:
        parse_message(Order, {**data, "qty": 5})
    assert {"field": "qty", "value": 5, "reason": "Extra inputs are not permitted"} in (
        info.value.context["errors"])
    with pytest.raises(ValidationFailed, match="quantity='lots'"):
        parse_message(Order, {**data, "quantity": "lots"})
    with pytest.raises(ValidationFailed, match="quantity"):
        parse_message(Order, {**data, "quantity": "-1"})
    with pytest.raises(ValidationFailed, match=r"quantity='NaN': .*NaN and Infinity"):
        parse_message(Order, {**data, "quantity": "NaN"})


def test_schema_version_is_checked() -> None:
    data = order().model_dump(mode="json")
    with pytest.raises(ValidationFailed, match="schema_version 4 is not supported"):
        parse_message(Order, {**data, "schema_version": 4})


def test_parse_message_only_raises_validation_failed() -> None:
    for bad in (b"\xff\xfe", b"{", "[]", b"null", 42):
        with pytest.raises(ValidationFailed):
            parse_message(Order, bad)  # type: ignore[arg-type]


def test_order_type_price_rules() -> None:
    with pytest.raises(ValueError, match="needs limit_price"):
        order(order_type="limit")
    with pytest.raises(ValueError, match="takes no limit_price"):
        order(limit_price=Decimal(1))
    with pytest.raises(ValueError, match="needs stop_price"):
        order(order_type="stop_limit", limit_price=Decimal(1))
    assert order(order_type="stop_limit", limit_price=Decimal(1), stop_price=Decimal(2))
    with pytest.raises(ValueError, match="GTD"):
        order(time_in_force="GTD")
    assert order(time_in_force="GTD", expire_at=NOW).expire_at == NOW
    with pytest.raises(ValueError, match="DAY or CLS"):
        order(order_type="market_on_close", time_in_force="GTC")
    assert order(side="sell").signed_quantity == Decimal(-100)


def test_instruments_discriminated() -> None:
    opt = instrument_adapter.validate_python({
        "asset_class": "option", "symbol": "AAPL240621C00190000", "underlying": "AAPL",
        "expiry": "2024-06-21", "strike": "190", "right": "call"})
    assert isinstance(opt, Option) and opt.multiplier == Decimal(100)
    ev = instrument_adapter.validate_python({
        "asset_class": "prediction", "symbol": "FED-CUT-2024-09", "event": "FOMC Sept 2024",
        "outcome": "cut", "settlement": "2024-09-18T18:00:00Z"})
    assert isinstance(ev, EventContract)
    with pytest.raises(ValueError, match="strike"):
        instrument_adapter.validate_python({"asset_class": "option", "symbol": "X",
                                            "underlying": "X", "expiry": "2024-06-21",
                                            "right": "put"})
    with pytest.raises(ValueError, match="base and quote must differ"):
        FxPair(symbol="EURUSD", base="USD", quote="USD")
    fx = FxPair(symbol="EURUSD", base="EUR", quote="USD")
    assert fx.round_price(Decimal("1.0845678")) == Decimal("1.08457")
    eq = Equity(symbol="AAPL", lot_size=Decimal(100))
    assert eq.round_quantity_down(Decimal("-250")) == Decimal(-200)


def test_bar_consistency() -> None:
    ok = Bar(symbol="AAPL", ts=NOW, open=Decimal(10), high=Decimal(11), low=Decimal(9),
             close=Decimal("10.5"), volume=Decimal(1000))
    assert ok.close == Decimal("10.5")
    with pytest.raises(ValueError, match="close 12 lies outside"):
        Bar(symbol="AAPL", ts=NOW, open=Decimal(10), high=Decimal(11), low=Decimal(9),
            close=Decimal(12), volume=Decimal(0))


def test_order_event_requires_detail() -> None:
    fill = Fill(trade_id="t1", order_id="o1", fund_id="F1", symbol="AAPL", side="buy",
                quantity=Decimal(5), price=Decimal("10.01"), ts=NOW)
    ev = OrderEvent(event_id="e1", order_id="o1", fund_id="F1", event_type="partially_filled",
                    status="partially_filled", ts=NOW, fill=fill)
    assert ev.fill is not None and ev.fill.notional == Decimal("50.05")
    with pytest.raises(ValueError, match="needs fill"):
        OrderEvent(event_id="e1", order_id="o1", fund_id="F1", event_type="filled",
                   status="filled", ts=NOW)
    with pytest.raises(ValueError, match="needs denial"):
        OrderEvent(event_id="e1", order_id="o1", fund_id="F1", event_type="denied",
                   status="denied", ts=NOW)
    with pytest.raises(ValueError, match="differs from order_id"):
        OrderEvent(event_id="e1", order_id="o2", fund_id="F1", event_type="filled",
                   status="filled", ts=NOW, fill=fill)
    denied = OrderEvent(event_id="e2", order_id="o1", fund_id="F1", event_type="denied",
                        status="denied", ts=NOW,
                        denial=Denial(code=ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM, gate="max_notional",
                                      message="notional 2000000 above 1000000",
                                      context={"notional": "2000000", "limit": "1000000"}))
    assert parse_message(OrderEvent, denied.to_json()) == denied


def test_execution_report_fill_fields() -> None:
    with pytest.raises(ValueError, match="needs trade_id, symbol, side, last_quantity"):
        ExecutionReport(broker="paper", account_id="A", order_id="o1", exec_type="fill", ts=NOW)
    with pytest.raises(ValueError, match="needs reason"):
        ExecutionReport(broker="paper", account_id="A", order_id="o1", exec_type="reject",
                        ts=NOW)


def test_audit_record_lists_every_id_and_reads_version_1() -> None:
    record = AuditRecord(sequence=1, prev_hash=GENESIS_HASH, hash="b" * 64, msg_id="evt-1",
                         subject="mts.v1.oms.orders.filled", subject_id="ord-1",
                         ids=["ord-1", "F1", "mom"], actor="oms", action="oms.orders.filled",
                         payload_digest="c" * 64, ts=NOW, recorded_ts=NOW)
    assert parse_message(AuditRecord, record.to_json()) == record
    with pytest.raises(ValidationFailed, match="must not repeat"):
        parse_message(AuditRecord, record.model_dump(mode="json") | {"ids": ["ord-1", "ord-1"]})
    with pytest.raises(ValidationFailed, match="first of ids"):
        parse_message(AuditRecord, record.model_dump(mode="json") | {"subject_id": "F1"})
    v1 = {"schema_version": 1, "sequence": 0, "prev_hash": GENESIS_HASH, "hash": "d" * 64,
          "subject_id": "ord-9", "actor": "oms", "action": "order.accepted",
          "payload_digest": "e" * 64, "ts": NOW.isoformat()}
    old = parse_message(AuditRecord, v1)
    assert (old.ids, old.recorded_ts, old.msg_id, old.schema_version) == (["ord-9"], NOW, None, 3)


def test_fund_and_risk_envelope() -> None:
    fund = FundConfig(fund_id="F1", name="Core", target_nav_usd=Decimal("1000000"),
                      broker="paper", broker_account_id="PA-1", strategies=["momentum_v3"],
                      risk=RiskEnvelope(max_position_pct_nav=Decimal("0.05")))
    assert parse_message(FundConfig, fund.to_json()) == fund
    with pytest.raises(ValueError, match="drawdown_action"):
        RiskEnvelope(drawdown_action="ACTIVE")
    assert RiskEnvelope.unrestricted().price_collar_pct == "unlimited"


def test_strategy_spec_and_state_change() -> None:
    spec = StrategySpec(name="momentum_v3", factor="f_momentum_12_1",
                        params={"h_long": 252, "h_skip": 21}, universe="us-large-cap",
                        sizing={"method": "kelly_voltarget_12"})
    assert (spec.state.value, spec.version, spec.fund_id) == ("draft", 1, None)
    from mts1b_foundation import parse_message

    old = {"schema_version": 2, "name": "m", "factor": "f_m", "universe": "u",
           "state": "enabled"}
    assert parse_message(StrategySpec, old).state.value == "live"  # v2 'enabled' traded
    assert parse_message(StrategySpec, {**old, "state": "shadow"}).state.value == "shadow"
    assert parse_message(StrategySpec, {k: v for k, v in old.items() if k != "state"}
                         ).state.value == "disabled"  # the v2 default
    with pytest.raises(ValueError, match="factor"):
        StrategySpec(name="x", factor="momentum", universe="us-large-cap")
    with pytest.raises(ValueError, match="scope_id"):
        TradingStateChange(scope="fund", state="HALTED", actor="ops", reason="r", ts=NOW)
    with pytest.raises(ValueError, match="needs code"):
        CommandReply(ok=False)


def test_global_trading_state_uses_star() -> None:
    from mts1b_foundation import SetTradingState

    change = TradingStateChange(scope="global", state="HALTED", actor="ops", reason="r", ts=NOW)
    assert parse_message(TradingStateChange, change.to_json()).scope_id == "*"
    cmd = SetTradingState(scope="fund", scope_id="F1", state="REDUCING", actor="ops", reason="r")
    assert parse_message(SetTradingState, cmd.to_json()) == cmd
    with pytest.raises(ValidationFailed, match="scope_id"):
        parse_message(SetTradingState, cmd.model_dump(mode="json") | {"scope_id": "F 1"})
