"""The OMS service beats: a heartbeat named ``mts1b-oms`` on
``mts.v1.operations.heartbeats.mts1b-oms`` right after the start, one per interval, none after
the stop (real NATS JetStream and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import Heartbeat, parse_message
from mts1b_oms.service import HEARTBEAT_SERVICE, ServeOptions, run_service
from mts1b_oms.testing import drop_schema, make_fund, make_registry
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.heartbeat import heartbeat_subject

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def test_the_oms_beats_while_it_serves() -> None:
    ns = f"t{uuid.uuid4().hex[:10]}"
    schema = f"oms_hb_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: Any) -> None:
        await beats.put(parse_message(Heartbeat, msg.data))

    sub = await bus.nc.subscribe(bus.wire_subject(heartbeat_subject(HEARTBEAT_SERVICE)),
                                 cb=on_beat)
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[make_fund(name="Fund")], instruments=make_registry(),
                        broker="mts1b_oms.testing:RecordingBroker", schema=schema,
                        namespace=ns, prices={"AAPL": Decimal(100)},
                        heartbeat_interval=0.2, heartbeat_instance="oms-a")
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        first = await asyncio.wait_for(beats.get(), 10)
        second = await asyncio.wait_for(beats.get(), 10)
        assert (first.service, first.instance, first.interval_s) == ("mts1b-oms", "oms-a", 0.2)
        assert second.started_at == first.started_at and second.ts > first.ts
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await asyncio.sleep(0.5)  # a beat acknowledged before the stop may still be on its way
        while not beats.empty():
            beats.get_nowait()
        await asyncio.sleep(0.5)
        after_stop = beats.qsize()
        await sub.unsubscribe()
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()
    assert after_stop == 0
