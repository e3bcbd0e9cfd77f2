"""compose end to end, in memory: netting, rounding, ownership sums, crossing, exclusion,
held-back codes and fallbacks - exact Decimal expectations worked out by hand."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import (
    CryptoPair,
    Equity,
    Future,
    SleeveAllocation,
    TargetPortfolio,
    ValidationFailed,
    parse_message,
)
from mts1b_portfolio import Constraints, Fallback, HoldCode, Sleeve, compose

AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
FUND = "fund-a"
D = Decimal
CAPITAL = D(100_000)


def _owned(sleeves: dict[str, dict[str, Decimal]]) -> SleeveAllocation:
    return SleeveAllocation(fund_id=FUND, as_of=AS_OF, sleeves=sleeves)


def _compose(sleeves: list[Sleeve], current: object, prices: dict[str, Decimal],
             constraints: Constraints | None = None, capital: Decimal = CAPITAL,
             **kwargs: object):  # type: ignore[no-untyped-def]
    return compose(sleeves, capital, constraints or Constraints(), current, prices,
                   fund_id=FUND, as_of=AS_OF, **kwargs)  # type: ignore[arg-type]


def test_netting_and_internal_crossing() -> None:
    """A buys 100 X, B sells 60: the fund buys 40, 60 shares cross (turnover saved twice
    their notional)."""
    sleeves = [Sleeve("A", {"X": 0.2}, 0.5), Sleeve("B", {"X": -0.12}, 0.5)]
    result = _compose(sleeves, _owned({"A": {}, "B": {}}), {"X": D(100)})
    assert result.allocation.sleeves == {"A": {"X": D(100)}, "B": {"X": D(-60)}}
    assert result.target.weights == {"X": D("0.04")}
    report = result.report
    assert report.traded_notional == D(4000)
    assert report.turnover == D("0.04")
    assert report.crossed_shares == {"X": D(60)}
    assert report.crossed_notional == D(6000)
    assert report.turnover_saved == D(12000)
    assert report.sleeve_traded_notional == D(16000)
    assert report.fallback is None and report.held_back == ()


def test_a_cut_trade_is_the_same_fraction_of_each_sleeve_trade() -> None:
    """The turnover cap lets the fund buy 60 of the 150 asked: each sleeve gets 40 % of its
    trade, as a partial fill would give it."""
    sleeves = [Sleeve("A", {"X": 0.2}, 0.5), Sleeve("B", {"X": 0.1}, 0.5)]
    result = _compose(sleeves, _owned({"A": {}, "B": {}}), {"X": D(100)},
                      Constraints(max_turnover=0.06))
    assert result.allocation.sleeves == {"A": {"X": D(40)}, "B": {"X": D(20)}}
    assert result.report.turnover == D("0.06")
    assert result.report.multipliers[2] > 0  # the turnover cap binds


def test_opposite_trades_cross_in_full_when_the_fund_trade_is_cut() -> None:
    """A buys 100, B sells 60, the turnover cap lets the fund buy only 20: B's sale crosses
    in full with A's buy, A's buy is what is cut (80 = 60 crossed + 20 bought)."""
    sleeves = [Sleeve("A", {"X": 0.2}, 0.5), Sleeve("B", {"X": -0.12}, 0.5)]
    result = _compose(sleeves, _owned({"A": {}, "B": {}}), {"X": D(100)},
                      Constraints(max_turnover=0.02))
    assert result.allocation.sleeves == {"A": {"X": D(80)}, "B": {"X": D(-60)}}
    assert result.report.crossed_shares == {"X": D(60)}


def test_a_cross_without_a_fund_trade_is_still_carried_out() -> None:
    """A wants 50 more, B 50 fewer: the fund trades nothing and the shares change owner (the
    OMS books a transfer)."""
    held = _owned({"A": {"X": D(100)}, "B": {"X": D(50)}})
    sleeves = [Sleeve("A", {"X": 0.3}, 0.5), Sleeve("B", {"X": 0.0}, 0.5)]
    result = _compose(sleeves, held, {"X": D(100)})
    assert result.allocation.sleeves == {"A": {"X": D(150)}, "B": {}}
    assert result.report.traded_notional == 0
    assert result.report.crossed_shares == {"X": D(50)}
    assert result.report.turnover_saved == D(10_000)


def _random_case(seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    symbols = [f"S{i:02d}" for i in range(30)]
    prices = {s: D(int(rng.integers(500, 50_000))) / 100 for s in symbols}
    lots = {s: [D(1), D(10), D(100), D("0.001")][int(rng.integers(0, 4))] for s in symbols}
    instruments = {s: Equity(symbol=s, lot_size=lots[s], min_quantity=lots[s])
                   for s in symbols}
    ids = ["alpha", "beta", "carry", "delta", "eps"]
    shares = rng.dirichlet(np.ones(5)) * 0.95
    sleeves = []
    for sid, share in zip(ids, shares, strict=True):
        names = rng.choice(symbols, size=12, replace=False)
        weights = rng.normal(0, 0.1, 12)
        sleeves.append(Sleeve(sid, dict(zip(names.tolist(), weights.tolist(), strict=True)),
                              float(share)))
    holdings = {}
    for sid in ids[:4]:
        names = rng.choice(symbols, size=6, replace=False).tolist()
        holdings[sid] = {s: lots[s] * int(rng.integers(-300, 300)) for s in names}
    return sleeves, _owned(holdings), prices, instruments


@pytest.mark.parametrize("seed", range(12))
def test_ownership_sums_exactly_and_trades_are_whole_lots_towards_the_holding(
        seed: int) -> None:
    sleeves, current, prices, instruments = _random_case(seed)
    constraints = Constraints(max_gross=1.2, max_weight=0.08, min_net=-0.1, max_net=0.3,
                              max_turnover=0.5)
    result = compose(sleeves, D(10_000_000), constraints, current, prices, instruments,
                     fund_id=FUND, as_of=AS_OF)
    alloc = result.allocation
    before = current.totals()
    after = alloc.totals()
    for symbol in set(before) | set(after):
        lot = instruments[symbol].lot_size
        trade = after.get(symbol, D(0)) - before.get(symbol, D(0))
        assert trade % lot == 0, (symbol, trade, lot)
        for sid in alloc.sleeves:
            change = alloc.sleeves[sid].get(symbol, D(0)) - current.sleeves.get(
                sid, {}).get(symbol, D(0))
            assert change % lot == 0, (sid, symbol, change)
        moves = [alloc.sleeves[sid].get(symbol, D(0)) - current.sleeves.get(sid, {}).get(
            symbol, D(0)) for sid in alloc.sleeves]
        assert sum(moves, D(0)) == trade  # the sleeves' moves make exactly the fund's trade
    # the target's weights describe exactly these shares
    for symbol, weight in result.target.weights.items():
        exact = after[symbol] * prices[symbol] / D(10_000_000)
        assert abs(weight - exact) <= D("1e-12")
    assert result.report.turnover <= D("0.5") + D("1e-9")
    assert sorted(alloc.sleeves) == sorted(s.strategy_id for s in sleeves)
    # built from checked parts (wire_out), it is what validation of its content gives
    assert parse_message(SleeveAllocation, alloc.to_json()) == alloc
    assert parse_message(TargetPortfolio, result.target.to_json()) == result.target


def test_rounding_never_adds_turnover() -> None:
    """Lots of 100 shares: every trade rounds towards the holding, so the rounded turnover is
    at most the projection's and the cap holds."""
    sleeves, current, prices, _ = _random_case(99)
    instruments = {s: Equity(symbol=s, lot_size=D(100), min_quantity=D(100)) for s in prices}
    capped = compose(sleeves, D(10_000_000), Constraints(max_turnover=0.3), current, prices,
                     instruments, fund_id=FUND, as_of=AS_OF)
    assert capped.report.turnover <= D("0.3")
    fine = compose(sleeves, D(10_000_000), Constraints(max_turnover=0.3), current, prices,
                   fund_id=FUND, as_of=AS_OF)
    assert capped.report.turnover <= fine.report.turnover


