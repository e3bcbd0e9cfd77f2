"""Backtest-paper parity (issue #20): the same strategy run by the GPUbacktester's
``run_single`` and by the paper loop (the OMS's rebalance and a real ``PaperClient``) over the
same stored bars, with the same cost model and next-open fills, makes the same trades and ends
at the same NAV.

The two paths see the data as each would in use: the paper loop reads raw bars and applies the
splits, cash dividends and delistings to the venue's positions and cash; ``run_single`` reads
the panel adjusted for splits only, with the dividends as cash (``cash_dividend``). Quantities
are compared in split-adjusted shares (the paper's shares of a date divided by the split factor
after it).

Share rounding rule: fractional shares. ``run_single`` holds float shares and cannot trade
whole ones, so the paper instruments have a lot of ``1e-8`` share (the finest that keeps
quantity x price within the 12 decimals of the wire's money fields for prices of up to four
decimals) and the OMS rounds each order towards zero to it. A paper quantity may therefore
differ from the backtest's by this order's lot plus the residue the previous order of the
symbol left in the position (one lot of that date: four lots' worth in today's shares across
a 4:1 split), and by float rounding (1e-9 relative) otherwise. Anything more is a bug in one
of the two paths.

``paper_parity(...)`` is also what ``bench/paper_parity.py`` runs on the S&P 500 file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mts1b_datalake import Store, build_panel
from mts1b_datalake.corporate_actions import back_adjustment_factors
from mts1b_foundation import OHLCV_FIELDS, Equity, StrategySpec, UniversePanel
from mts1b_research.paperloop import ProportionalCommission, run_paper, strategy_targets

brokers = pytest.importorskip("mts1b_brokers", reason="the parity check trades on mts1b-brokers' "
                              "PaperClient (pip install -e ../mts1b-brokers)")
oms_rebalance = pytest.importorskip("mts1b_oms.rebalance", reason="the parity check sizes with "
                                    "mts1b-oms's rebalance (pip install -e ../mts1b-oms)")
backtester = pytest.importorskip("mts1b_GPUbacktester", reason="the parity check compares with "
                                 "mts1b-GPUbacktester's run_single (pip install -e "
                                 "../mts1b-GPUbacktester)")
CASH_DIVIDEND: str = pytest.importorskip("mts1b_GPUbacktester.data").CASH_DIVIDEND

LOT = Decimal("1e-8")
FUND = "parity"


@dataclasses.dataclass(frozen=True)
class Parity:
    """What one comparison found (``bench/paper_parity.py`` prints it)."""

    sessions: int
    symbols: int
    paper_trades: int
    backtest_trades: int
    unmatched: list[tuple[Any, ...]]
    max_qty_abs: float          # split-adjusted shares
    max_qty_rel: float
    max_qty_excess: float       # beyond the rounding rule's allowance (0 when within it)
    max_price_rel: float
    max_nav_rel: float
    final_nav_paper: Decimal
    final_nav_backtest: float
    final_nav_rel: float
    paper_seconds: float
    backtest_seconds: float
    reasons: dict[str, int]
    held_over_split: int        # (symbol, ex-date) events met with a paper position
    held_over_dividend: int
    targets: Mapping[dt.date, Mapping[str, Decimal]]   # what the paper loop decided


def raw_market(store: Store, symbols: Sequence[str], start: dt.date,
               end: dt.date) -> UniversePanel:
    """The stored bars, unadjusted, with the events as fields."""
    return build_panel(list(symbols), start, end, adjust="none", store=store,
                       fields=(*OHLCV_FIELDS, "dividend", "split_ratio"))


def split_adjusted(raw: UniversePanel) -> tuple[UniversePanel, np.ndarray]:
    """The panel ``run_single`` trades: prices adjusted for splits only (the last row raw),
    dividends as cash per split-adjusted share; and the price factor (raw x factor)."""
    close = np.asarray(raw.close, dtype=np.float64)
    split = np.nan_to_num(np.asarray(raw.field("split_ratio"), dtype=np.float64), nan=1.0)
    factor, volume_factor = back_adjustment_factors(close, np.zeros_like(close), split)
    dividend = np.nan_to_num(np.asarray(raw.field("dividend"), dtype=np.float64))
    panel = UniversePanel(
        raw.dates, raw.symbols, open=np.asarray(raw.open) * factor,
        high=np.asarray(raw.high) * factor, low=np.asarray(raw.low) * factor,
        close=close * factor, volume=np.asarray(raw.volume) * volume_factor, mask=raw.mask,
        extra={CASH_DIVIDEND: dividend * factor}, calendar=raw.calendar,
        periods_per_year=raw.periods_per_year)
    return panel, factor


def weekly_decisions(dates: np.ndarray) -> list[int]:
    """The last session of each week but the run's last (it would trade after the end)."""
    days = dates.astype("datetime64[D]").astype(np.int64)
    week = (days - 4) // 7
    return [t for t in range(len(days) - 1) if week[t + 1] != week[t]]


