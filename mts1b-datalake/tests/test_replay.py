"""Replay: historical bars on mts.v1.datalake.bars.<symbol>, paced, idempotent ids."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pandas as pd
import pytest
from mts1b_datalake import Store
from mts1b_datalake.errors import UnknownFieldError
from mts1b_datalake.replay import BarReplay, bar_subject
from mts1b_datalake.rows import RowCheck
from mts1b_foundation import Bar, InMemoryPublisher, model_for_subject, symbol_of_subject


@pytest.fixture
async def nats_bus() -> AsyncIterator[Any]:
    """A bus on the real NATS JetStream (``MTS_NATS_URL``) in a namespace of its own, whose
    streams are deleted afterwards; the test is skipped, with the reason, without a server."""
    from mts1b_platform.bus import Bus, BusError, BusSettings

    url = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
    try:
        bus = await Bus.connect(BusSettings(url=url, namespace=f"t{uuid.uuid4().hex[:10]}",
                                            connect_timeout=2))
    except BusError as exc:
        pytest.skip(f"no NATS server reachable at {url} ({exc}); run `mts dev up`")
    try:
        yield bus
    finally:
        await bus.delete_streams()
        await bus.drain()


def small_store(store: Store) -> Store:
    days = pd.bdate_range("2021-03-01", "2021-03-12")
    rows = [{"symbol": s, "date": d, "open": 10.0 + i, "high": 11.0 + i, "low": 9.0 + i,
             "close": 10.5 + i, "volume": 100.0} for i, d in enumerate(days)
            for s in ("AAA", "BBB")]
    rows[5]["low"] = 0.0  # stored (a price <= 0 is QC's to judge), but cannot be a wire Bar
    store.write(pd.DataFrame(rows))
    return store


def test_subject_is_registered_for_bars() -> None:
    assert bar_subject("AAPL") == "mts.v1.datalake.bars.AAPL"
    assert model_for_subject(bar_subject("AAPL")) is Bar
    assert bar_subject("BRK.B") == "mts.v1.datalake.bars.BRK_2EB"
    assert bar_subject("EURUSD=X") == "mts.v1.datalake.bars.EURUSD_3DX"
    with pytest.raises(UnknownFieldError, match="cannot travel as a subject token"):
        bar_subject("../../etc/passwd")


def dotted_store(store: Store) -> Store:
    """Real symbols that are not plain tokens, and one hostile name, over three sessions.

    Today's store refuses the hostile name (the row rules); a store written before them may
    still hold one, and replay must skip it. So the rows are written once with the rules and
    once more with them switched off, as an older version would have written them."""
    days = pd.bdate_range("2021-03-01", "2021-03-03")
    rows = pd.DataFrame([{"symbol": s, "date": d, "open": 10.0, "high": 11.0, "low": 9.0,
                          "close": 10.5, "volume": 100.0}
                         for d in days for s in ("BRK.B", "EURUSD=X", "../../etc/passwd")])
    report = store.write(rows)
    assert report.added == 6 and {r.value for r in report.rejected} == {"../../etc/passwd"}
    with mock.patch.multiple("mts1b_datalake.store", valid_symbols=list,
                             check_bars=lambda bars, **_: RowCheck(bars)):
        store.write(rows)
    return store


async def test_symbols_that_are_not_plain_tokens_are_replayed(store: Store) -> None:
    dotted_store(store)
    publisher = InMemoryPublisher()
    replay = BarReplay(["BRK.B", "EURUSD=X", "../../etc/passwd"], "2021-03-01", "2021-03-03",
                       store=store)
    report = await replay.run(publisher)
    assert report.skipped_symbols == ["../../etc/passwd"]
    assert report.published == 6
    assert [s for s, _, _ in publisher.published[:2]] == [
        "mts.v1.datalake.bars.BRK_2EB", "mts.v1.datalake.bars.EURUSD_3DX"]
    for subject, bar, msg_id in publisher.published:
        assert symbol_of_subject(subject) == bar.symbol
        assert msg_id.startswith(f"bar:{bar.symbol}:2021-03-0")


async def test_replay_publishes_every_valid_bar_in_order(store: Store) -> None:
    small_store(store)
    publisher = InMemoryPublisher()
    replay = BarReplay(["AAA", "BBB"], "2021-03-01", "2021-03-12", store=store)
    report = await replay.run(publisher)
    assert report.sessions == 10 and report.published == 19 and report.skipped_invalid == 1
    subjects = [s for s, _, _ in publisher.published]
    assert subjects[:2] == ["mts.v1.datalake.bars.AAA", "mts.v1.datalake.bars.BBB"]
    bars = [m for _, m, _ in publisher.published]
    assert all(isinstance(b, Bar) for b in bars)
    assert [b.ts for b in bars] == sorted(b.ts for b in bars)
    assert bars[0].ts == dt.datetime(2021, 3, 1, 21, 0, tzinfo=dt.UTC)
    assert publisher.published[0][2] == "bar:AAA:2021-03-01:v1"


async def test_speed_paces_sessions_and_stop_ends_early(store: Store) -> None:
    small_store(store)
    replay = BarReplay(["AAA"], "2021-03-01", "2021-03-12", store=store, speed=40.0)
    t0 = time.monotonic()
    report = await replay.run(InMemoryPublisher())
    assert time.monotonic() - t0 >= 9 / 40.0 - 0.01
    assert report.sessions == 10
    stop = asyncio.Event()
    seen: list[dt.date] = []

    def on_session(day: dt.date, n: int) -> None:
        seen.append(day)
        if len(seen) == 3:
            stop.set()

    again = BarReplay(["AAA"], "2021-03-01", "2021-03-12", store=store)
    report = await again.run(InMemoryPublisher(), stop=stop, on_session=on_session)
    assert report.stopped and report.sessions == 3


@pytest.mark.integration
async def test_replay_through_the_real_bus(store: Store, nats_bus: Any) -> None:
    """Publish through mts1b_platform's Bus on a real NATS JetStream, then read it back."""

    bus = nats_bus
    await bus.declare_streams(["datalake"])
    small_store(store)
    report = await BarReplay(["AAA", "BBB"], "2021-03-01", "2021-03-12", store=store,
                             speed=0).run(bus)
    assert report.published == 19
    received: list[Bar] = []
    done = asyncio.Event()

    async def handler(delivery: object) -> None:
        received.append(delivery.message)  # type: ignore[attr-defined]
        if len(received) == 19:
            done.set()

    consumer = await bus.consume("mts.v1.datalake.bars.>", handler, durable="replaytest")
    await asyncio.wait_for(done.wait(), 20)
    await consumer.stop()
    assert {b.symbol for b in received} == {"AAA", "BBB"}
    # replaying again inside the duplicate window stores nothing new
    await BarReplay(["AAA", "BBB"], "2021-03-01", "2021-03-12", store=store).run(bus)
    info = await bus.js.stream_info(bus.stream_for("datalake"))
    assert info.state.messages == 19


