"""Crash safety: SIGKILL the OMS process at random points while a client streams orders.

The client retries each order with the same idempotency key until it is acknowledged. The
broker (a file-backed RecordingBroker inside the OMS process) persists every order it accepted,
so it survives the kills. Afterwards: every acknowledged order exists exactly once, the broker
never received two orders for one idempotency key (nor one order id twice), and positions equal
the broker's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from mts1b_foundation import CommandReply, Equity, Order, Side, SubmitOrder
from mts1b_oms.store import Store
from mts1b_oms.testing import make_registry, write_signing_keys
from mts1b_platform.bus import Bus, BusError

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
N_ORDERS = 60
KILLS = 4


def _spawn(tmp: Path, ns: str, schema: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MTS_DATABASE_URL": DSN}
    (tmp / "instruments.json").write_text(make_registry("AAPL").to_json())
    if not (tmp / "keys.json").exists():
        write_signing_keys(tmp)
    cmd = [sys.executable, "-m", "mts1b_oms.cli", "serve", "--funds", str(tmp / "funds.json"),
           "--instruments", str(tmp / "instruments.json"),
           "--prices", str(tmp / "prices.json"), "--broker", "mts1b_oms.testing:RecordingBroker",
           "--broker-arg", f"path={tmp / 'broker.jsonl'}", "--broker-arg", "fill_price=100",
           "--schema", schema, "--namespace", ns, "--keys", str(tmp / "keys.json")]
    log = (tmp / "oms.log").open("ab")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log)


async def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    ns = f"c{uuid.uuid4().hex[:10]}"
    schema = f"oms_c_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    (tmp_path / "funds.json").write_text(json.dumps([{
        "fund_id": "f1", "name": "Crash fund", "target_nav_usd": "1000000", "broker": "paper",
        "broker_account_id": "acc1",
        "risk": {"price_collar_pct": "unlimited", "max_position_pct_nav": "unlimited",
                 "duplicate_window_seconds": "0"}}]))
    (tmp_path / "prices.json").write_text(json.dumps({"AAPL": "100"}))
    rng = random.Random(1234)
    proc = _spawn(tmp_path, ns, schema)
    acked: dict[str, str] = {}
    done = asyncio.Event()

    async def client() -> None:
        for i in range(N_ORDERS):
            key = f"crash-{i}"
            o = Order(idempotency_key=key, fund_id="f1", strategy_id="s1",
                      instrument=Equity(symbol="AAPL"), side=Side.BUY,
                      quantity=Decimal(1 + i % 3))
            while True:
                try:
                    r = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=o),
                                          timeout=2, reply_model=CommandReply)
                except BusError:
                    await asyncio.sleep(0.05)
                    continue
                assert isinstance(r, CommandReply) and r.ok, r
                acked[key] = r.order_id or ""
                break
            await asyncio.sleep(0.02)
        done.set()

    kills: list[int] = []

    async def killer() -> None:
        nonlocal proc
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            if done.is_set():
                break
            kills.append(len(acked))
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            proc = _spawn(tmp_path, ns, schema)

    try:
        await asyncio.wait_for(asyncio.gather(client(), killer()), 50)
        # let the last instance finish recovery, then stop it gracefully
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        assert len(acked) == N_ORDERS
        assert len(kills) >= 2, f"kills happened after the stream ended: {kills}"

        conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
        try:
            rows = await conn.fetch("SELECT idempotency_key, order_id, status FROM orders")
        finally:
            await conn.close()
        by_key: dict[str, list[str]] = {}
        for r in rows:
            by_key.setdefault(r["idempotency_key"], []).append(r["order_id"])
        assert {k: v for k, v in by_key.items() if len(v) != 1} == {}
        assert {k: v[0] for k, v in by_key.items()} == acked
        assert {r["status"] for r in rows} == {"filled"}

        lines = [json.loads(x) for x in (tmp_path / "broker.jsonl").read_text().splitlines()]
        broker_ids = [x["order_id"] for x in lines]
        broker_keys = [x["order"]["idempotency_key"] for x in lines]
        assert len(broker_ids) == len(set(broker_ids))
        assert len(broker_keys) == len(set(broker_keys)) == N_ORDERS
        assert set(broker_ids) == set(acked.values())

        store = await Store.open(DSN, schema=schema, min_size=1, max_size=1)
        try:
            [(_, _, sym, pos)] = await store.positions("f1")
            broker_qty = sum(Decimal(x["order"]["quantity"]) for x in lines)
            assert (sym, pos.quantity) == ("AAPL", broker_qty)
        finally:
            await store.drop_schema()
            await store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await bus.delete_streams()
        await bus.drain()
