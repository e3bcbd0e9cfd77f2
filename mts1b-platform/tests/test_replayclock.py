"""The replay's clock over real NATS: ticks handed to each service in order, each answering when
done; a repeated tick answered at once; a service that starts late waited for; one that fails
stops the replay with its name and no internal text; ``load_tick`` for a restarted service."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")

from mts1b_foundation import ClockTick, MtsError
from mts1b_platform.bus import Bus
from mts1b_platform.replayclock import (
    ReplayClock,
    ReplayStalled,
    hand_out,
    load_tick,
    serve_ticks,
)

pytestmark = pytest.mark.integration
CLOSE = dt.datetime(2016, 1, 4, 21, tzinfo=dt.UTC)


def _tick(seq: int, replay: str = "r1") -> ClockTick:
    return ClockTick(replay_id=replay, seq=seq, session=f"2016-01-{3 + seq:02d}",
                     ts=CLOSE + dt.timedelta(days=seq - 1), bars=5)


@pytest.fixture
def bus(fresh_bus: Bus) -> Bus:
    return fresh_bus


async def test_each_service_finishes_the_session_in_turn(bus: Bus) -> None:
    log: list[str] = []
    clocks = {name: ReplayClock() for name in ("venue", "oms")}

    def work(name: str) -> Callable[[ClockTick], Awaitable[None]]:
        async def on_tick(tick: ClockTick) -> None:
            log.append(f"{name} starts {tick.seq} at {clocks[name].now():%d}")
            await asyncio.sleep(0.05)
            log.append(f"{name} done {tick.seq}")
        return on_tick

    subs = [await serve_ticks(bus, n, work(n), clocks[n]) for n in ("venue", "oms")]
    for seq in (1, 2):
        await hand_out(bus, _tick(seq), ["venue", "oms"])
    assert log == ["venue starts 1 at 04", "venue done 1", "oms starts 1 at 04", "oms done 1",
                   "venue starts 2 at 05", "venue done 2", "oms starts 2 at 05", "oms done 2"]
    await hand_out(bus, _tick(2), ["venue", "oms"])  # asked again: answered, not redone
    assert len(log) == 8
    assert (await load_tick(bus)) == _tick(2)
    clocks["oms"].set(_tick(1))  # never backwards
    assert clocks["oms"].now() == _tick(2).ts
    for sub in subs:
        await sub.unsubscribe()


async def test_a_late_service_is_waited_for_and_a_failing_one_stops_the_replay(
        bus: Bus) -> None:
    clock = ReplayClock()
    waits: list[str] = []

    async def fine(tick: ClockTick) -> None:
        return None

    async def start_late() -> None:
        await asyncio.sleep(1.5)
        await serve_ticks(bus, "late", fine, clock)

    task = asyncio.get_running_loop().create_task(start_late())
    await hand_out(bus, _tick(1), ["late"], timeout=20,
                   on_wait=lambda name, waited: waits.append(name))
    await task
    assert waits and set(waits) == {"late"} and clock.now() == _tick(1).ts

    async def broken(tick: ClockTick) -> None:
        raise KeyError("secret internal detail")

    async def refusing(tick: ClockTick) -> None:
        raise MtsError("no data for the session")

    await serve_ticks(bus, "broken", broken, ReplayClock())
    await serve_ticks(bus, "refusing", refusing, ReplayClock())
    with pytest.raises(ReplayStalled, match="broken refused session 2016-01-05") as info:
        await hand_out(bus, _tick(2), ["late", "broken"])
    assert "secret" not in str(info.value)
    with pytest.raises(ReplayStalled, match="no data for the session"):
        await hand_out(bus, _tick(2), ["refusing"])
    with pytest.raises(ReplayStalled, match="nobody did not finish session 2016-01-06"):
        await hand_out(bus, _tick(3), ["nobody"], timeout=1)
