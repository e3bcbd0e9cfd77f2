"""A strategy's whole life across the libraries, on real NATS JetStream and PostgreSQL, each
stage fed by what the stage before it produced (issue #25).

Research half (module-scoped fixtures hand each artifact on):

1. ``lake``: a seeded synthetic market ingested through the datalake's one ingest path with its
   quality checks on, two broken rows among the good ones (mts1b-datalake);
2. ``factor``: 40/5-day momentum evaluated on the panel built from that store, look-ahead
   checked (mts1b-quantkit over mts1b-datalake);
3. ``backtest``: the factor's scores sized by quantkit and traded by ``run_single``
   (mts1b-GPUbacktester);
4. ``strategy``: the same factor, parameters and sizing registered in the PostgreSQL registry
   and promoted to paper on the evidence of the backtest's signal statistics
   (mts1b-research).

Trading half (``trading``): that strategy traded over a week of the same store by the services
as production runs them - the paper venue, the OMS, the treasury, the signal service, the
composer and the audit recorder - each on its own bus connection in one event loop, in
lockstep with the datalake's replay; then the books are read back and checked against each
other.

Why in one process and not ``paper up``'s processes: the same ``run_service`` entry points run,
over the same NATS subjects and PostgreSQL schemas, and the suite stays within its minute on two
cores (``mts1b-research/tests/test_paper_loop_parity.py`` runs the processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from mts1b_foundation import CommandReply, FundNav, Signal
    from mts1b_platform.signing import KeyRegistry

integration = pytest.mark.integration
"""The tests that need the servers (the first three run on the datalake's files alone)."""

SEED, N_ASSETS = 11, 10
MARKET = ("2019-01-01", "2019-12-31")
FACTOR, PARAMS = "f_momentum_12_1", {"h_long": 40, "h_skip": 5}
SIZING: dict[str, Any] = {"method": "rank_weighted", "long_only": True}
STRATEGY = "lifecycle_momentum"
CASH = Decimal(1_000_000)
COMMISSION_BPS = Decimal(5)
REPLAY = (dt.date(2019, 6, 3), dt.date(2019, 6, 10))
"""Six sessions, a rebalance decided at each close: the first five fill at the next session's
open; the last one's orders are still working when the replay ends."""


# --- research half ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Lake:
    """The datalake store the rest of the module reads, and what its ingest reported."""

    store: Any
    symbols: tuple[str, ...]
    report: Any
    bars: int


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """The synthetic market through ``Store.ingest`` (row rules, then QC, then one commit), with
    a row of an invalid symbol and a row of negative volume added to the generator's bars."""
    from mts1b_datalake import SourceData, Store
    from mts1b_datalake.synthetic import generate_market

    market = generate_market(seed=SEED, n_assets=N_ASSETS, start=MARKET[0], end=MARKET[1],
                             with_benchmark=False)
    good = market.bars
    first = good.iloc[0]
    broken = pd.DataFrame([{**first.to_dict(), "symbol": "../etc"},
                           {**first.to_dict(), "date": first["date"] + pd.Timedelta(days=400),
                            "volume": -5.0}])
    source = SourceData(pd.concat([good, broken], ignore_index=True), events=market.events,
                        symbols=market.symbols, files=["lifecycle:synthetic"])
    store = Store(tmp_path_factory.mktemp("lifecycle-lake"))
    report = store.ingest(source, source_name="lifecycle")
    symbols = tuple(sorted(market.symbols["symbol"]))
    return Lake(store, symbols, report, len(good))


def test_ingest_stores_every_good_bar_and_rejects_the_broken_rows(lake: Lake) -> None:
    """Crosses mts1b-datalake (ingest, row rules, QC, store) and mts1b-foundation (symbols)."""
    report = lake.report
    assert report.added == lake.bars
    assert len(report.rejected) == 2
    assert sorted(r.field for r in report.rejected) == ["symbol", "volume"]
    # the quality checks ran on the rows the row rules kept, every symbol of them
    assert (report.qc.rows, report.qc.symbols) == (lake.bars, N_ASSETS)
    stored = lake.store.read_bars(list(lake.symbols), MARKET[0], MARKET[1])
    assert len(stored) == lake.bars
    assert sorted(stored["symbol"].unique()) == list(lake.symbols)


@dataclasses.dataclass(frozen=True)
class Factor:
    """The stored panel, the factor's scores on it and the weights sized from them."""

    panel: Any
    scores: np.ndarray
    weights: np.ndarray


@pytest.fixture(scope="module")
def factor(lake: Lake) -> Factor:
    """The factor on the back-adjusted panel of the ingested store, sized as the strategy
    will be (what the backtest trades and the signal service must reproduce)."""
    from mts1b_datalake import build_panel
    from mts1b_quantkit.factors import evaluate
    from mts1b_quantkit.sizing import size

    panel = build_panel(list(lake.symbols), MARKET[0], MARKET[1], store=lake.store)
    scores = evaluate(FACTOR, panel, **PARAMS)
    weights = size(scores, SIZING, mask=panel.mask)
    return Factor(panel, scores, np.nan_to_num(weights))


def test_the_factor_reads_the_stored_panel_and_no_future_row(lake: Lake, factor: Factor) -> None:
    """Crosses mts1b-datalake (``build_panel``) and mts1b-quantkit (``evaluate``, look-ahead
    check, sizing)."""
    from mts1b_quantkit.factors import check_lookahead

    T, A = factor.panel.shape
    assert factor.scores.shape == (T, A) and A == N_ASSETS
    warm = PARAMS["h_long"]
    assert np.isnan(factor.scores[: warm - 1]).all()  # no score before the look-back is full
    assert np.isfinite(factor.scores[-1]).sum() >= A - 2
    assert check_lookahead(FACTOR, factor.panel, **PARAMS).ok
    # long only, fully invested once scores exist
    invested = factor.weights.sum(axis=1)
    assert (factor.weights >= 0).all()
    assert np.allclose(invested[warm + 5:], 1.0)


@dataclasses.dataclass(frozen=True)
class Backtest:
    """``run_single``'s result on the factor's weights."""

    result: Any
    trades: int


@pytest.fixture(scope="module")
def backtest(factor: Factor) -> Backtest:
    """Those weights traded at the next open with the paper venue's commission."""
    from mts1b_GPUbacktester import run_single

    result = run_single(universe=factor.panel, weights=factor.weights, fill="next_open",
                        cost_bps=float(COMMISSION_BPS), initial_nav=float(CASH),
                        benchmark=False)
    return Backtest(result, len(result.trades.date))


def test_the_backtest_trades_the_factors_weights(factor: Factor, backtest: Backtest) -> None:
    """Crosses mts1b-quantkit (the weights) and mts1b-GPUbacktester (``run_single``): the
    backtester's own factor path on the same panel gives the same equity curve."""
    from mts1b_GPUbacktester import run_single

    equity = backtest.result.equity.to_numpy()
    assert equity[0] == float(CASH)
    assert backtest.trades > 100
    assert np.isfinite(equity).all() and equity[-1] != equity[0]
    again = run_single(FACTOR, PARAMS, factor.panel, sizing=SIZING, fill="next_open",
                       cost_bps=float(COMMISSION_BPS), initial_nav=float(CASH),
                       benchmark=False)
    assert np.array_equal(again.equity.to_numpy(), equity)


@dataclasses.dataclass(frozen=True)
class Registered:
    """The registry's schema, the evidence the promotion took, the transitions, the refusal."""

    schema: str
    evidence: Any
    history: list[Any]
    refused: Exception


@pytest.fixture(scope="module")
def strategy(servers: Any, lake: Lake, factor: Factor,
             backtest: Backtest) -> Iterator[Registered]:
    """The backtested strategy registered and promoted to paper in a schema of its own, on the
    evidence of its backtest: the IC statistics of the weights it traded."""
    from mts1b_foundation import StrategySpec, StrategyState
    from mts1b_research.errors import TransitionRefused
    from mts1b_research.promotion import MinimumEvidence, PromotionEvidence
    from mts1b_research.registry import StrategyRegistry
    from mts1b_research.stats import horizon_returns, trailing_stats

    schema = servers.unique("lc_research_")
    close = np.asarray(factor.panel.close, dtype=np.float64)
    stats = trailing_stats(np.where(factor.panel.mask, factor.weights, np.nan),
                           horizon_returns(close, 1), horizon=1, window=120)
    evidence = PromotionEvidence(sessions=stats.sessions, mean_ic=stats.ic,
                                 t_stat=stats.t_stat, hit_rate=stats.hit_rate)
    spec = StrategySpec(name=STRATEGY, factor=FACTOR, params=PARAMS,
                        universe=list(lake.symbols), sizing=SIZING, rebalance="daily")

    async def register() -> tuple[list[Any], Exception]:
        rule = MinimumEvidence(min_sessions=100)
        async with await StrategyRegistry.open(servers.dsn, schema=schema,
                                               rule=rule) as registry:
            await registry.register(spec, actor="lifecycle", reason="backtested")
            await registry.shadow(STRATEGY, actor="lifecycle", reason="watch first")
            refused: Exception
            try:  # a week of evidence is not enough for this rule
                await registry.promote(STRATEGY, StrategyState.PAPER, actor="lifecycle",
                                       reason="too soon",
                                       evidence=dataclasses.replace(evidence, sessions=5))
            except TransitionRefused as exc:
                refused = exc
            else:
                raise AssertionError("the rule let five sessions through")
            await registry.promote(STRATEGY, StrategyState.PAPER, actor="lifecycle",
                                   reason="the backtest's evidence", evidence=evidence)
            return await registry.history(STRATEGY), refused

    history, refused = asyncio.run(register())
    try:
        yield Registered(schema, evidence, history, refused)
    finally:
        asyncio.run(servers.drop_schemas(schema))


@integration
def test_the_strategy_is_promoted_on_the_backtests_evidence(strategy: Registered) -> None:
    """Crosses mts1b-GPUbacktester / mts1b-quantkit (the weights whose IC is the evidence) and
    mts1b-research (registry, promotion rule, transitions in PostgreSQL)."""
    states = [(t.from_state.value, t.to_state.value) for t in strategy.history]
    assert states[-2:] == [("draft", "shadow"), ("shadow", "paper")]
    assert strategy.evidence.sessions == 120
    assert strategy.history[-1].verdict is not None and strategy.history[-1].verdict.ok
    assert "sessions 5 is fewer than 100" in str(strategy.refused)


# --- trading half -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Trading:
    """What the trading half left behind, read back once every service had stopped."""

    namespace: str
    sessions: list[dt.date]
    fund_id: str
    fills: list[dict[str, Any]]
    """The OMS's ``fills`` table (PostgreSQL), in time order."""
    navs: dict[str, FundNav]
    """Each session's NAV as the treasury published it on ``mts.v1.treasury.nav.struck``."""
    signals: list[Signal]
    """What the signal service published, in order."""
    sent: list[tuple[str, CommandReply]]
    """Each target the composer sent and the OMS's answer."""
    gate_reply: CommandReply
    audit_schema: str
    audit_entries: int
    checkpoints: Path
    """Where the recorder wrote its signed checkpoints (outside the database)."""
    audit_keys: KeyRegistry
    """The key registry that holds the recorder's public key."""


@contextlib.asynccontextmanager
async def _service(run: Any, opts: Any, timeout: float = 30) -> AsyncIterator[
        asyncio.Task[Any]]:
    """``run(opts, ready=, stop=)`` as a task, ready before the block, stopped after it."""
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run(opts, ready=ready, stop=stop))
    waiter = asyncio.get_running_loop().create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises what stopped it
    assert ready.is_set(), f"{run.__module__} was not ready within {timeout}s"
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@contextlib.asynccontextmanager
async def _venue(plan: Any) -> AsyncIterator[None]:
    """The paper venue as ``mts mts1b-brokers serve paper --replay-clock`` runs it."""
    from mts1b_brokers.models import BpsCommission, BpsSlippage
    from mts1b_brokers.registry import get_broker
    from mts1b_brokers.service import BrokerService
    from mts1b_platform.bus import Bus
    from mts1b_platform.replayclock import start_clock

    bus = await Bus.connect(namespace=plan.namespace)
    clock = await start_clock(bus)
    venue = get_broker("paper", name="paper", accounts={plan.fund_id: plan.cash},
                       participation_rate=str(plan.participation_rate),
                       commission=BpsCommission(plan.commission_bps, quantum=Decimal("0.01")),
                       slippage=BpsSlippage(Decimal(0)), seed=0, leverage=str(plan.leverage),
                       clock=clock)
    service = BrokerService(venue, bus, replay_clock=clock, durable=True)
    await service.start()
    try:
        yield
    finally:
        await service.stop()
        await bus.drain()