async def _paper(raw: UniversePanel, spec: StrategySpec, store: Store, decisions: list[int],
                 cash: Decimal, cost_bps: Decimal, lookback: int) -> Any:
    first = raw.dates[0].astype("datetime64[D]").item()
    instruments = {s: Equity(symbol=s, lot_size=LOT, min_quantity=LOT) for s in raw.symbols}
    venue = brokers.PaperClient(
        accounts={FUND: cash}, participation_rate=None, instruments=instruments.values(),
        commission=ProportionalCommission(cost_bps),
        # buys are checked before the sells that pay for them fill (all at the same open)
        leverage=2, start=dt.datetime.combine(first, dt.time(12), tzinfo=dt.UTC))
    async with venue:
        return await run_paper(
            raw, strategy_targets(spec, store, raw, lookback_sessions=lookback), decisions,
            venue=venue, rebalance=oms_rebalance.rebalance, fund_id=FUND,
            strategy_id=spec.name, cost_bps=cost_bps, instruments=instruments)


def paper_parity(store: Store, spec: StrategySpec, symbols: Sequence[str], start: dt.date,
                 end: dt.date, *, cash: Decimal = Decimal(100_000),
                 cost_bps: Decimal = Decimal(10), lookback: int = 80,
                 decisions: list[int] | None = None) -> Parity:
    """Run both paths over ``[start, end]`` and compare them (see the module docstring)."""
    raw = raw_market(store, symbols, start, end)
    rows = weekly_decisions(raw.dates) if decisions is None else decisions
    t0 = time.perf_counter()
    paper = asyncio.run(_paper(raw, spec, store, rows, cash, cost_bps, lookback))
    paper_seconds = time.perf_counter() - t0
    panel, factor = split_adjusted(raw)
    col = {s: a for a, s in enumerate(raw.symbols)}
    weights = np.zeros(panel.shape)
    for day, targets in paper.targets.items():
        t = int(np.searchsorted(panel.dates.astype("datetime64[D]"), np.datetime64(day)))
        for sym, w in targets.items():
            weights[t, col[sym]] = float(w)
    t0 = time.perf_counter()
    result = backtester.run_single(
        universe=panel, weights=weights, rebal=tuple(np.datetime64(d) for d in paper.targets),
        fill="next_open", cost_bps=float(cost_bps), initial_nav=float(cash), benchmark=False,
        trade_on="schedule")
    backtest_seconds = time.perf_counter() - t0
    return _compare(paper, result, raw, factor, paper_seconds, backtest_seconds)


def _compare(paper: Any, result: Any, raw: UniversePanel, factor: np.ndarray,
             paper_seconds: float, backtest_seconds: float) -> Parity:
    col = {s: a for a, s in enumerate(raw.symbols)}
    row = {d.item(): t for t, d in enumerate(raw.dates.astype("datetime64[D]"))}
    mine: dict[tuple[Any, ...], tuple[float, float, float]] = {}
    last_lot: dict[str, float] = {}
    for tr in paper.trades:
        f = float(factor[row[tr.date], col[tr.symbol]])
        key = (tr.date, tr.symbol, tr.reason)
        q, p, lot = mine.get(key, (0.0, 0.0, 0.0))
        # allowance: this order's lot and the residue the previous one left in the position
        # (both in split-adjusted shares)
        allowed = float(LOT) / f + last_lot.get(tr.symbol, 0.0)
        last_lot[tr.symbol] = float(LOT) / f
        mine[key] = (q + float(tr.quantity) / f, float(tr.price) * f, allowed)
    theirs: dict[tuple[Any, ...], tuple[float, float]] = {}
    trades = result.trades
    for d, s, q, p, why in zip(trades.date, trades.symbol, trades.shares, trades.price,
                               trades.reason, strict=True):
        key = (d.date(), s, str(why))
        q0, _ = theirs.get(key, (0.0, 0.0))
        theirs[key] = (q0 + float(q), float(p))
    unmatched = sorted(set(mine) ^ set(theirs), key=str)
    q_abs = q_rel = excess = p_rel = 0.0
    for key in set(mine) & set(theirs):
        (q, p, lot), (bq, bp) = mine[key], theirs[key]
        diff = abs(q - bq)
        q_abs, q_rel = max(q_abs, diff), max(q_rel, diff / max(abs(bq), 1e-300))
        excess = max(excess, diff - (lot + 1e-9 * abs(bq)))
        p_rel = max(p_rel, abs(p - bp) / bp)
    nav_bt = result.equity.to_numpy()
    nav_paper = np.array([float(x) for x in paper.nav])
    nav_rel = float(np.max(np.abs(nav_paper - nav_bt) / np.abs(nav_bt)))
    reasons: dict[str, int] = {}
    for tr in paper.trades:
        reasons[tr.reason] = reasons.get(tr.reason, 0) + 1
    # the paper position of each symbol at each close, in split-adjusted shares
    held = np.zeros(raw.shape)
    for tr in paper.trades:
        t, a = row[tr.date], col[tr.symbol]
        held[t:, a] += float(tr.quantity) / float(factor[t, a])
    before = np.vstack([np.zeros((1, raw.shape[1])), np.abs(held[:-1]) > 1e-6])
    split = np.nan_to_num(np.asarray(raw.field("split_ratio")), nan=1.0) != 1.0
    dividend = np.nan_to_num(np.asarray(raw.field("dividend"))) > 0
    return Parity(
        sessions=raw.shape[0], symbols=raw.shape[1], paper_trades=len(mine),
        backtest_trades=len(theirs), unmatched=unmatched, max_qty_abs=q_abs, max_qty_rel=q_rel,
        max_qty_excess=max(excess, 0.0), max_price_rel=p_rel, max_nav_rel=nav_rel,
        final_nav_paper=paper.nav[-1], final_nav_backtest=float(nav_bt[-1]),
        final_nav_rel=abs(float(paper.nav[-1]) - float(nav_bt[-1])) / abs(float(nav_bt[-1])),
        paper_seconds=paper_seconds, backtest_seconds=backtest_seconds, reasons=reasons,
        held_over_split=int((split & (before > 0)).sum()),
        held_over_dividend=int((dividend & (before > 0)).sum()), targets=paper.targets)


