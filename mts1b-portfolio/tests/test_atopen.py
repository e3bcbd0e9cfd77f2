"""Sizing at the open (:mod:`mts1b_portfolio.atopen`): the NAV at the next open from the cash
struck at the close and the session's corporate actions, net of the rebalance's commissions,
exactly as the backtester's equation gives it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from mts1b_foundation import CorporateAction
from mts1b_portfolio.atopen import CloseSnapshot, capital_at_open
from mts1b_portfolio.costs import post_trade_nav

D = Decimal


def _action(kind: str, symbol: str, value: str) -> CorporateAction:
    return CorporateAction(action_id=f"{kind}-{symbol}", symbol=symbol, ex_date="2016-03-01",
                           kind=kind, value=D(value))  # type: ignore[arg-type]


def test_cash_dividends_and_delistings_on_what_was_held_then_positions_at_the_open() -> None:
    snap = CloseSnapshot("2016-02-29", D("1000"), {"A": D(10), "B": D(-4), "C": D(5),
                                                     "S": D(3)})
    # S splits 2-for-1 (the OMS holds 6 now), C delists at 7 (gone), A pays 0.5 a share;
    # B has no bar today: priced at its last close and not traded
    holdings = {"A": D(10), "B": D(-4), "S": D(6)}
    actions = [_action("dividend", "A", "0.5"), _action("delisting", "C", "7"),
               _action("split", "S", "2")]
    weights = {"A": D("0.5"), "S": D("0.2")}
    got = capital_at_open(snap, holdings, {"A": D(20), "S": D(11)}, {"B": D(30)}, actions,
                          weights, D(10))
    cash = D(1000) + 10 * D("0.5") + 5 * D(7)
    v_pre = cash + 10 * D(20) - 4 * D(30) + 6 * D(11)
    assert got.v_pre == v_pre
    assert got.prices == {"A": D(20), "B": D(30), "S": D(11)}
    symbols = ["A", "B", "S"]
    held = [D(200), D(-120), D(66)]
    expected = post_trade_nav(v_pre, [weights.get(s, D(0)) for s in symbols], held,
                              [True, False, True], D("0.001"))
    assert got.capital == expected.quantize(D("1e-12"))
    # the equation holds: V = V_pre - rate x sum |w V - held| over what trades
    v = got.capital
    fees = D("0.001") * (abs(D("0.5") * v - 200) + abs(D("0.2") * v - 66))
    assert abs(v - (v_pre - fees)) < D("1e-9")


def test_without_commission_the_capital_is_the_nav_at_the_open() -> None:
    snap = CloseSnapshot("2016-02-29", D("500"), {"A": D(2)})
    got = capital_at_open(snap, {"A": D(2)}, {"A": D(50)}, {}, [], {"A": D(1)}, D(0))
    assert got.capital == got.v_pre == D(600)


def test_a_symbol_with_no_price_at_all_is_named() -> None:
    snap = CloseSnapshot("2016-02-29", D("500"), {})
    with pytest.raises(KeyError, match="Z"):
        capital_at_open(snap, {}, {}, {}, [], {"Z": D("0.1")}, D(0))


def test_the_snapshot_travels_as_json() -> None:
    snap = CloseSnapshot("2016-02-29", D("123.456"), {"A": D("-1.5")})
    assert CloseSnapshot.from_json(snap.to_json()) == snap
    with pytest.raises(ValueError, match="held"):
        CloseSnapshot.from_json({"session": "x", "cash": "1", "held": [1]})
