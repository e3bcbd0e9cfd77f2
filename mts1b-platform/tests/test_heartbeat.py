"""``Heartbeater``: beats on ``mts.v1.operations.heartbeats.<service>`` every interval, goes on
when a publish fails, and sends nothing after ``stop`` (real NATS JetStream)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")

from mts1b_foundation import Heartbeat, parse_message
from mts1b_platform.bus import Bus
from mts1b_platform.heartbeat import Heartbeater, HeartbeatProbe, heartbeat_subject

pytestmark = pytest.mark.integration


@pytest.fixture
def bus(fresh_bus: Bus) -> Bus:
    return fresh_bus


async def _listen(bus: Bus, service: str) -> tuple[list[tuple[float, Heartbeat]], Any]:
    """Every heartbeat of ``service`` as it passes on the wire, with its arrival time."""
    seen: list[tuple[float, Heartbeat]] = []

    async def on_msg(msg: Any) -> None:
        seen.append((time.monotonic(), parse_message(Heartbeat, msg.data)))

    sub = await bus.nc.subscribe(bus.wire_subject(heartbeat_subject(service)), cb=on_msg)
    return seen, sub


def test_the_subject_is_the_services_token() -> None:
    assert heartbeat_subject("mts1b-oms") == "mts.v1.operations.heartbeats.mts1b-oms"


def test_an_interval_must_be_positive(bus: Bus) -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeater(bus, "mts1b-oms", interval_s=0)


async def test_beats_every_interval_until_stopped(bus: Bus) -> None:
    """Bounds wide enough for a loaded CI machine, narrow enough to catch a wrong interval."""
    await bus.declare_streams(["operations"])
    seen, sub = await _listen(bus, "mts1b-oms")
    started = time.monotonic()
    async with Heartbeater(bus, "mts1b-oms", instance="paper-1", interval_s=0.2) as beater:
        assert beater.running
        deadline = started + 10
        while len(seen) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    sent = beater.sent
    await asyncio.sleep(0.6)  # nothing more may come
    await sub.unsubscribe()
    assert not beater.running
    beats = [beat for _, beat in seen]
    # every beat sent arrived, none after stop returned
    assert len(beats) == sent == beater.sent >= 5 and beater.failed == 0
    assert seen[0][0] - started < 2  # the first at once, not after an interval of waiting
    assert {(b.service, b.instance, b.interval_s, b.started_at) for b in beats} == {
        ("mts1b-oms", "paper-1", 0.2, beater.started_at)}
    assert [b.ts for b in beats] == sorted(b.ts for b in beats)
    # on the cadence: one beat late on a busy machine makes the next gap shorter, so the mean
    # stays near 0.2 s (a beat per event-loop turn, or one per second, would not)
    gaps = [(later.ts - earlier.ts).total_seconds()
            for earlier, later in itertools.pairwise(beats)]
    assert 0.1 < sum(gaps) / len(gaps) < 0.6, gaps


async def test_a_failed_publish_is_counted_and_the_beats_go_on(bus: Bus) -> None:
    # no operations stream in this namespace yet: no beat is acknowledged
    seen, sub = await _listen(bus, "mts1b-treasury")
    beater = Heartbeater(bus, "mts1b-treasury", interval_s=0.1)
    beater.start()
    try:
        deadline = time.monotonic() + 10
        while beater.failed < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert beater.failed >= 2 and beater.sent == 0 and beater.running
        await bus.declare_streams(["operations"])  # the stream appears: the beats get through
        while beater.sent < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert beater.sent >= 2 and beater.running
    finally:
        await beater.stop()
        await sub.unsubscribe()
    assert len(seen) >= beater.sent


async def test_stop_is_idempotent_and_start_again_beats_again(bus: Bus) -> None:
    await bus.declare_streams(["operations"])
    beater = Heartbeater(bus, "mts1b-research", interval_s=0.1)
    await beater.stop()  # never started: nothing to do
    beater.start()
    beater.start()  # a second start does not add a second loop
    await asyncio.sleep(0.25)
    await beater.stop()
    await beater.stop()
    first = beater.sent
    assert 1 <= first <= 4  # at once, then every 0.1 s: one loop, not two
    await asyncio.sleep(0.3)
    assert beater.sent == first
    beater.start()
    deadline = time.monotonic() + 10
    while beater.sent == first and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await beater.stop()
    assert beater.sent in (first + 1, first + 2)  # it beats again at once


async def test_the_probe_sees_the_beats_skips_junk_and_tells_silence(bus: Bus) -> None:
    await bus.declare_streams(["operations"])
    async with HeartbeatProbe(bus, "mts1b-portfolio") as probe:
        await bus.publish_bytes(heartbeat_subject("mts1b-portfolio"), b"not a heartbeat")
        async with Heartbeater(bus, "mts1b-portfolio", instance="p1", interval_s=0.1):
            beat = await probe.next()
            assert (beat.service, beat.instance) == ("mts1b-portfolio", "p1")
            assert not await probe.silent(in_flight=0, window=0.4)  # still beating
        assert await probe.silent()
    with pytest.raises(TimeoutError):
        await probe.next(timeout=0.2)  # closed: nothing more comes
