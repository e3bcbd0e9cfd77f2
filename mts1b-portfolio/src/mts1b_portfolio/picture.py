"""What the composer service knows about each fund, from the events other services publish.

Why a plain object with ``apply_*`` methods: the service feeds it from the bus (the treasury's
funds, allocations and NAVs, the OMS's sleeve positions, the datalake's bars, the research
registry's transitions and signals), and a test feeds it the same events by hand. Composing is
then :meth:`FundPicture.compose` - a pure function of the picture, so what the service sends the
OMS can be worked out again from the events alone.

The rules it applies, in one place:

- **A fund's sleeves** are the strategies the treasury allocated capital to in that fund
  (``mts mts1b-treasury allocate``); a sleeve's share is its allocation over the fund's target
  NAV (what the treasury checks allocations against), scaled down together if they ever sum
  above 1. A fund with no allocation at all splits its capital equally among the
  strategies its ``FundConfig`` lists.
- **The capital** composed is the fund's last struck NAV (``mts.v1.treasury.nav.struck``), else
  its target NAV.
- **Composed away**: a sleeve whose strategy the registry last moved to a state other than
  ``paper`` or ``live`` (``disabled``, ``retired``, back to ``shadow``...). Its holdings stay as
  they are and out of the target's allocation, so the OMS does not trade them. A sleeve with
  no signal yet is not composed either (nothing says what it wants), and keeps what it holds.
- **Limits**: the fund's ``RiskEnvelope`` - ``max_gross_exposure``, ``max_net_exposure`` (both
  ways), ``max_position_pct_nav`` per name - plus the service's own turnover cap, minimum trade
  and long-only switch. ``unlimited`` is no limit.
- **Holdings** are the OMS's sleeve positions (``mts.v1.oms.positions.updated``, latest per
  fund, sleeve and symbol); **prices** the last bar close per symbol.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from mts1b_foundation import (
    UNLIMITED,
    Allocation,
    Bar,
    FundConfig,
    FundNav,
    Instrument,
    Position,
    Signal,
    SleeveAllocation,
    StrategyState,
    StrategyTransition,
)

from mts1b_portfolio.inputs import Constraints, Sleeve
from mts1b_portfolio.multi_sleeve import Composition, compose

__all__ = ["ComposerLimits", "FundPicture", "NothingToCompose"]

ZERO = Decimal(0)
TRADED = frozenset({StrategyState.PAPER, StrategyState.LIVE})
"""The states whose sleeves the composer composes."""


class NothingToCompose(Exception):
    """The fund cannot be composed now; ``reason`` says why (no sleeve has a signal, the fund
    is unknown)."""

    def __init__(self, fund_id: str, reason: str) -> None:
        super().__init__(f"fund {fund_id}: {reason}")
        self.fund_id = fund_id
        self.reason = reason


@dataclass(frozen=True)
class ComposerLimits:
    """The service's limits on top of each fund's envelope (fractions of the fund's capital;
    ``None``: none)."""

    max_turnover: float | None = None
    min_trade_notional: Decimal = ZERO
    long_only: bool = False


def _limit(value: Decimal | str) -> float | None:
    return None if value == UNLIMITED else float(value)


@dataclass
class FundPicture:
    """Everything the composer knows, by fund (see the module docstring for the rules)."""

    funds: dict[str, FundConfig] = field(default_factory=dict)
    allocations: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    navs: dict[str, FundNav] = field(default_factory=dict)
    holdings: dict[str, dict[str, dict[str, Decimal]]] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    states: dict[str, StrategyState] = field(default_factory=dict)
    signals: dict[str, Signal] = field(default_factory=dict)
    opens: dict[str, Decimal] = field(default_factory=dict)
    """Each symbol's open in its latest bar (of the session :attr:`bar_dates` names)."""
    bar_dates: dict[str, str] = field(default_factory=dict)
    """Each symbol's latest bar's date (``YYYY-MM-DD``, the date of its close in UTC)."""
    session_bars: dict[str, int] = field(default_factory=dict)
    """How many symbols' bars of each date arrived (an open tick waits for all of them)."""

    # --- events -------------------------------------------------------------------------------
    def apply_fund(self, fund_id: str, config: FundConfig | None) -> None:
        """A fund as the treasury's bucket now holds it (``None``: closed)."""
        if config is None:
            self.funds.pop(fund_id, None)
        else:
            self.funds[config.fund_id] = config

    def apply_allocation(self, allocation: Allocation) -> None:
        if allocation.strategy_id is None:
            return  # capital to the fund as a whole: its NAV says it
        self.allocations.setdefault(allocation.fund_id, {})[allocation.strategy_id] = (
            allocation.amount_usd)

    def apply_nav(self, nav: FundNav) -> None:
        held = self.navs.get(nav.fund_id)
        if held is None or (nav.session, nav.as_of) >= (held.session, held.as_of):
            self.navs[nav.fund_id] = nav

    def apply_position(self, position: Position) -> None:
        if position.strategy_id is None:
            return  # the OMS's positions are per sleeve; a fund-level one owns nothing here
        sleeve = self.holdings.setdefault(position.fund_id, {}).setdefault(
            position.strategy_id, {})
        if position.quantity == 0:
            sleeve.pop(position.symbol, None)
        else:
            sleeve[position.symbol] = position.quantity

    def apply_bar(self, bar: Bar) -> None:
        day = bar.ts.date().isoformat()
        if self.bar_dates.get(bar.symbol) == day and bar.symbol in self.prices:
            self.prices[bar.symbol] = bar.close  # a restated bar of the same session
            self.opens[bar.symbol] = bar.open
            return
        self.prices[bar.symbol] = bar.close
        self.opens[bar.symbol] = bar.open
        self.bar_dates[bar.symbol] = day
        self.session_bars[day] = self.session_bars.get(day, 0) + 1

    def apply_transition(self, transition: StrategyTransition) -> None:
        self.states[transition.strategy] = transition.to_state

    def apply_signal(self, signal: Signal) -> bool:
        """Keep ``signal`` as its strategy's latest; ``False`` (ignored) for a shadow signal
        or one older than the one held."""
        held = self.signals.get(signal.strategy_id)
        if signal.mode != "live" or (held is not None and signal.as_of < held.as_of):
            return False
        self.signals[signal.strategy_id] = signal
        return True

    # --- questions ----------------------------------------------------------------------------
    def shares(self, fund_id: str) -> dict[str, Decimal]:
        """Each sleeve's share of ``fund_id``'s capital (see the module docstring)."""
        fund = self.funds[fund_id]
        allocated = {s: a for s, a in self.allocations.get(fund_id, {}).items() if a > 0}
        if allocated:
            base = max(fund.target_nav_usd, sum(allocated.values(), ZERO))
            return {s: a / base for s, a in sorted(allocated.items())}
        if not fund.strategies:
            return {}
        even = Decimal(1) / len(fund.strategies)
        return dict.fromkeys(sorted(fund.strategies), even)

    def funds_of(self, strategy_id: str) -> list[str]:
        """The funds ``strategy_id`` has a sleeve in."""
        return sorted(f for f in self.funds if strategy_id in self.shares(f))

    def composed_away(self, fund_id: str) -> list[str]:
        """The fund's sleeves whose strategy is in a state that is not traded."""
        return sorted(s for s in self.shares(fund_id)
                      if s in self.states and self.states[s] not in TRADED)

    def fund_holdings(self, fund_id: str) -> dict[str, Decimal]:
        """Shares per symbol the fund holds, all sleeves together."""
        total: dict[str, Decimal] = {}
        for held in self.holdings.get(fund_id, {}).values():
            for symbol, qty in held.items():
                total[symbol] = total.get(symbol, ZERO) + qty
        return {s: q for s, q in total.items() if q != 0}

    def netted_weights(self, fund_id: str) -> dict[str, Decimal]:
        """The fund's target weight per symbol before its limits: each traded sleeve's
        weights times its share, summed."""
        away = set(self.composed_away(fund_id))
        out: dict[str, Decimal] = {}
        for strategy, share in self.shares(fund_id).items():
            if strategy in away or strategy not in self.signals:
                continue
            for symbol, weight in self.signals[strategy].weights.items():
                out[symbol] = out.get(symbol, ZERO) + share * weight
        return out

    def opens_of(self, session: str) -> dict[str, Decimal]:
        """The opens of ``session``'s bars (symbols whose latest bar is of that date)."""
        return {s: self.opens[s] for s, day in self.bar_dates.items()
                if day == session and s in self.opens}

    def closes_before(self, session: str) -> dict[str, Decimal]:
        """Each symbol's last close before ``session`` (those without a bar of it yet; a
        symbol with one is priced at its open instead)."""
        return {s: self.prices[s] for s, day in self.bar_dates.items()
                if day < session and s in self.prices}

    def capital(self, fund_id: str) -> Decimal:
        nav = self.navs.get(fund_id)
        return nav.nav if nav is not None and nav.nav > 0 else self.funds[fund_id].target_nav_usd

    def constraints(self, fund_id: str, limits: ComposerLimits) -> Constraints:
        risk = self.funds[fund_id].risk
        net = _limit(risk.max_net_exposure)
        return Constraints(
            max_gross=_limit(risk.max_gross_exposure), max_net=net,
            min_net=None if net is None else -net,
            max_weight=_limit(risk.max_position_pct_nav), long_only=limits.long_only,
            max_turnover=limits.max_turnover, min_trade_notional=limits.min_trade_notional)

    def compose(self, fund_id: str, as_of: dt.datetime,
                limits: ComposerLimits = ComposerLimits(), *,
                capital: Decimal | None = None, prices: Mapping[str, Decimal] | None = None,
                instruments: Mapping[str, Instrument] | None = None) -> Composition:
        """The fund's composed target at ``as_of``. Raises :class:`NothingToCompose` when no
        sleeve can be composed, and :class:`~mts1b_portfolio.errors.ComposeInputError` for
        input the composer refuses (a held symbol with no price, say). ``capital`` and
        ``prices`` replace the last NAV and the last closes (sizing at the open:
        :mod:`~mts1b_portfolio.atopen`); ``instruments`` give lot sizes (default: whole
        shares)."""
        if fund_id not in self.funds:
            raise NothingToCompose(fund_id, "the treasury's bucket does not hold this fund")
        away = self.composed_away(fund_id)
        sleeves = [Sleeve.from_signal(self.signals[s], share) if s in self.signals
                   else Sleeve(s, {}, share)
                   for s, share in self.shares(fund_id).items()
                   if s in self.signals or s in away]
        if all(s.strategy_id in away for s in sleeves):
            raise NothingToCompose(fund_id, "no sleeve of the fund has a signal to compose "
                                            "(or every one is composed away)")
        held = {s: dict(q) for s, q in self.holdings.get(fund_id, {}).items()}
        for sleeve in sleeves:
            held.setdefault(sleeve.strategy_id, {})
        current = SleeveAllocation(fund_id=fund_id, as_of=as_of, sleeves=held)
        return compose(sleeves, self.capital(fund_id) if capital is None else capital,
                       self.constraints(fund_id, limits), current,
                       self.prices if prices is None else prices, instruments,
                       fund_id=fund_id, as_of=as_of, exclude=away)
