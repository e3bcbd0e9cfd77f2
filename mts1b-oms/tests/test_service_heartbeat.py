"""The OMS service beats: a heartbeat named ``mts1b-oms`` on
``mts.v1.operations.heartbeats.mts1b-oms`` right after the start, one per interval, none after
the stop (real NATS JetStream and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from decimal import Decimal

import pytest
from mts1b_oms.service import HEARTBEAT_SERVICE, ServeOptions, run_service
from mts1b_oms.testing import drop_schema, make_fund, make_registry
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.heartbeat import HeartbeatProbe

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def test_the_oms_beats_while_it_serves() -> None:
    ns = f"t{uuid.uuid4().hex[:10]}"
    schema = f"oms_hb_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    probe = await HeartbeatProbe(bus, HEARTBEAT_SERVICE).open()
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[make_fund(name="Fund")], instruments=make_registry(),
                        broker="mts1b_oms.testing:RecordingBroker", schema=schema,
                        namespace=ns, prices={"AAPL": Decimal(100)},
                        heartbeat_interval=0.2, heartbeat_instance="oms-a")
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        first = await probe.next()
        second = await probe.next()
        assert (first.service, first.instance, first.interval_s) == ("mts1b-oms", "oms-a", 0.2)
        assert second.started_at == first.started_at and second.ts > first.ts
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        quiet = await probe.silent()
        await probe.close()
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()
    assert quiet  # nothing after the stop