def test_removing_a_sleeve_leaves_the_others_unchanged() -> None:
    prices = {"A1": D(100), "B1": D(50), "C1": D(25), "X": D(10)}
    sleeves = [Sleeve("mom", {"A1": 0.3, "X": 0.2}, 0.4),
               Sleeve("val", {"B1": 0.5, "X": -0.1}, 0.4),
               Sleeve("carry", {"C1": 0.5, "X": 0.4}, 0.2)]
    current = _owned({"mom": {"A1": D(100)}, "val": {}, "carry": {"C1": D(400), "X": D(50)}})
    everyone = _compose(sleeves, current, prices, Constraints(max_gross=2.0))
    without = _compose(sleeves, current, prices, Constraints(max_gross=2.0),
                       exclude=["carry"])
    assert everyone.allocation.sleeves["mom"] == {"A1": D(120), "X": D(800)}
    assert without.allocation.sleeves["mom"] == everyone.allocation.sleeves["mom"]
    assert without.allocation.sleeves["val"] == everyone.allocation.sleeves["val"]
    assert "carry" not in without.allocation.sleeves  # not listed: the OMS leaves it alone
    assert without.report.excluded == ("carry",)
    assert without.report.kept_sleeves == ("carry",)
    # carry's holdings are still in the fund: its weights describe them
    assert without.target.weights["C1"] == D("0.1")
    assert without.target.weights["X"] == D(800 - 400 + 50) * 10 / D(100_000)
    # excluding is composing without it
    dropped = _compose(sleeves[:2], current, prices, Constraints(max_gross=2.0))
    assert dropped.target == without.target