@pytest.mark.integration
async def test_dotted_symbols_travel_through_the_real_bus(store: Store, nats_bus: Any) -> None:
    """BRK.B and EURUSD=X used to be skipped as "not a subject token"; they now arrive on
    their encoded subjects, and each subject decodes back to its bar's symbol."""

    bus = nats_bus
    await bus.declare_streams(["datalake"])
    dotted_store(store)
    report = await BarReplay(["BRK.B", "EURUSD=X", "../../etc/passwd"], "2021-03-01",
                             "2021-03-03", store=store, speed=0).run(bus)
    assert report.published == 6 and report.skipped_symbols == ["../../etc/passwd"]
    received: list[tuple[str, Bar]] = []
    done = asyncio.Event()

    async def handler(delivery: object) -> None:
        received.append((delivery.subject, delivery.message))  # type: ignore[attr-defined]
        if len(received) == 6:
            done.set()

    consumer = await bus.consume("mts.v1.datalake.bars.>", handler, durable="dottedtest")
    await asyncio.wait_for(done.wait(), 20)
    await consumer.stop()
    assert sorted({(s, b.symbol) for s, b in received}) == [
        ("mts.v1.datalake.bars.BRK_2EB", "BRK.B"),
        ("mts.v1.datalake.bars.EURUSD_3DX", "EURUSD=X")]
    assert all(symbol_of_subject(s) == b.symbol for s, b in received)


