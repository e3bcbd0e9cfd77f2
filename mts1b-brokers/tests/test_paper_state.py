"""PaperClient.snapshot / restore: a venue snapshotted mid-run and restored into a new
PaperClient (through JSON, as the broker service stores it) makes exactly the reports the
unstopped venue makes - same fills, Decimal prices and commissions, trade ids - also with the
seeded random latency and slippage; repeats of orders it ended are still repeats."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D  # noqa: N817
from typing import Any

import pytest
from mts1b_brokers import (
    BpsCommission,
    PaperClient,
    RandomLatency,
    RandomTickSlippage,
)
from mts1b_foundation import Bar, BrokerRejected, Equity, ExecType, ExecutionReport, Order, Quote

T0 = dt.datetime(2024, 1, 2, 15, 0, tzinfo=dt.UTC)


def _bar(symbol: str, minute: int, o: str, h: str, lo: str, c: str, v: str = "400") -> Bar:
    return Bar(symbol=symbol, ts=T0 + dt.timedelta(minutes=minute), interval="1m", open=D(o),
               high=D(h), low=D(lo), close=D(c), volume=D(v))


def _order(n: int, symbol: str, side: str, qty: str, **kw: Any) -> Order:
    return Order(order_id=f"o{n}", idempotency_key=f"k{n}", fund_id="core", strategy_id="s",
                 instrument=Equity(symbol=symbol), side=side, quantity=D(qty),
                 time_in_force=kw.pop("time_in_force", "GTC"), created_at=T0, **kw)


def _venue() -> PaperClient:
    return PaperClient(
        accounts={"core": "100000"}, default_cash="5000", participation_rate="0.25",
        latency=RandomLatency(dt.timedelta(0), dt.timedelta(seconds=30)),
        slippage=RandomTickSlippage(3), commission=BpsCommission(D(5)), seed=7, start=T0,
        leverage="2")


async def _first_half(v: PaperClient) -> None:
    await v.connect()
    await v.on_bar(_bar("AAPL", 0, "100", "100", "100", "100"))
    await v.on_bar(_bar("MSFT", 0, "50", "50", "50", "50"))
    v.set_mark("IBM", "120")
    await v.submit(_order(1, "AAPL", "buy", "300", order_type="market"))
    await v.submit(_order(2, "MSFT", "buy", "200", order_type="limit",
                          limit_price=D("49.50")))
    await v.submit(_order(3, "AAPL", "sell", "50", order_type="stop", stop_price=D("98")))
    with pytest.raises(BrokerRejected):
        await v.submit(_order(4, "AAPL", "buy", "0.5", order_type="market"))
    await v.submit(_order(5, "MSFT", "buy", "10", order_type="market", account_id="other"))
    await v.on_bar(_bar("AAPL", 2, "101", "102", "99", "100.5"))  # partial fill of o1
    await v.on_bar(_bar("MSFT", 2, "50", "50.2", "49.4", "49.8"))
    await v.submit(_order(6, "AAPL", "buy", "20", order_type="market", time_in_force="IOC"))
    await v.cancel("o5")
    await v.replace("o2", quantity=D(300))


async def _second_half(v: PaperClient) -> list[ExecutionReport]:
    made: list[ExecutionReport] = []
    made += await v.on_bar(_bar("AAPL", 3, "99", "99.5", "97", "98"))  # o1 more, o3 triggers
    made += await v.on_quote(Quote(symbol="MSFT", ts=T0 + dt.timedelta(minutes=4),
                                   bid=D("49.3"), ask=D("49.4"), bid_size=D(100),
                                   ask_size=D(120)))
    made.append(await v.submit(_order(7, "AAPL", "buy", "40", order_type="market")))
    made.append(await v.submit(_order(1, "AAPL", "buy", "300", order_type="market")))  # repeat
    made.append(await v.cancel("o5"))  # ended before the snapshot: a cancel_reject
    for minute in (5, 6, 7):
        made += await v.on_bar(_bar("AAPL", minute, "98", "99", "97.5", "98.5"))
        made += await v.on_bar(_bar("MSFT", minute, "49.6", "49.9", "49.2", "49.5"))
    with pytest.raises(BrokerRejected) as rejected:
        await v.submit(_order(4, "AAPL", "buy", "0.5", order_type="market"))  # repeat reject
    made.append(rejected.value.context["report"])
    status = await v.order_status("o6")
    assert status is not None
    made.append(status)
    return made


async def _positions(v: PaperClient) -> list[Any]:
    return [await v.account(a) for a in ("core", "other")]


async def test_a_restored_venue_makes_the_reports_of_the_one_never_stopped() -> None:
    unstopped = _venue()
    await _first_half(unstopped)
    state = json.loads(json.dumps(unstopped.snapshot()))  # through JSON, as it is stored

    restored = _venue()
    restored.restore(state)
    await restored.connect()
    assert restored.emitted == unstopped.emitted
    theirs, ours = await _second_half(unstopped), await _second_half(restored)
    assert [r.model_dump() for r in ours] == [r.model_dump() for r in theirs]  # Decimals equal
    assert any(r.exec_type is ExecType.PARTIAL_FILL for r in theirs)
    assert len({r.trade_id for r in theirs if r.trade_id}) >= 4
    assert await _positions(restored) == await _positions(unstopped)
    assert restored.snapshot() == unstopped.snapshot()


async def test_ended_orders_kept_apart_are_still_repeats_after_restore() -> None:
    unstopped = _venue()
    await _first_half(unstopped)
    ended = {r["order_id"]: json.loads(json.dumps(r)) for r in unstopped.pop_ended()}
    assert set(ended) == {"o4", "o5"}  # rejected, canceled
    assert unstopped.pop_ended() == []
    core = json.loads(json.dumps(unstopped.snapshot(ended=False)))
    assert {o["order_id"] for o in core["orders"]} == {"o1", "o2", "o3", "o6"}

    restored = _venue()
    restored.restore(core)
    await restored.connect()
    for record in ended.values():
        restored.restore_ended(record)
    theirs, ours = await _second_half(unstopped), await _second_half(restored)
    assert [r.model_dump() for r in ours] == [r.model_dump() for r in theirs]


async def test_snapshot_json_is_the_snapshot_without_ended_orders() -> None:
    venue = _venue()
    await _first_half(venue)
    assert json.loads(venue.snapshot_json()) == json.loads(json.dumps(venue.snapshot(
        ended=False)))
    await _second_half(venue)  # orders changed, ended, new: the cached texts follow
    assert json.loads(venue.snapshot_json()) == json.loads(json.dumps(venue.snapshot(
        ended=False)))


async def test_a_state_of_another_venue_or_version_is_refused_and_changes_nothing() -> None:
    venue = _venue()
    await _first_half(venue)
    before = venue.snapshot()
    with pytest.raises(ValueError, match="venue 'other'"):
        venue.restore({**before, "name": "other"})
    with pytest.raises(ValueError, match="version 99"):
        venue.restore({**before, "version": 99})
    with pytest.raises(KeyError):
        venue.restore({k: v for k, v in before.items() if k != "rng"})
    assert venue.snapshot() == before