# -- the CI check: 20 synthetic names, one year ------------------------------------------------

SEED, START, END = 22, dt.date(2020, 3, 2), dt.date(2021, 2, 26)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, list[str]]:
    from mts1b_datalake.synthetic import generate_market

    store = Store(Path(tmp_path_factory.mktemp("parity-lake")))
    synthetic = generate_market(seed=SEED, n_assets=20, start="2017-01-01", end="2021-12-31")
    synthetic.write(store)
    symbols = sorted(s for s in synthetic.symbols.symbol if s != "SPY")
    return store, symbols


def _spec(symbols: list[str]) -> StrategySpec:
    return StrategySpec(name="parity", factor="f_momentum_12_1",
                        params={"h_long": 40, "h_skip": 5}, universe=symbols,
                        sizing={"method": "rank_weighted", "long_only": True})


def test_the_universe_has_a_split_a_dividend_and_a_delisting(
        market: tuple[Store, list[str]]) -> None:
    store, symbols = market
    raw = raw_market(store, symbols, START, END)
    assert len(symbols) == 20
    assert (np.nan_to_num(raw.field("split_ratio"), nan=1.0) != 1.0).any()
    assert (np.nan_to_num(raw.field("dividend")) > 0).any()
    close = np.asarray(raw.close)
    assert (~np.isfinite(close[-1])).any()            # a name whose prices stop in the year
    events = store.events(symbols, START, END, kinds=["delisting"])
    assert len(events) >= 1


def test_run_single_and_the_paper_loop_make_the_same_trades_and_nav(
        market: tuple[Store, list[str]]) -> None:
    store, symbols = market
    found = paper_parity(store, _spec(symbols), symbols, START, END)
    assert found.unmatched == []
    assert found.paper_trades == found.backtest_trades > 100
    # the events were traded through, not around: a position was held over the split and
    # over ex-dates (the venue adjusted it and paid the cash), and one was closed at delisting
    assert found.held_over_split >= 1
    assert found.held_over_dividend >= 1
    assert found.reasons.get("delisted", 0) >= 1
    assert found.max_qty_excess == 0.0, found
    assert found.max_price_rel <= 1e-12, found
    assert found.final_nav_rel <= 1e-6, found
    assert found.max_nav_rel <= 1e-6, found


def test_the_paper_targets_are_run_singles_own(market: tuple[Store, list[str]]) -> None:
    """The same strategy, not just the same weights: the targets the paper loop computed at
    each decision (point in time, from the datalake as of that close) are those of
    ``run_single``'s factor path (``compute_targets`` on the back-adjusted panel), to the 8
    decimals a published weight has (half a unit of the last place)."""
    store, symbols = market
    spec = _spec(symbols)
    raw = raw_market(store, symbols, START, END)
    rows = weekly_decisions(raw.dates)[:12]
    paper = asyncio.run(_paper(raw, spec, store, rows, Decimal(100_000), Decimal(10), 80))
    panel = build_panel(symbols, START - dt.timedelta(days=200), END, store=store)
    engine = pytest.importorskip("mts1b_GPUbacktester.engine")
    returns = pytest.importorskip("mts1b_GPUbacktester.data").market_arrays(
        panel, "next_open").returns
    theirs = engine.compute_targets(panel, spec.factor, spec.params, spec.sizing, returns)
    days = panel.dates.astype("datetime64[D]")
    assert len(paper.targets) == 12
    for day, targets in paper.targets.items():
        t = int(np.searchsorted(days, np.datetime64(day)))
        mine = np.array([float(targets.get(s, 0)) for s in panel.symbols])
        assert np.abs(mine - theirs[t]).max() <= 5e-9 + 1e-15