@pytest.mark.integration
async def test_lockstep_waits_for_every_service_before_the_next_session(
        store: Store, nats_bus: Any) -> None:
    """With lockstep, each session's bars are all out before its tick, the tick goes to each
    service in turn, and the next session's bars wait until every service answered; a
    service that refuses a session stops the replay with its name (real NATS)."""
    from mts1b_foundation import ClockTick
    from mts1b_platform.replayclock import ReplayClock, ReplayStalled, serve_ticks

    bus = nats_bus
    log: list[str] = []
    bars_seen: list[str] = []

    async def on_bar(msg: object) -> None:
        bars_seen.append(msg.subject)  # type: ignore[attr-defined]

    def service(name: str, refuse: str | None = None):  # type: ignore[no-untyped-def]
        async def on_tick(tick: ClockTick) -> None:
            if tick.session == refuse:
                from mts1b_foundation import MtsError
                raise MtsError(f"no data for {tick.session}")
            log.append(f"{name} {tick.session} bars={tick.bars} seen={len(bars_seen)} "
                       f"last={tick.last}")
            await asyncio.sleep(0.02)
        return on_tick

    await bus.declare_streams(["datalake"])
    small_store(store)
    sub = await bus.nc.subscribe(bus.wire_subject("mts.v1.datalake.bars.*"), cb=on_bar)
    await serve_ticks(bus, "venue", service("venue"), ReplayClock())
    await serve_ticks(bus, "oms", service("oms"), ReplayClock())
    report = await BarReplay(["AAA", "BBB"], "2021-03-01", "2021-03-03", store=store,
                             speed=0).run(bus, lockstep=["venue", "oms"])
    assert report.sessions == 3
    assert log == [
        "venue 2021-03-01 bars=2 seen=2 last=False", "oms 2021-03-01 bars=2 seen=2 last=False",
        "venue 2021-03-02 bars=2 seen=4 last=False", "oms 2021-03-02 bars=2 seen=4 last=False",
        # one bar of the third session cannot be a wire bar (small_store): not counted
        "venue 2021-03-03 bars=1 seen=5 last=True", "oms 2021-03-03 bars=1 seen=5 last=True"]
    await serve_ticks(bus, "picky", service("picky", refuse="2021-03-02"), ReplayClock())
    with pytest.raises(ReplayStalled, match="picky refused session 2021-03-02"):
        await BarReplay(["AAA", "BBB"], "2021-03-01", "2021-03-12", store=store,
                        speed=0).run(bus, lockstep=["picky"])
    await sub.unsubscribe()


@pytest.mark.integration
async def test_lockstep_hands_the_open_first_to_the_services_named_at_open(
        store: Store, nats_bus: Any) -> None:
    """``oms@open``: each session's open tick goes to ``oms`` after the session's bars are out
    and before any close tick; its time is the open, the close tick's the close; one service
    takes both (real NATS)."""
    from mts1b_foundation import ClockTick
    from mts1b_platform.replayclock import ReplayClock, serve_ticks

    bus = nats_bus
    log: list[str] = []

    def service(name: str):  # type: ignore[no-untyped-def]
        async def on_tick(tick: ClockTick) -> None:
            log.append(f"{name} {tick.session} {tick.phase} {tick.ts:%H:%M} seq={tick.seq}")
        return on_tick

    await bus.declare_streams(["datalake"])
    small_store(store)
    await serve_ticks(bus, "venue", service("venue"), ReplayClock())
    await serve_ticks(bus, "oms", service("oms"), ReplayClock())
    await BarReplay(["AAA", "BBB"], "2021-03-01", "2021-03-02", store=store,
                    speed=0).run(bus, lockstep=["oms@open", "venue", "oms"])
    assert log == [
        "oms 2021-03-01 open 14:30 seq=1", "venue 2021-03-01 close 21:00 seq=2",
        "oms 2021-03-01 close 21:00 seq=2",
        "oms 2021-03-02 open 14:30 seq=3", "venue 2021-03-02 close 21:00 seq=4",
        "oms 2021-03-02 close 21:00 seq=4"]


