"""PaperClient: matching, time in force, costs, rejects, accounts, determinism (exact Decimals)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D  # noqa: N817
from typing import Any

import pytest
from mts1b_brokers import (
    BpsCommission,
    BpsSlippage,
    BrokerConfigError,
    FixedLatency,
    PaperClient,
    PerShareCommission,
    RandomLatency,
    RandomTickSlippage,
)
from mts1b_foundation import (
    Bar,
    BrokerProtocol,
    BrokerRejected,
    BrokerTransportError,
    Equity,
    ExecType,
    InMemoryMarketData,
    MtsError,
    Order,
    Quote,
)

T0 = dt.datetime(2024, 1, 2, 15, 0, tzinfo=dt.UTC)


def bar(o: str, h: str, lo: str, c: str, v: str = "1000", *, minutes: int = 1,
        symbol: str = "AAPL", interval: str = "1m") -> Bar:
    return Bar(symbol=symbol, ts=T0 + dt.timedelta(minutes=minutes), interval=interval,
               open=D(o), high=D(h), low=D(lo), close=D(c), volume=D(v))


def order(n: int = 1, **kw: Any) -> Order:
    base: dict[str, Any] = dict(
        order_id=f"o{n}", idempotency_key=f"k{n}", fund_id="core", strategy_id="s",
        instrument=Equity(symbol="AAPL"), side="buy", quantity=D(10), time_in_force="GTC")
    base.update(kw)
    return Order(**base)


async def paper(**kw: Any) -> PaperClient:
    kw.setdefault("accounts", {"core": D(100_000)})
    kw.setdefault("participation_rate", None)
    b = PaperClient(start=T0, **kw)
    await b.connect()
    await b.on_bar(bar("100", "100", "100", "100", minutes=0))  # a reference price
    return b


async def test_satisfies_broker_protocol() -> None:
    assert isinstance(PaperClient(), BrokerProtocol)


async def test_market_order_fills_next_bar_open_with_costs() -> None:
    b = await paper(slippage=BpsSlippage(D(10)), commission=PerShareCommission(D("0.005"), D(1)))
    ack = await b.submit(order())
    assert ack.exec_type is ExecType.ACK and ack.leaves_quantity == 10
    [fill] = await b.on_bar(bar("101.00", "102", "99", "100", minutes=2))
    # 101 * 1.001 = 101.101 -> rounded up to the tick against the buyer: 101.11
    assert (fill.exec_type, fill.last_price, fill.last_quantity) == (ExecType.FILL, D("101.11"),
                                                                    D(10))
    assert fill.commission == D("1.00")  # 10 * 0.005 = 0.05 < minimum 1
    acct = await b.account("core")
    assert acct.cash == D(100_000) - D("1011.10") - D("1.00")
    assert acct.positions == {"AAPL": D(10)}
    [pos] = await b.positions("core")
    assert (pos.quantity, pos.avg_cost, pos.unrealized_pnl) == (D(10), D("101.11"), D("-11.10"))


@pytest.mark.parametrize(("side", "limit", "bar_ohlc", "price"), [
    ("buy", "99", ("100", "101", "98", "100"), "99"),     # reached intrabar: at the limit
    ("buy", "101", ("100", "101", "98", "100"), "100"),   # open better than limit: at open
    ("buy", "97", ("100", "101", "98", "100"), None),     # never reached
    ("sell", "100.50", ("100", "101", "98", "100"), "100.50"),
    ("sell", "99", ("100", "101", "98", "100"), "100"),
])
async def test_limit_orders(side: str, limit: str, bar_ohlc: tuple[str, str, str, str],
                            price: str | None) -> None:
    b = await paper()
    await b.submit(order(side=side, order_type="limit", limit_price=D(limit)))
    reports = await b.on_bar(bar(*bar_ohlc, minutes=2))
    fills = [r for r in reports if r.exec_type is ExecType.FILL]
    assert [f.last_price for f in fills] == ([D(price)] if price else [])


async def test_stop_and_stop_limit() -> None:
    b = await paper()
    await b.submit(order(1, order_type="stop", stop_price=D("101")))
    await b.submit(order(2, side="sell", order_type="stop_limit", stop_price=D("99"),
                         limit_price=D("98.50")))
    assert await b.on_bar(bar("100", "100.5", "99.5", "100", minutes=2)) == []
    reports = await b.on_bar(bar("100", "102", "98", "99", minutes=3))
    prices = {r.order_id: r.last_price for r in reports if r.exec_type is ExecType.FILL}
    assert prices == {"o1": D("101"), "o2": D("99")}


async def test_stop_gap_fills_at_open() -> None:
    b = await paper()
    await b.submit(order(order_type="stop", stop_price=D("101")))
    [fill] = await b.on_bar(bar("103", "104", "102", "103", minutes=2))
    assert fill.last_price == D("103")


async def test_on_close_orders_fill_at_the_close_of_a_daily_bar() -> None:
    b = await paper()
    await b.submit(order(1, order_type="market_on_close", time_in_force="DAY"))
    await b.submit(order(2, order_type="limit_on_close", limit_price=D("99"),
                         time_in_force="DAY"))
    assert await b.on_bar(bar("100", "101", "99", "100", minutes=2)) == []  # intraday: waits
    reports = await b.on_bar(bar("100", "101", "98", "100.25", minutes=3, interval="1d"))
    by_id = {r.order_id: r for r in reports}
    assert by_id["o1"].exec_type is ExecType.FILL and by_id["o1"].last_price == D("100.25")
    assert by_id["o2"].exec_type is ExecType.EXPIRED


async def test_participation_rate_gives_partial_fills() -> None:
    b = await paper(participation_rate="0.1")
    await b.submit(order(quantity=D(100)))
    [p] = await b.on_bar(bar("100", "100", "100", "100", "450", minutes=2))
    assert (p.exec_type, p.last_quantity, p.cumulative_quantity, p.leaves_quantity) == (
        ExecType.PARTIAL_FILL, D(45), D(45), D(55))
    [f] = await b.on_bar(bar("100", "100", "100", "100", "1000", minutes=3))
    assert (f.exec_type, f.last_quantity, f.cumulative_quantity) == (ExecType.FILL, D(55), D(100))
    assert p.trade_id != f.trade_id


async def test_ioc_fok_day_gtd() -> None:
    b = await paper(participation_rate="0.1")
    await b.submit(order(1, quantity=D(100), time_in_force="IOC"))
    await b.submit(order(2, quantity=D(100), time_in_force="FOK"))
    await b.submit(order(3, order_type="limit", limit_price=D(50), time_in_force="DAY"))
    await b.submit(order(4, order_type="limit", limit_price=D(50), time_in_force="GTD",
                         expire_at=T0 + dt.timedelta(minutes=3)))
    reports = await b.on_bar(bar("100", "100", "100", "100", "300", minutes=2))
    kinds = [(r.order_id, r.exec_type, r.cumulative_quantity) for r in reports]
    assert kinds == [("o1", ExecType.PARTIAL_FILL, D(30)), ("o1", ExecType.CANCELED, D(30)),
                     ("o2", ExecType.CANCELED, D(0))]
    reports = await b.on_bar(bar("100", "100", "100", "100", minutes=3))
    assert [(r.order_id, r.exec_type) for r in reports] == [("o4", ExecType.EXPIRED)]
    reports = await b.on_bar(bar("100", "100", "100", "100", minutes=60 * 24))
    assert [(r.order_id, r.exec_type) for r in reports] == [("o3", ExecType.EXPIRED)]


async def test_quotes_fill_at_the_touch_up_to_displayed_size() -> None:
    b = await paper()
    await b.submit(order(1, quantity=D(10)))
    await b.submit(order(2, side="sell", order_type="limit", limit_price=D("99.90")))
    reports = await b.on_quote(Quote(symbol="AAPL", ts=T0 + dt.timedelta(seconds=5),
                                     bid=D("99.95"), ask=D("100.05"), bid_size=D(3),
                                     ask_size=D(4)))
    got = [(r.order_id, r.exec_type, r.last_quantity, r.last_price) for r in reports]
    assert got == [("o1", ExecType.PARTIAL_FILL, D(4), D("100.05")),
                   ("o2", ExecType.PARTIAL_FILL, D(3), D("99.95"))]


@pytest.mark.parametrize(("kw", "code"), [
    ({"order_type": "limit", "limit_price": D("100.005")}, "TICK_SIZE"),
    ({"instrument": Equity(symbol="BIG")}, "QUANTITY_BELOW_MINIMUM"),
    ({"quantity": D("1.5")}, "LOT_SIZE"),
    ({"quantity": D(10_000)}, "INSUFFICIENT_BUYING_POWER"),
    ({"fund_id": "nobody"}, "ACCOUNT_NOT_FOUND"),
    ({"instrument": Equity(symbol="ZZZZ")}, "INSTRUMENT_NOT_FOUND"),
    ({"instrument": Equity(symbol="HALT")}, "INSTRUMENT_CLOSED"),
    ({"time_in_force": "OPG"}, "UNSUPPORTED"),
])
async def test_rejects_are_coded(kw: dict[str, Any], code: str) -> None:
    b = await paper(instruments=[Equity(symbol="AAPL"), Equity(symbol="HALT"),
                                 Equity(symbol="BIG", min_quantity=D(20))])
    b.halt("HALT")
    stream = b.execution_reports()
    with pytest.raises(BrokerRejected) as info:
        await b.submit(order(**kw))
    assert info.value.context["reason_code"] == code
    report = await anext(aiter(stream))
    assert report.exec_type is ExecType.REJECT and report.reason and report.reason.startswith(code)
    assert report.code == code
    assert await b.open_orders() == []
    with pytest.raises(BrokerRejected):  # a repeat is the same rejection, not a new order
        await b.submit(order(**kw))


async def test_closed_session_from_the_platform_calendar() -> None:
    saturday = dt.datetime(2024, 1, 6, 15, tzinfo=dt.UTC)
    b = PaperClient(accounts={"core": D(1000)}, calendar="XNYS", start=saturday)
    await b.connect()
    with pytest.raises(BrokerRejected) as info:
        await b.submit(order(order_type="limit", limit_price=D(10), quantity=D(1)))
    assert info.value.context["reason_code"] == "SESSION_CLOSED"
    weekday = PaperClient(accounts={"core": D(1000)}, calendar="XNYS", start=T0)
    await weekday.connect()
    ack = await weekday.submit(order(order_type="limit", limit_price=D(10), quantity=D(1)))
    assert ack.exec_type is ExecType.ACK


async def test_duplicate_submission_returns_the_original_ack() -> None:
    b = await paper()
    first = await b.submit(order())
    assert await b.submit(order()) == first
    assert len(await b.open_orders()) == 1
    await b.on_bar(bar("100", "100", "100", "100", minutes=2))
    await b.submit(order())
    assert await b.on_bar(bar("100", "100", "100", "100", minutes=3)) == []
    assert (await b.account("core")).positions == {"AAPL": D(10)}


async def test_cancel_race_and_replace() -> None:
    b = await paper(participation_rate="0.5")
    await b.submit(order(1, order_type="limit", limit_price=D(100)))
    await b.on_bar(bar("100", "100", "100", "100", "8", minutes=2))
    canceled = await b.cancel("o1")
    assert (canceled.exec_type, canceled.cumulative_quantity, canceled.leaves_quantity) == (
        ExecType.CANCELED, D(4), D(0))
    again = await b.cancel("o1")
    assert again.exec_type is ExecType.CANCEL_REJECT and "ORDER_NOT_OPEN" in (again.reason or "")
    with pytest.raises(BrokerRejected):
        await b.cancel("never-sent")
    await b.submit(order(2, order_type="limit", limit_price=D(90)))
    rep = await b.replace("o2", quantity=D(20), limit_price=D("95.5"))
    assert rep.exec_type is ExecType.REPLACED and rep.leaves_quantity == 20
    bad = await b.replace("o2", limit_price=D("95.555"))
    assert bad.exec_type is ExecType.REPLACE_REJECT and "TICK_SIZE" in (bad.reason or "")
    assert bad.code == "TICK_SIZE"
    [working] = await b.open_orders("core")
    assert (working.quantity, working.limit_price) == (D(20), D("95.5"))


async def test_accounts_are_separate_and_short_selling_is_optional() -> None:
    b = await paper(accounts={"a": D(1000), "b": D(5000)}, allow_short=False)
    await b.submit(order(1, fund_id="a", quantity=D(5)))
    await b.on_bar(bar("100", "100", "100", "100", minutes=2))
    assert (await b.account("a")).cash == D(500)
    assert (await b.account("b")).cash == D(5000)
    with pytest.raises(BrokerRejected) as info:
        await b.submit(order(2, fund_id="b", side="sell", quantity=D(1)))
    assert info.value.context["reason_code"] == "SHORT_NOT_ALLOWED"
    await b.submit(order(3, fund_id="a", side="sell", quantity=D(5), order_type="limit",
                         limit_price=D(110)))
    await b.on_bar(bar("110", "110", "110", "110", minutes=3))
    [pos] = await b.positions("a")
    assert (pos.quantity, pos.realized_pnl) == (D(0), D(50))
    assert (await b.account("a")).cash == D(1050)


async def test_disconnected_calls_are_transport_errors() -> None:
    b = PaperClient(accounts={"core": D(1)})
    with pytest.raises(BrokerTransportError):
        await b.submit(order())


async def _run_seeded(seed: int) -> list[tuple[Any, ...]]:
    b = await paper(seed=seed, participation_rate="0.3",
                    slippage=RandomTickSlippage(5), commission=BpsCommission(D(10)),
                    latency=RandomLatency(dt.timedelta(0), dt.timedelta(seconds=90)))
    for n in range(1, 6):
        await b.submit(order(n, quantity=D(10 * n)))
    for m in range(2, 12):
        await b.on_bar(bar("100", "100.5", "99.5", "100", "100", minutes=m))
    return [(r.order_id, r.exec_type, r.trade_id, r.last_quantity, r.last_price, r.commission)
            for r in b.history]


async def test_same_seed_same_fills() -> None:
    first, second, other = await _run_seeded(7), await _run_seeded(7), await _run_seeded(8)
    assert first == second
    assert first != other


async def test_replay_from_a_market_data_provider() -> None:
    md = InMemoryMarketData([
        Bar(symbol="AAPL", ts=dt.datetime(2024, 1, d, 21, tzinfo=dt.UTC), open=D(100 + d),
            high=D(101 + d), low=D(99 + d), close=D(100 + d), volume=D(10_000))
        for d in (2, 3, 4)
    ])
    b = PaperClient(accounts={"core": D(100_000)}, market_data=md, start=T0,
                    latency=FixedLatency(dt.timedelta(hours=25)))
    await b.connect()
    await b.replay(start=dt.date(2024, 1, 2), end=dt.date(2024, 1, 2))
    await b.submit(order())
    reports = await b.replay(start=dt.date(2024, 1, 3), end=dt.date(2024, 1, 4))
    [fill] = [r for r in reports if r.exec_type is ExecType.FILL]
    assert (fill.last_price, fill.ts.day) == (D(104), 4)  # latency skipped the Jan 3 bar


class _CountingMarketData(InMemoryMarketData):
    """A provider that counts how often its symbol list is read, and can gain a symbol."""

    def __init__(self, bars: list[Bar]) -> None:
        super().__init__(bars)
        self.extra: list[str] = []
        self.symbol_reads = 0

    def symbols(self) -> list[str]:
        self.symbol_reads += 1
        return [*super().symbols(), *self.extra]


async def test_provider_symbols_are_read_once_and_again_only_on_a_miss() -> None:
    md = _CountingMarketData([bar("100", "100", "100", "100", minutes=0)])
    b = PaperClient(accounts={"core": D(100_000)}, market_data=md, start=T0)
    await b.connect()
    for n in range(1, 4):
        await b.submit(order(n, order_type="limit", limit_price=D(100)))
    assert md.symbol_reads == 1
    md.extra.append("MSFT")  # the provider gained a symbol: a miss reads the list again
    ack = await b.submit(order(4, instrument=Equity(symbol="MSFT"), order_type="limit",
                               limit_price=D(100)))
    assert ack.exec_type is ExecType.ACK and md.symbol_reads == 2
    with pytest.raises(BrokerRejected) as info:
        await b.submit(order(5, instrument=Equity(symbol="ZZZZ"), order_type="limit",
                             limit_price=D(100)))
    assert info.value.context["reason_code"] == "INSTRUMENT_NOT_FOUND"


@pytest.mark.parametrize(("build", "field", "value"), [
    (lambda: PaperClient(participation_rate="0"), "participation_rate", "0"),
    (lambda: PaperClient(participation_rate="ten percent"), "participation_rate", "ten percent"),
    (lambda: PaperClient(leverage="NaN"), "leverage", "NaN"),
    (lambda: PaperClient(accounts={"core": "lots"}), "cash", "lots"),
    (lambda: PaperClient(default_cash="Infinity"), "default_cash", "Infinity"),
    (lambda: PaperClient(accounts={"core": 1}).add_account("core", 2), "account_id", "core"),
    (lambda: RandomLatency(dt.timedelta(seconds=-1), dt.timedelta(0)), "low",
     dt.timedelta(seconds=-1)),
    (lambda: RandomLatency(dt.timedelta(seconds=2), dt.timedelta(seconds=1)), "high",
     dt.timedelta(seconds=1)),
    (lambda: BpsSlippage(D(-1)), "bps", D(-1)),
    (lambda: RandomTickSlippage(-2), "max_ticks", -2),
    (lambda: PerShareCommission(D("0.01"), D(-1)), "minimum", D(-1)),
    (lambda: BpsCommission(D("NaN")), "bps", "NaN"),
    (lambda: BpsCommission(D(10), quantum=D("1e-13")), "quantum", D("1e-13")),
])
def test_bad_configuration_names_the_field_and_value(build: Any, field: str, value: Any) -> None:
    with pytest.raises(BrokerConfigError) as info:
        build()
    err = info.value
    assert isinstance(err, MtsError) and isinstance(err, ValueError)  # old callers still catch
    assert err.code == "BROKERS.INVALID_CONFIG" and err.context["field"] == field
    assert str(err.context["value"]) == str(value) and field in err.message
    assert repr(err.context["value"]) in err.message


async def test_replay_without_a_provider_is_a_config_error() -> None:
    b = PaperClient(accounts={"core": D(1)})
    with pytest.raises(BrokerConfigError, match="market_data"):
        await b.replay(start=dt.date(2024, 1, 2), end=dt.date(2024, 1, 3))


async def test_default_cash_opens_an_account_asked_about_before_any_order() -> None:
    """The OMS reconciles each fund's account at start, before it has traded: with
    ``default_cash`` the account is there with that cash, without it the question is refused."""
    paper = PaperClient(default_cash="100000")
    await paper.connect()
    snapshot = await paper.account("core")
    assert (snapshot.cash, snapshot.positions) == (D(100000), {})
    strict = PaperClient()
    await strict.connect()
    with pytest.raises(BrokerRejected, match="ACCOUNT_NOT_FOUND"):
        await strict.account("core")


async def test_a_mark_is_the_reference_price_until_market_data_arrives() -> None:
    """Issue #20: the OMS in the same process passes its prices with set_mark; without one,
    a market order before the first bar is NO_REFERENCE_PRICE. A bar then wins."""
    b = PaperClient(start=T0, accounts={"core": D(1_500)}, participation_rate=None)
    await b.connect()
    with pytest.raises(BrokerRejected) as info:
        await b.submit(order(1, order_type="market"))
    assert info.value.context["reason_code"] == "NO_REFERENCE_PRICE"
    b.set_mark("AAPL", D(100))
    ack = await b.submit(order(2, order_type="market"))
    assert ack.exec_type is ExecType.ACK
    assert (await b.account("core")).buying_power == D(500)  # 10 reserved at the mark
    await b.cancel("o2")
    await b.on_bar(bar("200", "200", "200", "200", minutes=1))
    b.set_mark("AAPL", D(50))  # market data seen: the mark no longer counts
    with pytest.raises(BrokerRejected) as info:  # 10 at 200 (not at 50) need 2,000 > 1,500
        await b.submit(order(3, order_type="market"))
    assert info.value.context["reason_code"] == "INSUFFICIENT_BUYING_POWER"


@pytest.mark.parametrize("bad", ["0", "-1", "NaN", "abc", "Infinity"])
def test_set_mark_refuses_a_price_that_is_no_positive_number(bad: str) -> None:
    with pytest.raises(BrokerConfigError) as info:
        PaperClient().set_mark("AAPL", bad)
    assert info.value.context == {"field": "price", "value": bad}


async def test_a_cost_averaged_past_twelve_places_is_reported_at_twelve() -> None:
    """Three buys at prices whose average has no end (x/3): the venue keeps it exact, the
    positions query reports it in the wire's 12 places instead of failing."""
    b = await paper()
    for n, px in enumerate(("100.01", "100.02", "100.04"), start=1):
        await b.submit(order(n, quantity=D(1)))
        await b.on_bar(bar(px, px, px, px, minutes=2 * n))
    [pos] = await b.positions("core")
    assert pos.quantity == 3 and pos.avg_cost == D("100.023333333333")


def test_a_bps_commission_rounds_to_its_quantum() -> None:
    """Cents by default, as a broker bills; 1e-12 is a backtest's unrounded ``cost_bps``."""
    assert BpsCommission(D(10)).commission(D("3.3"), D("10.07")) == D("0.03")
    exact = BpsCommission(D(10), quantum=D("1e-12"))
    assert exact.commission(D("3.3"), D("10.07")) == D("0.033231")
    assert exact.commission(D("0.00000001"), D("123.4567")) == D("1.235E-9")