def test_a_sleeve_with_no_weights_closes_its_holdings() -> None:
    current = _owned({"a": {"X": D(10)}, "b": {"X": D(5), "Y": D(3)}})
    result = _compose([Sleeve("a", {"X": 0.01}, 0.5), Sleeve("b", {}, 0.0)], current,
                      {"X": D(100), "Y": D(7)})
    assert result.allocation.sleeves == {"a": {"X": D(5)}, "b": {}}
    assert result.target.weights == {"X": D("0.005")}


def test_the_same_inputs_in_any_order_give_the_same_target() -> None:
    sleeves, current, prices, instruments = _random_case(5)
    constraints = Constraints(max_gross=1.0, max_weight=0.05, max_turnover=0.4)
    first = compose(sleeves, D(5_000_000), constraints, current, prices, instruments,
                    fund_id=FUND, as_of=AS_OF)
    shuffled = [Sleeve(s.strategy_id, dict(random.Random(1).sample(list(s.weights.items()),
                                                                     len(s.weights))), s.share)
                for s in reversed(sleeves)]
    second = compose(shuffled, D(5_000_000), constraints, current,
                     dict(reversed(list(prices.items()))), instruments, fund_id=FUND,
                     as_of=AS_OF)
    assert first.target == second.target
    assert first.report == second.report


def test_names_held_back_say_why() -> None:
    instruments = {"LOT": Equity(symbol="LOT", lot_size=D(100), min_quantity=D(100)),
                   "MINQ": Equity(symbol="MINQ", min_quantity=D(10)),
                   "SMALL": Equity(symbol="SMALL"),
                   "SHORT": Equity(symbol="SHORT")}
    prices = {"LOT": D(10), "MINQ": D(100), "SMALL": D(10), "SHORT": D(10)}
    # LOT: 50 shares wanted; MINQ: 5 shares; SMALL: 30 shares worth 300; SHORT: long-only
    sleeves = [Sleeve("s", {"LOT": 0.005, "MINQ": 0.005, "SMALL": 0.003, "SHORT": -0.01}, 1)]
    result = compose(sleeves, D(100_000), Constraints(long_only=True,
                                                      min_trade_notional=D(500)),
                     _owned({"s": {}}), prices, instruments, fund_id=FUND, as_of=AS_OF)
    codes = {h.symbol: (h.code, h.wanted) for h in result.report.held_back}
    assert codes == {"LOT": (HoldCode.LOT_SIZE, D(50)), "MINQ": (HoldCode.MIN_QUANTITY, D(5)),
                     "SMALL": (HoldCode.MIN_TRADE, D(30)),
                     "SHORT": (HoldCode.CONSTRAINTS, D(-100))}
    assert result.allocation.sleeves == {"s": {}}


def test_the_exact_projection_holds_back_small_trades_under_a_turnover_cap() -> None:
    prices = {f"N{i}": D(100) for i in range(6)}
    weights = {f"N{i}": 0.02 * (i + 1) for i in range(6)}  # 20 .. 120 shares each
    result = _compose([Sleeve("s", weights, 1)], _owned({"s": {}}), prices,
                      Constraints(max_turnover=0.1))
    assert result.report.turnover <= D("0.1")
    held = {h.symbol: h.code for h in result.report.held_back}
    # the projection soft-thresholds the trades at 0.0667: 0.02, 0.04 and 0.06 stay at 0
    assert held == {f"N{i}": HoldCode.TURNOVER_CAP for i in range(3)}
    assert result.allocation.sleeves == {"s": {"N3": D(13), "N4": D(33), "N5": D(53)}}


