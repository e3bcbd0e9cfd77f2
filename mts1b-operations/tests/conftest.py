"""Fixtures: a fresh audit schema (dropped afterwards), a bus on a namespace of its own, or a
skip naming the server that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import types
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.entries import Incoming

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


BASE = dt.datetime(2026, 12, 7, 14, 30, tzinfo=dt.UTC)


def event(i: int, *, order: str | None = None, fund: str = "F1") -> dict[str, Any]:
    return {"event_id": f"evt-{i}", "order_id": order or f"ord-{i}", "fund_id": fund,
            "quantity": str(i), "ts": (BASE + dt.timedelta(milliseconds=i)).isoformat()}


def incoming(i: int, subject: str = "mts.v1.oms.orders.accepted", **kw: Any) -> Incoming:
    return Incoming(subject, json.dumps(event(i, **kw)).encode(), {}, f"evt-{i}")


async def tamper(db: AuditDb, *statements: str) -> None:
    """Run ``statements`` as a superuser with the append-only triggers off."""
    conn = await asyncpg.connect(DSN, server_settings={"search_path": db.schema})
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()


async def until_size(db: AuditDb, n: int, timeout: float = 60) -> None:
    """Wait until the chain holds ``n`` entries (a recorder in another process appends them)."""
    from mts1b_operations.audit.chain import AuditChain

    chain = AuditChain(db)
    deadline = asyncio.get_running_loop().time() + timeout
    while (held := (await chain.head()).size) < n:
        assert asyncio.get_running_loop().time() < deadline, f"{held} of {n}"
        await asyncio.sleep(0.02)


def spawn_recorder(schema: str, namespace: str, key: Path, checkpoints: Path, log: Path,
                   *options: str) -> subprocess.Popen[bytes]:
    """``mts mts1b-operations serve audit`` in its own process, signing with ``key`` into
    ``checkpoints`` (``options``: more of its flags), its output appended to ``log``."""
    cmd = [sys.executable, "-m", "mts1b_operations.cli", "serve", "audit", "--schema", schema,
           "--namespace", namespace, "--signing-key", str(key), "--checkpoints",
           str(checkpoints), "--skew-threshold", "0", *options]
    return subprocess.Popen(cmd, env={**os.environ, "MTS_DATABASE_URL": DSN},
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


@pytest.fixture
def kit() -> types.SimpleNamespace:
    """The helpers above, for the test modules (which cannot import this file)."""
    return types.SimpleNamespace(event=event, incoming=incoming, tamper=tamper, DSN=DSN,
                                 BASE=BASE, until_size=until_size,
                                 spawn_recorder=spawn_recorder)


async def _reachable() -> bool:
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture
async def audit_db() -> AsyncIterator[AuditDb]:
    """The audit chain on a fresh schema, dropped afterwards."""
    if not await _reachable():
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    db = await AuditDb.open(DSN, schema=f"au_t_{uuid.uuid4().hex[:12]}")
    try:
        yield db
    finally:
        await db.drop_schema()
        await db.close()


@pytest.fixture
async def fresh_bus() -> AsyncIterator[Any]:
    """A ``Bus`` on a NATS namespace of its own, its streams deleted afterwards."""
    from mts1b_platform.bus import Bus, BusError, BusSettings

    try:
        bus = await Bus.connect(BusSettings(url=NATS_URL, namespace=f"t{uuid.uuid4().hex[:10]}",
                                            connect_timeout=2))
    except BusError as exc:
        pytest.skip(f"no NATS server reachable at {NATS_URL} ({exc}); run `mts dev up`")
    try:
        yield bus
    finally:
        await bus.delete_streams()
        # object stores (the audit checkpoints' copies), which delete_streams leaves
        from mts1b_operations.audit.checkpoints import CHECKPOINT_BUCKET

        with contextlib.suppress(Exception):
            await bus.js.delete_object_store(f"{bus.namespace}_{CHECKPOINT_BUCKET}")
        await bus.drain()


@pytest.fixture
async def alerts_db() -> AsyncIterator[Any]:
    """The alert router's state on a fresh schema, dropped afterwards."""
    from mts1b_operations.alerts.store import AlertsDb

    if not await _reachable():
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    db = await AlertsDb.open(DSN, schema=f"al_t_{uuid.uuid4().hex[:12]}")
    try:
        yield db
    finally:
        await db.drop_schema()
        await db.close()