def _treasury_cli(argv: list[str], dsn: str) -> None:
    from mts1b_treasury.cli import app
    from typer.testing import CliRunner

    done = CliRunner().invoke(app, argv, env={"MTS_DATABASE_URL": dsn})
    assert done.exit_code == 0, done.output


def _plan(ns: str, symbols: tuple[str, ...]) -> Any:
    """The loop as ``paper up`` would plan it: fund, schemas, lockstep order, commissions."""
    from mts1b_research.paper import PaperPlan

    return PaperPlan(strategy=STRATEGY, universe=",".join(symbols), symbols=symbols,
                     start=REPLAY[0], end=REPLAY[1], fund_id=f"lc-{ns}", cash=CASH,
                     namespace=ns, speed=0.0,  # as fast as the lockstep goes
                     commission_bps=COMMISSION_BPS)


async def _trade(servers: Any, lake: Lake, strategy: Registered, folder: Path,
                 plan: Any) -> Trading:
    from mts1b_datalake.replay import BarReplay
    from mts1b_foundation import (
        CommandReply,
        Equity,
        FundNav,
        Order,
        Side,
        SubmitOrder,
        parse_message,
    )
    from mts1b_oms import service as oms_service
    from mts1b_oms.instruments import InstrumentRegistry
    from mts1b_operations.audit.recorder import RecorderOptions, run_recorder
    from mts1b_platform.bus import Bus
    from mts1b_platform.follow import history
    from mts1b_platform.signing import KeyRegistry, Role, SigningKey
    from mts1b_portfolio import service as composer
    from mts1b_research import service as research
    from mts1b_research.paper import write_inputs
    from mts1b_treasury import service as treasury

    ns = plan.namespace
    write_inputs(plan, folder)  # the OMS's instruments and the signing keys, as `paper up`
    (folder / "fund.json").write_text(json.dumps(plan.fund_config()), encoding="utf-8")
    common = ["--namespace", ns, "--schema", plan.treasury_schema, "--actor", "lifecycle"]
    await asyncio.to_thread(_treasury_cli, [
        "fund", "create", "--file", str(folder / "fund.json"), "--opening-cash", str(CASH),
        "--opened-at", REPLAY[0].isoformat(), *common], servers.dsn)
    await asyncio.to_thread(_treasury_cli, [
        "allocate", "--fund", plan.fund_id, "--amount", str(CASH), "--strategy", STRATEGY,
        "--reason", "lifecycle", *common], servers.dsn)
    audit_key = SigningKey.load(folder / "audit.key")
    bus = await Bus.connect(namespace=ns, connect_timeout=5)
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(_service(run_recorder, RecorderOptions(
                dsn=servers.dsn, schema=plan.audit_schema, namespace=ns, skew_threshold=0,
                signing_key=audit_key, checkpoint_dir=folder / "checkpoints",
                checkpoint_every=50)))
            await stack.enter_async_context(_venue(plan))
            await stack.enter_async_context(_service(oms_service.run_service,
                                                     oms_service.ServeOptions(
                dsn=servers.dsn, funds=[], funds_from_treasury=True,
                instruments=InstrumentRegistry.load(folder / "instruments.csv"),
                broker="paper", broker_wait=10, schema=plan.oms_schema, namespace=ns,
                keys=KeyRegistry.load(folder / "keys.json"), replay_clock=True)))
            await stack.enter_async_context(_service(treasury.run_service, treasury.ServeOptions(
                dsn=servers.dsn, schema=plan.treasury_schema, namespace=ns,
                replay_clock=True)))
            signals = await stack.enter_async_context(_service(
                research.run_service, research.ServeOptions(
                    dsn=servers.dsn, store=lake.store.root, schema=strategy.schema,
                    namespace=ns, strategies=(STRATEGY,), replay_clock=True)))
            composed = await stack.enter_async_context(_service(
                composer.run_service, composer.ServeOptions(namespace=ns, replay_clock=True)))
            replay = BarReplay(list(lake.symbols), REPLAY[0], REPLAY[1], store=lake.store)
            report = await replay.run(bus, lockstep=plan.lockstep, lockstep_timeout=60)
            # the risk gates of the OMS that traded the week: an order worth more than the
            # fund's whole NAV (its max_order_notional), in fewer shares than the size gate's
            # cap, is refused before any venue sees it
            big = Order(idempotency_key=f"lc-gate-{ns}", fund_id=plan.fund_id,
                        strategy_id=STRATEGY, instrument=Equity(symbol=lake.symbols[0]),
                        side=Side.BUY, quantity=Decimal(900_000))
            gate_reply = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=big),
                                           timeout=10, reply_model=CommandReply)
            assert isinstance(gate_reply, CommandReply)
            await _recorded(servers.dsn, plan.audit_schema, report.sessions)
        # every service has stopped (the recorder last): the chain holds all it will hold
        entries = await _count(servers.dsn, plan.audit_schema)
        navs: dict[str, FundNav] = {}
        for _seq, data in await history(bus, "treasury", "mts.v1.treasury.nav.struck"):
            nav = parse_message(FundNav, data)
            navs[nav.session] = nav
        return Trading(
            namespace=ns, sessions=[pd.Timestamp(d).date() for d in replay.sessions],
            fund_id=plan.fund_id, fills=await _fills(servers.dsn, plan.oms_schema), navs=navs,
            signals=list(signals.result().published), sent=list(composed.result().sent),
            gate_reply=gate_reply, audit_schema=plan.audit_schema, audit_entries=entries,
            checkpoints=folder / "checkpoints",
            audit_keys=KeyRegistry([audit_key.registered([Role.OPERATIONS])]))
    finally:
        await bus.delete_streams()
        await bus.drain()