def test_a_net_floor_no_weights_can_meet_keeps_every_holding() -> None:
    prices = {f"N{i}": D(10) for i in range(10)}
    current = _owned({"s": {"N0": D(100), "N1": D(-50)}})
    weights = {f"N{i}": 0.1 for i in range(10)}
    result = _compose([Sleeve("s", weights, 1)], current, prices,
                      Constraints(max_weight=0.05, min_net=0.6))
    assert result.report.fallback is Fallback.NET_FLOOR_UNREACHABLE
    assert result.allocation.sleeves == current.sleeves
    assert result.report.traded_notional == 0
    assert {h.code for h in result.report.held_back} == {HoldCode.INFEASIBLE}
    assert len(result.report.held_back) == 10


def test_a_turnover_cap_too_small_to_reach_the_gross_cap_spends_exactly_the_cap() -> None:
    prices = {f"N{i}": D(10) for i in range(4)}
    current = _owned({"s": {"N0": D(6000), "N1": D(5000), "N2": D(3000), "N3": D(1000)}})
    weights = {"N0": 0.6, "N1": 0.5, "N2": 0.3, "N3": 0.1}  # gross 1.5, as held
    result = _compose([Sleeve("s", weights, 1)], current, prices,
                      Constraints(max_gross=1.0, max_turnover=0.2))
    report = result.report
    assert report.fallback is Fallback.TURNOVER_INFEASIBLE
    assert report.turnover_needed == pytest.approx(0.5)
    # the L1 step sells 583.33, 583.33, 583.33 and 250 shares: whole shares towards the holding
    assert result.allocation.sleeves == {"s": {"N0": D(5417), "N1": D(4417), "N2": D(2417),
                                               "N3": D(750)}}
    assert report.turnover == D("0.1999")
    assert report.gross == D("1.3001")  # moved towards the cap by the turnover allowed
    held = {h.symbol: h.code for h in report.held_back}
    assert held == {}  # nothing was wanted: the sleeve asks for what it holds


def test_holdings_of_a_sleeve_not_composed_count_against_the_gross_cap() -> None:
    prices = {"K": D(10), "A": D(10), "B": D(10)}
    current = _owned({"halted": {"K": D(5000)}, "a": {}, "b": {}})
    result = _compose([Sleeve("a", {"A": 0.8}, 0.5), Sleeve("b", {"B": 0.8}, 0.5)], current,
                      prices, Constraints(max_gross=1.0), exclude=["halted"])
    assert result.allocation.sleeves == {"a": {"A": D(2500)}, "b": {"B": D(2500)}}
    assert result.report.gross == D(1)
    assert result.report.kept_sleeves == ("halted",)


def test_futures_trade_in_contracts_through_their_multiplier() -> None:
    es = Future(symbol="ESZ6", root="ES", expiry=dt.date(2026, 12, 18), multiplier=D(50))
    result = compose([Sleeve("macro", {"ESZ6": 0.5}, 1)], D(1_000_000), Constraints(), {},
                     {"ESZ6": D(4000)}, {"ESZ6": es}, fund_id=FUND, as_of=AS_OF)
    assert result.allocation.sleeves == {"macro": {"ESZ6": D(2)}}  # 500k / 200k, rounded down
    assert result.target.weights == {"ESZ6": D("0.4")}


def test_a_book_without_ownership_is_split_whole_and_reports_no_crossing() -> None:
    sleeves = [Sleeve("A", {"X": 0.2}, 0.5), Sleeve("B", {"X": -0.12}, 0.5)]
    result = _compose(sleeves, {"X": D(30), "Z": D("2.5")}, {"X": D(100), "Z": D(40)},
                      Constraints(max_turnover=0.0))
    assert result.report.crossed_shares is None and result.report.turnover_saved is None
    assert result.allocation.totals() == {"X": D(30), "Z": D("2.5")}


def test_large_positions_are_checked_entry_by_entry() -> None:
    """Shares of 1E+8 and more can exceed 20 digits at 12 places: compose checks each one.
    250,000,000.5 units is in the wire's domain; a position of 1E+16 units is not, and compose
    says which entry."""
    coin = CryptoPair(symbol="XYZ-USD", base="XYZ", quote="USD", lot_size=D("0.5"),
                      min_quantity=D("0.5"))
    big = compose([Sleeve("s", {"XYZ-USD": 0.5}, 1)], D(500_000_001), Constraints(), {},
                  {"XYZ-USD": D(1)}, {"XYZ-USD": coin}, fund_id=FUND, as_of=AS_OF)
    assert big.allocation.sleeves == {"s": {"XYZ-USD": D("250000000.5")}}
    assert parse_message(SleeveAllocation, big.allocation.to_json()) == big.allocation
    block = CryptoPair(symbol="XYZ-USD", base="XYZ", quote="USD", lot_size=D(1000),
                       min_quantity=D(1000))
    with pytest.raises(ValidationFailed, match="sleeves"):
        compose([Sleeve("s", {"XYZ-USD": 1}, 1)], D(10**14), Constraints(), {},
                {"XYZ-USD": D("0.01")}, {"XYZ-USD": block}, fund_id=FUND, as_of=AS_OF)


