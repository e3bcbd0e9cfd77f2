"""The kill switch survives SIGKILLs: 5 kills of the real service during a halt's sweep leave
no order working at the broker, none canceled twice and none lost.

The OMS runs as ``python -m mts1b_oms.cli serve`` against the real NATS and PostgreSQL, with a
file-backed venue inside the service process (``RecordingBroker`` with ``path``) that is slow
to cancel (0.2 s per cancel, taken half-way through) and survives the kills on disk. A halt of
60 working orders is swept at 20 cancels/s; the service is killed 5 times while the sweep is
unfinished (checked in PostgreSQL before each kill) and restarted each time. The full-size run
(20 kills, 500 orders) is ``bench/oms_killswitch.py``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mts1b_foundation import CommandReply, HaltTrading, SubmitOrder
from mts1b_oms.orderstore import CancelOutcome
from mts1b_oms.signing import SigningKey
from mts1b_oms.store import Store
from mts1b_oms.testing import (
    RecordingBroker,
    make_fund,
    make_order,
    make_registry,
    write_signing_keys,
)
from mts1b_platform.bus import Bus, BusError

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
N_ORDERS = 60
KILLS = 5
CANCEL_SECONDS = 0.2
CANCEL_RATE = 20.0


def _spawn(tmp: Path, ns: str, schema: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MTS_DATABASE_URL": DSN}
    (tmp / "instruments.json").write_text(make_registry().to_json())
    cmd = [sys.executable, "-m", "mts1b_oms.cli", "serve", "--funds", str(tmp / "funds.json"),
           "--instruments", str(tmp / "instruments.json"),
           "--broker", "mts1b_oms.testing:RecordingBroker",
           "--broker-arg", f"path={tmp / 'venue.jsonl'}",
           "--broker-arg", f"cancel_seconds={CANCEL_SECONDS}",
           "--cancel-rate", str(CANCEL_RATE), "--schema", schema, "--namespace", ns,
           "--keys", str(tmp / "keys.json")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=(tmp / "oms.log").open("ab"))


async def _ready(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the line ``serve`` prints once it answers commands."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line.startswith(b"oms serving"), line


async def test_sigkills_during_a_sweep_leave_no_order_working(tmp_path: Path) -> None:
    ns = f"k{uuid.uuid4().hex[:10]}"
    schema = f"oms_k_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    (tmp_path / "funds.json").write_text(json.dumps([make_fund().model_dump(mode="json")]))
    _registry, key_files = write_signing_keys(tmp_path)
    rng = random.Random(15)
    proc = _spawn(tmp_path, ns, schema)
    store: Store | None = None
    try:
        await _ready(proc)
        replies = await asyncio.gather(*(
            bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=make_order(f"o{i}")),
                        timeout=30, reply_model=CommandReply) for i in range(N_ORDERS)))
        ids = [r.order_id or "" for r in replies if isinstance(r, CommandReply) and r.ok]
        assert len(ids) == N_ORDERS
        halt = await bus.request("mts.v1.oms.commands.halt", SigningKey.load(
            key_files["ops-test"]).sign(HaltTrading, "fund", "f1", "kill test"), timeout=10,
            reply_model=CommandReply)
        assert isinstance(halt, CommandReply) and halt.ok
        assert halt.context["outstanding"] == N_ORDERS
        sweep_id = str(halt.context["sweep_id"])
        store = await Store.open(DSN, schema=schema, min_size=1, max_size=2)

        left_at_kill = []
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.1, 0.4))
            sweep = await store.sweep(sweep_id)
            assert sweep is not None and not sweep.finished, "the sweep ended before a kill"
            left_at_kill.append(sweep.outstanding)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            proc = _spawn(tmp_path, ns, schema)
            await _ready(proc)
        for _ in range(600):  # the last instance finishes the sweep (liveness guard: 60 s)
            sweep = await store.sweep(sweep_id)
            if sweep is not None and sweep.finished:
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0

        assert sweep is not None and sweep.finished, f"outstanding: {sweep}"
        assert {o.outcome for o in sweep.orders} == {CancelOutcome.CANCELED}
        assert sorted(o.order_id for o in sweep.orders) == sorted(ids)
        assert left_at_kill == sorted(left_at_kill, reverse=True) and left_at_kill[-1] > 0
        # the venue, as it is on disk: nothing working, each order canceled exactly once
        venue = RecordingBroker(path=tmp_path / "venue.jsonl")
        assert sorted(venue.new_orders) == sorted(ids)
        assert sorted(venue.canceled) == sorted(ids)
        assert await venue.open_orders() == []
        # a cancel the venue received but whose answer the killed process never recorded is
        # sent again (the venue answers it as a repeat): per kill, about the cancels in flight
        # at that rate and latency (rate x latency = 4), with room for the writes around each
        in_flight = math.ceil(CANCEL_RATE * CANCEL_SECONDS) + 3
        assert N_ORDERS <= len(venue.cancel_requests) <= N_ORDERS + KILLS * in_flight
        # the OMS: every order canceled, with one canceled event each
        for oid in ids:
            st = await store.load_order(oid)
            assert st is not None and st.status.value == "canceled"
            assert [e["event_type"] for e in await store.events(oid)].count("canceled") == 1
        assert await store.unfinished_sweeps() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if store is not None:
            await store.drop_schema()
            await store.close()
        await bus.delete_streams()
        await bus.drain()