@pytest.mark.integration
async def test_lockstep_publishes_each_sessions_actions_before_its_bars(
        tmp_path: object, nats_bus: Any) -> None:
    """The synthetic market's cash dividends (and any split) go out on
    mts.v1.datalake.actions.<symbol> before their ex-date's bars, and the session's tick says
    how many there were (real NATS)."""
    from mts1b_datalake.synthetic import install_demo_market
    from mts1b_foundation import ClockTick, CorporateAction, parse_message
    from mts1b_platform.replayclock import ReplayClock, serve_ticks

    bus = nats_bus
    lake = install_demo_market(str(tmp_path), n_assets=20, start="2014-01-01",
                               end="2014-12-31")
    expected = lake.events(None, "2014-01-02", "2014-03-31",
                           kinds=["split", "dividend", "delisting"])
    assert len(expected) > 0
    arrivals: list[tuple[str, str]] = []  # (kind of message, session or ex-date)

    async def on_msg(msg: object) -> None:
        subject = bus.logical_subject(msg.subject)  # type: ignore[attr-defined]
        if ".actions." in subject:
            action = parse_message(CorporateAction, msg.data)  # type: ignore[attr-defined]
            arrivals.append(("action", action.ex_date))
        else:
            arrivals.append(("bar", subject))

    ticks: list[ClockTick] = []

    async def on_tick(tick: ClockTick) -> None:
        ticks.append(tick)
        arrivals.append(("tick", tick.session))

    await bus.declare_streams(["datalake"])
    sub = await bus.nc.subscribe(bus.wire_subject("mts.v1.datalake.>"), cb=on_msg)
    await serve_ticks(bus, "venue", on_tick, ReplayClock())
    symbols = lake.symbols()
    report = await BarReplay(symbols, "2014-01-02", "2014-03-31", store=lake,
                             speed=0).run(bus, lockstep=["venue"])
    await sub.unsubscribe()
    assert report.actions == len(expected) == sum(t.actions for t in ticks)
    for tick in ticks:  # each session's actions come after the previous tick
        start = max(i for i, a in enumerate(arrivals) if a == ("tick", tick.session))
        before = arrivals[:start]
        last_tick = max((i for i, a in enumerate(before) if a[0] == "tick"), default=-1)
        mine = [a for a in before[last_tick + 1:] if a[0] == "action"]
        assert len(mine) == tick.actions and all(a[1] == tick.session for a in mine)


def test_a_delisting_is_an_action_paying_out_at_the_last_close(store: Store) -> None:
    """A delisting is replayed as a corporate action (issue #20): dated the first session
    without the symbol (a date off the calendar moves to the next session), ``value`` its last
    close as its bar carries it; one after the replay's last session is not replayed."""
    days = pd.bdate_range("2021-03-01", "2021-03-12")
    rows = [{"symbol": s, "date": d, "open": 10.0, "high": 11.0, "low": 9.0,
             "close": 10.25 + i / 100, "volume": 100.0} for i, d in enumerate(days)
            for s in ("AAA", "BBB", "CCC") if s != "AAA" or d <= pd.Timestamp("2021-03-04")]
    rows = [r for r in rows if r["symbol"] != "BBB" or r["date"] <= pd.Timestamp("2021-03-05")]
    events = pd.DataFrame([
        {"symbol": "AAA", "date": pd.Timestamp("2021-03-05"), "kind": "delisting",
         "value": float("nan")},
        {"symbol": "BBB", "date": pd.Timestamp("2021-03-06"), "kind": "delisting",  # Saturday
         "value": float("nan")},
        {"symbol": "CCC", "date": pd.Timestamp("2021-03-20"), "kind": "delisting",
         "value": float("nan")}])
    store.write(pd.DataFrame(rows), events)
    actions = BarReplay(["AAA", "BBB", "CCC"], "2021-03-01", "2021-03-12", store=store,
                        speed=0).actions()
    found = {day: [(subject, a.symbol, a.kind, str(a.value), a.ex_date, msg_id)
                   for subject, a, msg_id in items] for day, items in actions.items()}
    assert found == {
        dt.date(2021, 3, 5): [("mts.v1.datalake.actions.AAA", "AAA", "delisting", "10.28",
                               "2021-03-05", "ca-AAA-2021-03-05-delisting-v1")],
        dt.date(2021, 3, 8): [("mts.v1.datalake.actions.BBB", "BBB", "delisting", "10.29",
                               "2021-03-08", "ca-BBB-2021-03-08-delisting-v1")]}