def test_holdings_that_cannot_move_over_the_gross_cap_keep_every_holding() -> None:
    prices = {"K": D(10), "A": D(10)}
    current = _owned({"halted": {"K": D(8000)}, "a": {"A": D(1000)}})
    result = _compose([Sleeve("a", {"A": 0.5}, 0.5)], current, prices,
                      Constraints(max_gross=0.5), exclude=["halted"])
    assert result.report.fallback is Fallback.GROSS_UNREACHABLE
    assert result.allocation.sleeves == {"a": {"A": D(1000)}}
    assert [(h.symbol, h.code) for h in result.report.held_back] == [("A", HoldCode.INFEASIBLE)]


def test_a_net_ceiling_no_weights_can_meet_keeps_every_holding() -> None:
    prices = {f"N{i}": D(10) for i in range(4)}
    result = _compose([Sleeve("s", {s: 0.1 for s in prices}, 1)], {}, prices,
                      Constraints(long_only=True, max_net=-0.1))
    assert result.report.fallback is Fallback.NET_CEILING_UNREACHABLE
    assert result.allocation.sleeves == {"s": {}}


def test_a_solver_that_does_not_converge_falls_back_within_the_turnover_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not seen in practice; forced here by giving the solver no iterations at all."""
    from mts1b_portfolio import projection

    sleeves, current, prices, instruments = _random_case(3)
    monkeypatch.setattr(projection, "MAX_ITERATIONS", 0)
    result = compose(sleeves, D(10_000_000), Constraints(max_turnover=0.05), current, prices,
                     instruments, fund_id=FUND, as_of=AS_OF)
    assert result.report.fallback is Fallback.SOLVER_NOT_CONVERGED
    assert D("0.04") <= result.report.turnover <= D("0.05")  # the cap, less rounding


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), gross=st.floats(0.0, 1.5), net=st.floats(-0.5, 0.5),
       width=st.floats(0.0, 0.5), cap=st.floats(0.0, 0.2), turnover=st.floats(0.0, 0.6),
       long_only=st.booleans())
def test_compose_never_raises_and_keeps_its_invariants(
        seed: int, gross: float, net: float, width: float, cap: float, turnover: float,
        long_only: bool) -> None:
    """Any constraints, feasible or not: a target comes back, the sleeves' moves make exactly
    the fund's trade, rounding never adds turnover beyond the cap, and a static fallback trades
    nothing."""
    sleeves, current, prices, instruments = _random_case(seed)
    limits = Constraints(max_gross=gross, min_net=net - width, max_net=net + width,
                         max_weight=cap, max_turnover=turnover, long_only=long_only)
    result = compose(sleeves, D(10_000_000), limits, current, prices, instruments,
                     fund_id=FUND, as_of=AS_OF)
    before, after = current.totals(), result.allocation.totals()
    for symbol in set(before) | set(after):
        assert (after.get(symbol, D(0)) - before.get(symbol, D(0))) % \
            instruments[symbol].lot_size == 0
    assert result.report.turnover <= D(repr(turnover)) + D("1e-9")
    if result.report.fallback in (Fallback.NET_FLOOR_UNREACHABLE,
                                  Fallback.NET_CEILING_UNREACHABLE,
                                  Fallback.GROSS_UNREACHABLE):
        assert result.report.traded_notional == 0


def test_a_published_signal_is_a_sleeve() -> None:
    from mts1b_foundation import Signal

    signal = Signal(strategy_id="mom", as_of=AS_OF, weights={"X": D("0.5"), "Y": D("-0.25")})
    sleeve = Sleeve.from_signal(signal, D("0.4"))
    assert sleeve == Sleeve("mom", {"X": D("0.5"), "Y": D("-0.25")}, D("0.4"))
    result = _compose([sleeve], {}, {"X": D(100), "Y": D(50)})
    assert result.allocation.sleeves == {"mom": {"X": D(200), "Y": D(-200)}}