async def _count(dsn: str, schema: str, where: str = "true") -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval(f'SELECT count(*) FROM "{schema}".audit_entries '
                                    f"WHERE {where}")
    finally:
        await conn.close()
    return int(found)


async def _recorded(dsn: str, schema: str, sessions: int) -> None:
    """Wait until the recorder has the last session's NAV (it records as the bus delivers)."""
    for _ in range(200):
        if await _count(dsn, schema, "subject = 'mts.v1.treasury.nav.struck'") == sessions:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the audit recorder did not record every NAV within 10 s")


async def _fills(dsn: str, schema: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT * FROM "{schema}".fills ORDER BY ts, trade_id')
    finally:
        await conn.close()
    return [dict(r) for r in rows]


@pytest.fixture(scope="module")
def trading(servers: Any, lake: Lake, strategy: Registered,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trading]:
    folder = tmp_path_factory.mktemp("lifecycle-paper")
    plan = _plan(servers.unique("lc"), lake.symbols)
    try:
        yield asyncio.run(_trade(servers, lake, strategy, folder, plan))
    finally:
        asyncio.run(servers.drop_schemas(plan.oms_schema, plan.treasury_schema,
                          plan.audit_schema))


def _raw(lake: Lake, field: str) -> dict[tuple[dt.date, str], Decimal]:
    """The stored (raw, unadjusted) ``field`` of every bar of the replayed week, as the replay
    published it: a Decimal of the float's shortest repr."""
    bars = lake.store.read_bars(list(lake.symbols), REPLAY[0], REPLAY[1])
    return {(pd.Timestamp(d).date(), s): Decimal(repr(float(v)))
            for d, s, v in zip(bars["date"], bars["symbol"], bars[field], strict=True)}


def _signed(fill: dict[str, Any]) -> Decimal:
    quantity: Decimal = fill["quantity"]
    return quantity if fill["side"] == "buy" else -quantity


@integration
def test_the_signal_service_publishes_the_factors_weights(factor: Factor,
                                                          trading: Trading) -> None:
    """Crosses mts1b-research (registry -> signal service on ``mts.v1.research.signals.*``),
    mts1b-datalake (the store, point in time) and mts1b-quantkit: each session's published
    weights are the research half's sized factor at that session, to a weight's 8 decimals."""
    assert [s.as_of.date() for s in trading.signals] == trading.sessions
    days = factor.panel.dates.astype("datetime64[D]")
    for signal in trading.signals:
        assert signal.strategy_id == STRATEGY and signal.strategy_version == 1
        t = int(np.searchsorted(days, np.datetime64(signal.as_of.date())))
        mine = np.array([float(signal.weights.get(s, 0)) for s in factor.panel.symbols])
        assert np.abs(mine - factor.weights[t]).max() <= 5e-9 + 1e-15


@integration
def test_the_composer_sends_each_target_and_the_oms_fills_it_at_the_next_open(
        lake: Lake, trading: Trading) -> None:
    """Crosses mts1b-portfolio (the composer's target on ``mts.v1.oms.commands.rebalance``),
    mts1b-oms (rebalance, risk gates, orders in PostgreSQL) and mts1b-brokers (the paper venue
    filling on the replayed bars): every order of a rebalance decided at a close filled once,
    at the next session's stored open, with 5 bps of commission rounded to the cent."""
    from mts1b_foundation import RebalanceReport, parse_message

    assert len(trading.sent) == len(trading.sessions)
    reports = []
    for fund_id, reply in trading.sent:
        assert fund_id == trading.fund_id and reply.ok, reply
        assert reply.context["refused"] == 0
        reports.append(parse_message(RebalanceReport, reply.payload or ""))
    # the last session's rebalance would fill after the replay: its orders are still working
    decided = {oid: r.as_of.date() for r in reports[:-1] for oid in r.orders.values()}
    assert sorted(f["order_id"] for f in trading.fills) == sorted(decided)
    assert len(trading.fills) == 49
    opens = _raw(lake, "open")
    following = dict(zip(trading.sessions, trading.sessions[1:], strict=False))
    for fill in trading.fills:
        day = fill["ts"].date()
        assert day == following[decided[fill["order_id"]]]
        assert fill["price"] == opens[(day, fill["symbol"])]
        exact = fill["quantity"] * fill["price"] * COMMISSION_BPS / 10_000
        assert abs(fill["commission"] - exact) <= Decimal("0.005")
        assert fill["strategy_id"] == STRATEGY and not fill["busted"]


@integration
def test_the_oms_risk_gates_deny_an_order_over_the_funds_limit(servers: Any,
                                                              trading: Trading) -> None:
    """Crosses mts1b-treasury (the fund and its limits, loaded by the OMS from the treasury's
    bucket), mts1b-oms (the pre-trade gates) and mts1b-operations (the audit chain): a submit
    on ``mts.v1.oms.commands.submit`` for more than the whole fund is denied by the notional
    gate and never reaches the venue."""
    from mts1b_foundation import OrderStatus, ReplyCode

    reply = trading.gate_reply
    assert not reply.ok and reply.status is OrderStatus.DENIED and reply.order_id
    assert reply.code is ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM, reply
    assert reply.denial is not None and reply.denial.context["limit"] == str(CASH)
    assert reply.order_id not in {f["order_id"] for f in trading.fills}
    # the denial is on the record (mts1b-operations' chain), and nothing from the venue
    recorded = asyncio.run(_mentioning(servers.dsn, trading.audit_schema, reply.order_id))
    assert [e.subject for e in recorded] == ["mts.v1.oms.orders.submitted",
                                             "mts.v1.oms.orders.denied"]


@integration
def test_the_treasury_nav_is_the_cash_and_marks_the_fills_leave(
        lake: Lake, trading: Trading) -> None:
    """Crosses mts1b-brokers (fills) -> mts1b-oms (order events) -> mts1b-treasury (ledger and
    NAV on ``mts.v1.treasury.nav.struck``), with mts1b-datalake's closes as marks: each
    session's NAV, cash, positions' value and fees are exactly what the fills imply."""
    actions = lake.store.events(list(lake.symbols), REPLAY[0], REPLAY[1],
                                kinds=["split", "dividend", "delisting"])
    assert len(actions) == 0  # the week has no corporate action: cash moves by fills alone
    closes = _raw(lake, "close")
    assert sorted(trading.navs) == [d.isoformat() for d in trading.sessions]
    cash, held = CASH, dict.fromkeys(lake.symbols, Decimal(0))
    for day in trading.sessions:
        todays = [f for f in trading.fills if f["ts"].date() == day]
        for fill in todays:
            cash -= _signed(fill) * fill["price"] + fill["commission"]
            held[fill["symbol"]] += _signed(fill)
        value = sum((q * closes[(day, s)] for s, q in held.items()), Decimal(0))
        nav = trading.navs[day.isoformat()]
        assert nav.cash == cash, day
        assert nav.positions_value == value, day
        assert nav.nav == cash + value, day
        assert nav.fees == sum((f["commission"] for f in todays), Decimal(0)), day
        assert nav.pnl_by_strategy.get(STRATEGY, 0) == nav.pnl and nav.unattributed == 0
    first = trading.navs[trading.sessions[0].isoformat()]
    assert first.nav == CASH and first.positions == 0  # the first orders fill the next day
    assert trading.navs[trading.sessions[-1].isoformat()].positions == N_ASSETS


async def _verify(dsn: str, trading: Trading) -> tuple[Any, list[Any]]:
    """``mts mts1b-operations audit verify --checkpoints DIR --keys ...`` of the run's chain."""
    from mts1b_operations.audit.chain import AuditChain
    from mts1b_operations.audit.checkpoints import load_checkpoint_dir
    from mts1b_operations.audit.db import AuditDb
    from mts1b_operations.audit.verify import verify_chain

    checkpoints, unreadable = load_checkpoint_dir(trading.checkpoints, trading.audit_schema)
    assert checkpoints and not unreadable
    db = await AuditDb.open(dsn, schema=trading.audit_schema)
    try:
        return await verify_chain(AuditChain(db), checkpoints=checkpoints,
                                  keys=trading.audit_keys), checkpoints
    finally:
        await db.close()


async def _mentioning(dsn: str, schema: str, subject_id: str) -> list[Any]:
    from mts1b_operations.audit.chain import AuditChain
    from mts1b_operations.audit.db import AuditDb

    db = await AuditDb.open(dsn, schema=schema)
    try:
        return await AuditChain(db).mentioning(subject_id)
    finally:
        await db.close()


async def _tamper(dsn: str, schema: str, seq: int) -> None:
    """Alter one stored event as a superuser would, with the append-only triggers off."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(f'UPDATE "{schema}".audit_entries SET event = '
                               "overlay(event placing 'X' from 3 for 1) WHERE seq = $1", seq)
    finally:
        await conn.close()


@integration
def test_the_audit_chain_holds_the_run_verifies_and_catches_a_tampered_entry(
        servers: Any, trading: Trading) -> None:
    """Crosses every service above (their events on ``mts.v1.*``) and mts1b-operations (the
    recorder's PostgreSQL hash chain and ``verify``): a filled order's life is in the chain,
    the whole chain verifies, and one altered event makes it fail, naming the entry."""
    report, checkpoints = asyncio.run(_verify(servers.dsn, trading))
    assert report.ok, report.as_dict()
    assert report.checked == trading.audit_entries > len(trading.fills)
    # every signed checkpoint (one after each 50 entries or more) matches the chain, which is
    # anchored up to the last of them; only the entries after it are not
    last = max(c.tree_size for c in checkpoints)
    assert report.checkpoints_matched == len(checkpoints) >= trading.audit_entries // 100
    assert report.anchored == last
    assert [(f.kind, f.seq) for f in report.findings] == (
        [("unanchored", last)] if last < trading.audit_entries else [])
    order_id = trading.fills[0]["order_id"]
    entries = asyncio.run(_mentioning(servers.dsn, trading.audit_schema, order_id))
    subjects = [e.subject for e in entries]
    # the OMS's events in their order (the venue's reports, recorded as they come, interleave)
    assert [s for s in subjects if s.startswith("mts.v1.oms.")] == [
        "mts.v1.oms.orders.submitted", "mts.v1.oms.orders.accepted",
        "mts.v1.oms.orders.filled", "mts.v1.oms.fills.recorded"]
    assert subjects.count("mts.v1.brokers.paper.execution") == 2  # accepted, then filled
    filled = next(e for e in entries if e.subject == "mts.v1.oms.orders.filled")
    asyncio.run(_tamper(servers.dsn, trading.audit_schema, filled.seq))
    after, _ = asyncio.run(_verify(servers.dsn, trading))
    assert not after.ok
    assert [(f.kind, f.seq) for f in after.findings if f.kind != "unanchored"] == [
        ("altered", filled.seq)]
