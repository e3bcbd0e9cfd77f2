"""The composer service's picture of a fund: who has a sleeve with what share, who is composed
away, which limits apply, and the composition it gives (issue #19: the composer drops a
disabled strategy's sleeve)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from mts1b_foundation import (
    Allocation,
    Bar,
    FundConfig,
    FundNav,
    Position,
    RiskEnvelope,
    Signal,
    StrategyState,
    StrategyTransition,
)
from mts1b_portfolio.errors import ComposeInputError
from mts1b_portfolio.picture import ComposerLimits, FundPicture, NothingToCompose

D = Decimal
T0 = dt.datetime(2026, 12, 4, 20, 45, tzinfo=dt.UTC)
SHA = "0" * 64


def _fund(strategies: list[str], **risk: object) -> FundConfig:
    envelope = {**RiskEnvelope.unrestricted().model_dump(), **risk}
    return FundConfig(fund_id="f1", name="Fund one", target_nav_usd=D(1_000_000), broker="paper",
                      broker_account_id="acc1", strategies=strategies,
                      risk=RiskEnvelope.model_validate(envelope))


def _signal(strategy: str, weights: dict[str, str], at: dt.datetime = T0,
            mode: str = "live") -> Signal:
    return Signal.model_validate({"strategy_id": strategy, "as_of": at, "mode": mode,
                                  "weights": {k: D(v) for k, v in weights.items()}})


def _allocate(picture: FundPicture, strategy: str, amount: int) -> None:
    picture.apply_allocation(Allocation(fund_id="f1", strategy_id=strategy, as_of=T0,
                                        amount_usd=D(amount)))


def _transition(strategy: str, to: StrategyState, n: int = 1) -> StrategyTransition:
    return StrategyTransition(transition_id=n, strategy=strategy, version=1,
                              from_state=StrategyState.PAPER, to_state=to, actor="ops",
                              ts=T0 + dt.timedelta(hours=1))


@pytest.fixture
def picture() -> FundPicture:
    p = FundPicture()
    p.apply_fund("f1", _fund(["momentum", "value"]))
    for sym, px in (("AAPL", "100"), ("MSFT", "200"), ("XOM", "50")):
        p.apply_bar(Bar(symbol=sym, ts=T0, open=D(px), high=D(px), low=D(px), close=D(px),
                        volume=D(1000)))
    return p


def test_shares_are_allocations_over_the_target_nav_else_even(picture: FundPicture) -> None:
    assert picture.shares("f1") == {"momentum": D("0.5"), "value": D("0.5")}
    _allocate(picture, "momentum", 600_000)
    _allocate(picture, "value", 200_000)
    assert picture.shares("f1") == {"momentum": D("0.6"), "value": D("0.2")}
    _allocate(picture, "value", 0)  # an allocation taken back ends the sleeve
    assert picture.shares("f1") == {"momentum": D("0.6")}
    assert picture.funds_of("value") == [] and picture.funds_of("momentum") == ["f1"]
    # allocations above the target NAV (it was lowered) are scaled down together
    _allocate(picture, "value", 900_000)
    assert picture.shares("f1") == {"momentum": D("0.4"), "value": D("0.6")}


def test_capital_is_the_last_struck_nav(picture: FundPicture) -> None:
    assert picture.capital("f1") == D(1_000_000)
    for session, nav in (("2026-12-04", "1010000"), ("2026-12-03", "990000")):
        picture.apply_nav(FundNav(fund_id="f1", session=session, as_of=T0, nav=D(nav),
                                  previous_nav=D(nav), cash=D(nav), positions_value=D(0),
                                  pnl=D(0), inputs_sha256=SHA, outputs_sha256=SHA))
    assert picture.capital("f1") == D(1_010_000)  # the later session, not the later message


def test_the_envelope_and_the_service_limits_make_the_constraints(
        picture: FundPicture) -> None:
    picture.apply_fund("f1", _fund(["momentum"], max_gross_exposure=D("1.5"),
                                   max_net_exposure=D("0.5"), max_position_pct_nav=D("0.1")))
    c = picture.constraints("f1", ComposerLimits(max_turnover=0.3,
                                                 min_trade_notional=D(100)))
    assert (c.max_gross, c.max_net, c.min_net, c.max_weight) == (1.5, 0.5, -0.5, 0.1)
    assert (c.max_turnover, c.min_trade_notional, c.long_only) == (0.3, D(100), False)
    picture.apply_fund("f1", _fund(["momentum"], max_position_pct_nav="unlimited"))
    assert picture.constraints("f1", ComposerLimits()).max_weight is None


def test_a_disabled_strategy_is_composed_away_and_keeps_its_holdings(
        picture: FundPicture) -> None:
    picture.apply_signal(_signal("momentum", {"AAPL": "1"}))
    picture.apply_signal(_signal("value", {"MSFT": "0.5", "XOM": "0.5"}))
    both = picture.compose("f1", T0)
    assert both.allocation.sleeves == {"momentum": {"AAPL": D(5000)},
                                       "value": {"MSFT": D(1250), "XOM": D(5000)}}
    for sleeve, shares in both.allocation.sleeves.items():
        for sym, qty in shares.items():
            picture.apply_position(Position(fund_id="f1", strategy_id=sleeve, symbol=sym,
                                            quantity=qty, as_of=T0))
    picture.apply_transition(_transition("value", StrategyState.DISABLED))
    assert picture.composed_away("f1") == ["value"]
    later = T0 + dt.timedelta(hours=1)
    without = picture.compose("f1", later)
    assert "value" not in without.allocation.sleeves
    assert without.report.excluded == ("value",) and without.report.kept_sleeves == ("value",)
    # momentum's target did not move and value's shares stay as they are (not traded)
    assert without.allocation.sleeves == {"momentum": {"AAPL": D(5000)}}
    assert without.target.weights["MSFT"] == D("0.25")
    picture.apply_transition(_transition("value", StrategyState.PAPER, 2))
    assert picture.composed_away("f1") == []


def test_nothing_to_compose_and_bad_input_say_why(picture: FundPicture) -> None:
    with pytest.raises(NothingToCompose, match="no sleeve"):
        picture.compose("f1", T0)
    with pytest.raises(NothingToCompose, match="does not hold this fund"):
        picture.compose("f9", T0)
    picture.apply_signal(_signal("momentum", {"GME": "1"}))  # never priced
    with pytest.raises(ComposeInputError, match="GME"):
        picture.compose("f1", T0)


def test_shadow_and_older_signals_are_not_taken(picture: FundPicture) -> None:
    assert not picture.apply_signal(_signal("momentum", {"AAPL": "1"}, mode="shadow"))
    assert picture.apply_signal(_signal("momentum", {"AAPL": "1"}))
    assert not picture.apply_signal(_signal("momentum", {"MSFT": "1"},
                                            at=T0 - dt.timedelta(days=1)))
    assert picture.signals["momentum"].weights == {"AAPL": D(1)}
    picture.apply_fund("f1", None)
    assert picture.funds_of("momentum") == []
