"""Average cost, PnL, reconciliation and rebalancing: pure functions, exact Decimals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from mts1b_foundation import Equity, Fill, Side, Signal, TargetPortfolio
from mts1b_oms.positions import PositionState, apply_fill, reconcile, replay
from mts1b_oms.rebalance import RebalanceError, rebalance

TS = dt.datetime(2026, 1, 5, 15, 0, tzinfo=dt.UTC)
D = Decimal


def test_average_cost_and_realized_pnl() -> None:
    p = apply_fill(PositionState(), D(100), D(10))
    p = apply_fill(p, D(100), D(12))
    assert p == PositionState(D(200), D(11), D(0))
    p = apply_fill(p, D(-50), D(15), commission=D(1))
    assert p.quantity == 150 and p.avg_cost == 11 and p.realized_pnl == D(199)
    assert p.unrealized(D(10)) == D(-150)


def test_position_event_of_a_long_average_cost_fits_the_wire() -> None:
    """Three buys at 10, 10 and 11 average to 31/3: 28 digits in the state, the wire's 12
    places in the Position event (which refuses more)."""
    p = apply_fill(apply_fill(apply_fill(PositionState(), D(1), D(10)), D(1), D(10)), D(1), D(11))
    assert p.avg_cost == D(31) / 3 and len(p.avg_cost.as_tuple().digits) == 28
    event = p.to_position("f", None, "BRK.B", TS, mark=D(12))
    assert event.avg_cost == D("10.333333333333")
    assert event.unrealized_pnl == D("5.000000000000")
    assert p.avg_cost == D(31) / 3  # the state itself is not rounded


def test_crossing_through_zero_opens_at_fill_price() -> None:
    p = apply_fill(PositionState(D(10), D(5), D(0)), D(-15), D(6))
    assert p == PositionState(D(-5), D(6), D(10))
    p = apply_fill(p, D(5), D(4))
    assert p == PositionState(D(0), D(0), D(20))


def test_replay_orders_by_time() -> None:
    fills = [Fill(trade_id=f"t{i}", order_id="o", fund_id="f", symbol="X", side=side,
                  quantity=D(q), price=D(px), ts=TS + dt.timedelta(seconds=i))
             for i, (side, q, px) in enumerate([(Side.BUY, 10, 1), (Side.SELL, 10, 2)])]
    assert replay(reversed(fills)) == PositionState(D(0), D(0), D(10))


def test_reconcile_reports_without_overwriting() -> None:
    oms = {"A": D(10), "B": D(5)}
    out = reconcile(oms, {"A": D(10), "C": D(1)})
    assert [(m.symbol, m.difference) for m in out] == [("B", D(-5)), ("C", D(1))]
    assert oms == {"A": D(10), "B": D(5)}


def test_rebalance_rounds_to_lots_sells_first_threshold() -> None:
    target = TargetPortfolio(fund_id="f1", as_of=TS, nav=D(100_000),
                             weights={"AAPL": D("0.5"), "MSFT": D("0.25"), "TINY": D("0.0001")})
    orders = rebalance(
        target, fund_id="f1", positions={"AAPL": D(100), "IBM": D(20)},
        prices={"AAPL": D(100), "MSFT": D(300), "IBM": D(50), "TINY": D(1)},
        instruments={"MSFT": Equity(symbol="MSFT", lot_size=D(10), min_quantity=D(10))},
        threshold=D(100))
    got = [(o.side, o.instrument.symbol, o.quantity) for o in orders]
    # IBM closed (not in target) and sold first; MSFT 83.33 -> 80 (lot 10); TINY 10 < threshold
    assert got == [(Side.SELL, "IBM", D(20)), (Side.BUY, "AAPL", D(400)),
                   (Side.BUY, "MSFT", D(80))]
    again = rebalance(target, fund_id="f1", positions={"AAPL": D(100), "IBM": D(20)},
                      prices={"AAPL": D(100), "MSFT": D(300), "IBM": D(50), "TINY": D(1)},
                      threshold=D(100))
    assert {o.idempotency_key for o in again} >= {orders[0].idempotency_key}


def test_rebalance_signal_keeps_other_holdings_and_needs_prices() -> None:
    sig = Signal(strategy_id="mom", as_of=TS, weights={"AAPL": D("-0.1")})
    orders = rebalance(sig, fund_id="f1", positions={"IBM": D(5)}, prices={"AAPL": D(100)},
                       nav=D(10_000))
    assert [(o.side, o.quantity, o.strategy_id) for o in orders] == [(Side.SELL, D(10), "mom")]
    with pytest.raises(RebalanceError):
        rebalance(sig, fund_id="f1", positions={}, prices={}, nav=D(1))
