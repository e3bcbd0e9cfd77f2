"""The signal service over a real NATS JetStream and PostgreSQL with the synthetic demo market
(issue #19): the FAQ's momentum_v3 registered, its signal published on the shadow subject while
it is a shadow strategy and on the live one once promoted, each rebalance once; the registry's
transitions on mts.v1.research.strategies.changed; a disable halted by a real OMS first; the
report and one-off signal commands."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from mts1b_datalake.store import Store
from mts1b_datalake.synthetic import install_demo_market
from mts1b_foundation import (
    Signal,
    StrategySpec,
    StrategyState,
    StrategyTransition,
    parse_message,
)
from mts1b_platform.bus import Bus, BusError
from mts1b_research.cli import app
from mts1b_research.db import ResearchDb
from mts1b_research.promotion import PromotionEvidence
from mts1b_research.registry import StrategyRegistry
from mts1b_research.service import BusTransitionPublisher, SignalService
from typer.testing import CliRunner

from .conftest import DSN, open_db

pytestmark = pytest.mark.integration
AT = dt.datetime(2024, 12, 31, 20, 45, tzinfo=dt.UTC)  # close-15m of 2024-12-31


def momentum_v3() -> StrategySpec:
    return StrategySpec(name="momentum_v3", factor="f_momentum_12_1",
                        params={"h_long": 252, "h_skip": 21}, universe="us-large-cap",
                        sizing={"method": "kelly_voltarget_12"}, rebalance="close-15m",
                        horizon=5)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return install_demo_market(tmp_path_factory.mktemp("demo-lake"))


@pytest.fixture
async def stack() -> AsyncIterator[tuple[Bus, ResearchDb, StrategyRegistry]]:
    try:
        bus = await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    db = await open_db()
    await bus.declare_streams(["research", "operations"])
    registry = StrategyRegistry(db, publisher=BusTransitionPublisher(bus))
    try:
        yield bus, db, registry
    finally:
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()


async def _messages(bus: Bus, subject: str) -> list[bytes]:
    """Every message the research stream stores on ``subject``, in order."""
    stream = bus.stream_for("research")
    info = await bus.js.stream_info(stream)
    wire = bus.wire_subject(subject)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(stream, seq)
        if msg.subject == wire:
            out.append(bytes(msg.data or b""))
    return out


async def test_shadow_then_paper_signals_go_where_they_belong(
        stack: tuple[Bus, ResearchDb, StrategyRegistry], demo_store: Store) -> None:
    bus, _db, registry = stack
    await registry.register(momentum_v3(), actor="alice")
    await registry.shadow("momentum_v3", actor="alice", reason="watch it")
    service = SignalService(bus, registry, demo_store)
    [spec] = await service.active()
    assert spec.state is StrategyState.SHADOW
    first = await service.publish_due(spec, AT)
    again = await service.publish_due(spec, AT)  # the same rebalance: stored once
    assert first is not None and again is not None and first.mode == "shadow"
    assert first.weights and first.sessions == 60 and first.horizon == 5
    assert first.t_stat is not None and first.rank_ic is not None
    assert first.p_value is not None and 0 <= first.p_value <= 1
    assert abs(sum(first.weights.values(), Decimal(0))) <= Decimal(3)
    shadow = await _messages(bus, "mts.v1.research.signals.shadow")
    assert len(shadow) == 1
    assert parse_message(Signal, shadow[0]) == first
    assert await _messages(bus, "mts.v1.research.signals.published") == []

    await registry.promote("momentum_v3", StrategyState.PAPER, actor="alice",
                           reason="enough evidence",
                           evidence=PromotionEvidence(sessions=60, mean_ic=first.ic,
                                                      t_stat=first.t_stat))
    [paper] = await service.active()
    live = await service.publish_due(paper, AT)
    assert live is not None and live.mode == "live"
    assert len(await _messages(bus, "mts.v1.research.signals.published")) == 1
    changes = [parse_message(StrategyTransition, m)
               for m in await _messages(bus, "mts.v1.research.strategies.changed")]
    assert [(c.from_state.value, c.to_state.value, c.actor) for c in changes] == [
        ("draft", "shadow", "alice"), ("shadow", "paper", "alice")]


async def test_a_strategy_without_data_raises_an_alert_not_an_error(
        stack: tuple[Bus, ResearchDb, StrategyRegistry], demo_store: Store) -> None:
    bus, _db, registry = stack
    spec = momentum_v3().model_copy(update={"universe": ["NOPE"]})
    await registry.register(spec, actor="alice")
    await registry.shadow("momentum_v3", actor="alice", reason="x")
    service = SignalService(bus, registry, demo_store)
    [active] = await service.active()
    assert await service.publish_due(active, AT) is None
    alerts = await bus.js.stream_info(bus.stream_for("operations"))
    assert alerts.state.messages == 1


def test_report_and_signal_commands(demo_store: Store, tmp_path: Path) -> None:
    schema = f"rs_cli_{uuid.uuid4().hex[:10]}"
    env = {"MTS_DATABASE_URL": DSN, "MTS_RESEARCH_SCHEMA": schema}
    runner = CliRunner()
    try:
        made = runner.invoke(app, ["strategies", "register", "--name", "momentum_v3",
                                   "--factor", "f_momentum_12_1", "--param", "h_long=252",
                                   "--param", "h_skip=21", "--universe", "us-large-cap",
                                   "--sizing-method", "kelly_voltarget_12", "--horizon", "5"],
                             env=env)
        assert made.exit_code == 0, made.output
        one = runner.invoke(app, ["signal", "momentum_v3", "--date", "2024-12-31", "--store",
                                  str(demo_store.root)], env=env)
        assert one.exit_code == 0, one.output
        signal = parse_message(Signal, one.stdout)
        assert signal.strategy_id == "momentum_v3" and signal.weights
        page = tmp_path / "report.html"
        rep = runner.invoke(app, ["report", "momentum_v3", "--end", "2024-12-31", "--store",
                                  str(demo_store.root), "--out", str(page)], env=env)
        assert rep.exit_code == 0, rep.output
        assert json.loads(rep.stdout)["strategy"] == "momentum_v3"
        html = page.read_text()
        assert "momentum_v3" in html and html.count("<svg") >= 3
    finally:
        asyncio.run(_drop(schema))


async def _drop(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()




async def test_going_live_takes_a_signed_risk_key(demo_store: Store, tmp_path: Path) -> None:
    """The research service answers signed strategy commands: an operations key may not put
    a strategy live, a risk key may (the transition records its name), a copied command is
    refused, and the command line sends the same signed command with --key-file."""
    from mts1b_foundation import CommandReply, ReplyCode, StrategyCommand
    from mts1b_platform.signing import KeyRegistry, SigningKey
    from mts1b_research.service import ServeOptions, run_service

    try:
        bus = await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    db = await open_db()
    ops, cro = SigningKey.generate("ops"), SigningKey.generate("cro")
    keys = KeyRegistry([ops.registered(["operations"]), cro.registered(["risk"])])
    registry = StrategyRegistry(db)
    await registry.register(momentum_v3(), actor="alice")
    await registry.shadow("momentum_v3", actor="alice", reason="watch")
    evidence = PromotionEvidence(sessions=60, mean_ic=0.02, t_stat=2.5)
    await registry.promote("momentum_v3", StrategyState.PAPER, actor="alice", reason="ok",
                           evidence=evidence)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(
        ServeOptions(dsn=DSN, store=demo_store.root, schema=db.schema, namespace=bus.namespace,
                     keys=keys), ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    fields = {"action": "promote", "strategy": "momentum_v3", "to_state": "live",
              "evidence": {"sessions": 60, "mean_ic": 0.02, "t_stat": 2.5}, "reason": "go"}

    async def ask(command: StrategyCommand) -> CommandReply:
        reply = await bus.request("mts.v1.research.commands.strategy", command, timeout=10,
                                  reply_model=CommandReply)
        assert isinstance(reply, CommandReply)
        return reply

    try:
        refused = await ask(ops.sign_command(StrategyCommand, fields))
        assert (refused.ok, refused.code) == (False, ReplyCode.UNAUTHORIZED)
        assert "puts the strategy live" in (refused.message or "")
        signed = cro.sign_command(StrategyCommand, fields)
        applied = await ask(signed)
        assert applied.ok and applied.context["to_state"] == "live"
        assert (await ask(signed)).code is ReplyCode.REPLAY_REFUSED
        # every answer is on the record (the audit chain reads it): refused ones too
        from mts1b_foundation import CommandAnswered, parse_message
        from mts1b_platform.follow import history

        stored = await history(bus, "research", "mts.v1.research.answers.recorded")
        answers = [parse_message(CommandAnswered, data) for _, data in stored]
        assert [(a.ok, a.code) for a in answers] == [
            (False, "UNAUTHORIZED"), (True, None), (False, "REPLAY_REFUSED")]
        assert answers[0].request["key_id"] == ops.name
        [*_, last] = await registry.history("momentum_v3")
        assert (last.to_state, last.actor) == (StrategyState.LIVE, "cro")
        # the command line: disable (registry only), then enable with the risk key
        await registry.disable("momentum_v3", actor="alice", reason="pause")
        key_file = tmp_path / "cro.key"
        cro.save(key_file)
        result = await asyncio.to_thread(CliRunner().invoke, app, [
            "strategies", "enable", "momentum_v3", "--reason", "resume", "--key-file",
            str(key_file), "--namespace", bus.namespace or ""])
        assert result.exit_code == 0, result.output
        assert "disabled -> live" in result.stdout
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()


async def test_on_a_replay_clock_each_session_publishes_at_its_close(
        stack: tuple[Bus, ResearchDb, StrategyRegistry], demo_store: Store) -> None:
    """--replay-clock: the replay's tick for a session has every active strategy that
    rebalances in it publish its signal stamped with the session's close, once; a weekly
    strategy publishes only on the week's last session."""
    from mts1b_foundation import ClockTick
    from mts1b_platform.replayclock import ReplayClock, hand_out, serve_ticks

    bus, _db, registry = stack
    weekly = momentum_v3().model_copy(update={"name": "momentum_weekly", "rebalance": "weekly"})
    for spec in (momentum_v3(), weekly):
        await registry.register(spec, actor="alice")
        await registry.shadow(spec.name, actor="alice", reason="watch it")
        await registry.promote(spec.name, StrategyState.PAPER, actor="alice", reason="evidence",
                               evidence=PromotionEvidence(sessions=60, mean_ic=0.05,
                                                          t_stat=3.0))
    service = SignalService(bus, registry, demo_store)
    clock = ReplayClock()
    sub = await serve_ticks(bus, "research", service.on_tick, clock)
    closes = {"2024-12-26": dt.datetime(2024, 12, 26, 21, tzinfo=dt.UTC),  # a Thursday
              "2024-12-27": dt.datetime(2024, 12, 27, 21, tzinfo=dt.UTC)}  # the week's last
    for seq, (session, close) in enumerate(closes.items(), start=1):
        await hand_out(bus, ClockTick(replay_id="r1", seq=seq, session=session, ts=close,
                                      bars=300), ["research"])
    await hand_out(bus, ClockTick(replay_id="r1", seq=2, session="2024-12-27",
                                  ts=closes["2024-12-27"], bars=300), ["research"])
    published = [parse_message(Signal, m)
                 for m in await _messages(bus, "mts.v1.research.signals.published")]
    assert [(s.strategy_id, s.as_of) for s in published] == [
        ("momentum_v3", closes["2024-12-26"]), ("momentum_v3", closes["2024-12-27"]),
        ("momentum_weekly", closes["2024-12-27"])]
    assert clock.now() == closes["2024-12-27"]
    await sub.unsubscribe()
