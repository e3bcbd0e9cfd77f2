"""The composer service over real NATS JetStream and PostgreSQL, with the real OMS service
(issue #19: "the composer drops its sleeve"): signals of two strategies composed into one
fund's target and rebalanced by the OMS, a disabled strategy's sleeve dropped at once, and a
rebalance owed when the composer was killed settled by the next one.

The OMS's broker is the OMS's own test double filling at once (``RecordingBroker``); the
services, the bus and the database are real. Skipped, with the reason, without mts1b-oms or
without the servers (``python3 dev.py test`` provides them; ``MTS_DATABASE_URL`` and
``MTS_NATS_URL`` say where).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import (
    TREASURY_FUNDS_BUCKET,
    Allocation,
    Bar,
    ClockTick,
    Signal,
    StrategyState,
    StrategyTransition,
    TargetPortfolio,
    parse_message,
)
from mts1b_foundation.subjects import symbol_subject
from mts1b_platform.replayclock import hand_out

asyncpg = pytest.importorskip("asyncpg", reason="the service test needs mts1b-oms")
oms_service = pytest.importorskip("mts1b_oms.service", reason="the service test needs "
                                                              "mts1b-oms (-e ../mts1b-oms)")
testing = pytest.importorskip("mts1b_oms.testing")
bus_mod = pytest.importorskip("mts1b_platform.bus")
from mts1b_portfolio.service import (  # noqa: E402  (after the skips)
    PENDING_BUCKET,
    Pending,
    ServeOptions,
    run_service,
)

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
D = Decimal
T1 = dt.datetime(2026, 12, 4, 20, 45, tzinfo=dt.UTC)
PRICES = {"AAPL": D(100), "MSFT": D(200), "IBM": D(160)}


class World:
    """A namespace with the treasury's fund and allocations, bars, the OMS service, and a
    recorder of every target sent to the OMS."""

    def __init__(self, bus: Any, schema: str) -> None:
        self.bus = bus
        self.schema = schema
        self.targets: list[TargetPortfolio] = []
        self.composer: asyncio.Task[Any] | None = None
        self.stop = asyncio.Event()

    async def start_composer(self, *, replay_clock: bool = False) -> None:
        self.stop = asyncio.Event()
        ready = asyncio.Event()
        self.composer = asyncio.get_running_loop().create_task(run_service(
            ServeOptions(namespace=self.bus.namespace, settle_seconds=2.0, reply_timeout=15,
                         replay_clock=replay_clock),
            ready=ready, stop=self.stop))
        await asyncio.wait_for(ready.wait(), 30)

    async def stop_composer(self) -> Any:
        self.stop.set()
        assert self.composer is not None
        return await asyncio.wait_for(self.composer, 20)

    async def publish(self, subject: str, message: Any) -> None:
        await self.bus.publish_acked(subject, message)

    async def signal(self, strategy: str, weights: dict[str, str], at: dt.datetime) -> None:
        await self.publish("mts.v1.research.signals.published", Signal.model_validate(
            {"strategy_id": strategy, "as_of": at, "weights": {k: D(v)
                                                               for k, v in weights.items()}}))

    async def positions(self) -> dict[str, dict[str, Decimal]]:
        conn = await asyncpg.connect(DSN)
        try:
            rows = await conn.fetch(f"SELECT strategy_id, symbol, quantity FROM "
                                    f"{self.schema}.positions WHERE quantity <> 0")
        finally:
            await conn.close()
        out: dict[str, dict[str, Decimal]] = {}
        for r in rows:
            out.setdefault(r["strategy_id"], {})[r["symbol"]] = r["quantity"]
        return out


async def _until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s: {value!r}")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    schema = f"oms_c_{ns}"
    try:
        bus = await bus_mod.Bus.connect(namespace=ns, connect_timeout=2)
    except bus_mod.BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        await bus.drain()
        pytest.skip(f"PostgreSQL not reachable at {DSN}")
    await conn.close()
    w = World(bus, schema)
    await bus.declare_streams(["treasury", "research", "datalake", "oms", "operations"])
    fund = testing.make_fund(nav=1_000_000).model_copy(
        update={"strategies": ["momentum", "value"]})
    await (await bus.kv(TREASURY_FUNDS_BUCKET, history=5)).put("f1", fund)
    for strategy in ("momentum", "value"):
        await w.publish("mts.v1.treasury.allocations.published", Allocation(
            fund_id="f1", strategy_id=strategy, as_of=T1, amount_usd=D(400_000)))
    for sym, px in PRICES.items():
        await w.publish(symbol_subject("bars", sym), Bar(
            symbol=sym, ts=T1 - dt.timedelta(minutes=15), open=px, high=px, low=px, close=px,
            volume=D(10_000)))

    async def record(msg: Any) -> None:
        w.targets.append(parse_message(TargetPortfolio, msg.data))

    recorder = await bus.nc.subscribe(bus.wire_subject("mts.v1.oms.commands.rebalance"),
                                      cb=record)
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = oms_service.ServeOptions(
        dsn=DSN, funds=[], funds_from_treasury=True,
        instruments=testing.make_registry(*PRICES), broker="mts1b_oms.testing:RecordingBroker",
        broker_args={"fill_price": "100.25"}, schema=schema, namespace=ns, prices=PRICES)
    oms = asyncio.get_running_loop().create_task(oms_service.run_service(opts, ready=ready,
                                                                         stop=stop))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield w
    finally:
        if w.composer is not None and not w.composer.done():
            await w.stop_composer()
        stop.set()
        await asyncio.wait_for(oms, 20)
        await recorder.unsubscribe()
        await testing.drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


async def test_signals_composed_and_a_disabled_sleeve_dropped(world: World) -> None:
    await world.start_composer()
    await world.signal("momentum", {"AAPL": "0.5", "MSFT": "0.5"}, T1)
    await world.signal("value", {"IBM": "1"}, T1)
    want = {"momentum": {"AAPL": D(2000), "MSFT": D(1000)}, "value": {"IBM": D(2500)}}

    async def traded() -> bool:
        return await world.positions() == want
    await _until(traded)
    # one target for the two signals of one time (the second completed the fund)
    assert len(world.targets) == 1
    assert world.targets[0].as_of == T1 and world.targets[0].allocation is not None

    # value is disabled: f1 is composed again at once, without value's sleeve
    t2 = T1 + dt.timedelta(hours=1)
    await world.publish("mts.v1.research.strategies.changed", StrategyTransition(
        transition_id=1, strategy="value", version=1, from_state=StrategyState.PAPER,
        to_state=StrategyState.DISABLED, actor="ops", ts=t2))
    await _until(lambda: len(world.targets) == 2)
    dropped = world.targets[1]
    assert dropped.as_of == t2
    assert dropped.allocation is not None and set(dropped.allocation.sleeves) == {"momentum"}
    assert "IBM" not in dropped.allocation.totals()

    # later signals: value's is not composed; momentum's trades, value's shares stay put
    t3 = T1 + dt.timedelta(days=1)
    await world.signal("value", {"IBM": "0.5", "MSFT": "0.5"}, t3)
    await world.signal("momentum", {"AAPL": "1"}, t3)
    want = {"momentum": {"AAPL": D(4000)}, "value": {"IBM": D(2500)}}
    await _until(traded)
    assert world.targets[-1].as_of == t3
    assert world.targets[-1].allocation is not None
    assert set(world.targets[-1].allocation.sleeves) == {"momentum"}
    service = await world.stop_composer()
    assert [reply.ok for _, reply in service.sent] == [True] * len(service.sent)
    assert service.pending == {}


async def test_on_a_replay_clock_a_session_is_composed_at_its_tick(world: World) -> None:
    """With --replay-clock the composer waits for the replay's tick (not a settle time): the
    session's signals are composed into one target when the tick comes, and the tick is
    answered once the OMS has taken it."""
    await world.start_composer(replay_clock=True)
    await world.signal("momentum", {"AAPL": "1"}, T1)  # value stays silent
    await asyncio.sleep(2.5)  # longer than the settle time: nothing is composed without a tick
    assert world.targets == []
    tick = ClockTick(replay_id="r1", seq=1, session="2026-12-04", ts=T1, bars=3)
    await hand_out(world.bus, tick, ["portfolio"], timeout=30)
    assert [t.as_of for t in world.targets] == [T1]  # answered after the OMS took it
    await hand_out(world.bus, tick, ["portfolio"], timeout=30)  # asked again: nothing new
    assert len(world.targets) == 1
    await world.stop_composer()

async def test_a_rebalance_owed_by_a_killed_composer_is_settled_by_the_next(
        world: World) -> None:
    """What a composer killed after taking a signal leaves: the signal in its bucket and the
    fund pending. The next one composes and sends it; sending it again is a duplicate."""
    await world.start_composer()
    await world.signal("momentum", {"AAPL": "1"}, T1)
    await _until(lambda: len(world.targets) == 1)  # after the settle time: value is silent
    first = {"momentum": {"AAPL": D(4000)}}

    async def traded() -> bool:
        return await world.positions() == first
    await _until(traded)
    await world.stop_composer()

    # as a SIGKILL right after the signal's ack leaves it: the fund still owed its rebalance
    kv = await world.bus.kv(PENDING_BUCKET, history=1)
    await kv.put("f1", Pending(T1, "signal of momentum", time.time()).to_json())
    await world.start_composer()
    await _until(lambda: len(world.targets) == 2)
    assert world.targets[1].as_of == T1
    service = await world.stop_composer()
    assert service.pending == {} and await kv.get("f1") is None
    assert await world.positions() == first  # the same rebalance again traded nothing


async def test_hostile_signals_are_dead_lettered_or_alerted_and_the_service_goes_on(
        world: World) -> None:
    """Bytes that are no signal are dead-lettered; a signal the composer cannot compose (a
    symbol no bar priced, a weight that would need more capital than the fund has) raises an
    alert naming the fund and the cause; the next good signal still trades."""
    await world.bus.declare_streams(["dlq"])
    alerts: list[bytes] = []

    async def on_alert(msg: Any) -> None:
        alerts.append(msg.data)
    sub = await world.bus.nc.subscribe(
        world.bus.wire_subject("mts.v1.operations.alerts.raised"), cb=on_alert)
    await world.start_composer()
    for junk in (b"\x00not json", b'{"schema_version": 3}', b'{"strategy_id": "momentum"}'):
        await world.bus.publish_bytes("mts.v1.research.signals.published", junk)
    await world.signal("momentum", {"GME": "1"}, T1)  # never priced
    await world.signal("value", {"IBM": "1"}, T1)
    await _until(lambda: alerts)
    assert b"GME" in alerts[0] and b"f1" in alerts[0]
    await world.signal("momentum", {"AAPL": "1"}, T1 + dt.timedelta(days=1))

    async def traded() -> bool:
        return await world.positions() == {"momentum": {"AAPL": D(4000)},
                                           "value": {"IBM": D(2500)}}
    await _until(traded)
    info = await world.bus.js.stream_info(world.bus.stream_for("dlq"))
    assert info.state.messages == 3
    await sub.unsubscribe()
    service = await world.stop_composer()
    assert service.pending == {}

def _spawn(ns: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mts1b_portfolio.cli", "serve", "--namespace", ns,
           "--settle", "0.2", "--reply-timeout", "10"]
    with log.open("ab") as out:  # the child holds its own copy
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
async def test_sigkill_at_random_points_loses_no_rebalance(world: World, tmp_path: Path) -> None:
    """``mts mts1b-portfolio serve`` as a process, SIGKILLed at random moments while one
    strategy's signals stream in, restarted each time: the fund must end at the last signal's
    target, every target the OMS took must be one of the signals', and nothing stays
    pending."""
    rng = random.Random(19)
    times = [T1 + dt.timedelta(days=i) for i in range(12)]
    aapl = [str(D(rng.randint(1, 9)) / 10) for _ in times]  # momentum's AAPL weight each day
    log = tmp_path / "composer.log"
    proc = _spawn(world.bus.namespace, log)
    kills = 0
    try:
        for i, at in enumerate(times):
            if i % 4 == 0:  # each process is serving before its signals come
                await _until(lambda n=kills: _serving(log) > n, 30)
            await world.signal("momentum", {"AAPL": aapl[i], "MSFT": "0.1"}, at)
            await asyncio.sleep(rng.uniform(0, 0.5))
            if i % 4 == 3:  # while it composes, sends, waits for the OMS or settles
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                proc = _spawn(world.bus.namespace, log)
        last = {"AAPL": D(aapl[-1]) * 400_000 / 100, "MSFT": D("0.1") * 400_000 / 200}

        async def at_last_target() -> bool:
            return await world.positions() == {"momentum": last}
        await _until(at_last_target, 60)
        kv = await world.bus.kv(PENDING_BUCKET, history=1)
        await _until(lambda: _empty(kv), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert kills == 3
    assert world.targets, "no target reached the OMS"
    assert {t.as_of for t in world.targets} <= set(times)
    assert world.targets[-1].as_of == times[-1]
    assert len({t.as_of for t in world.targets}) >= 3  # the killed ones composed some


def _serving(log: Path) -> int:
    text = log.read_text() if log.exists() else ""
    return text.count('"message": "portfolio composer serving"')


async def _empty(kv: Any) -> bool:
    return not await kv.keys()
