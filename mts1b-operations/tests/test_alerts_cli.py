"""``mts mts1b-operations alerts list|silence|silences|unsilence|ack`` on a real schema, as a
person runs them (the router's state written by the router itself)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path
from types import SimpleNamespace as Kit

import asyncpg
import pytest
import yaml
from mts1b_foundation import Alert
from mts1b_operations.alerts.config import load_alerts_config
from mts1b_operations.alerts.router import Router
from mts1b_operations.alerts.store import AlertsDb
from mts1b_operations.cli import app
from typer.testing import CliRunner


async def _prepare(dsn: str, schema: str) -> None:
    db = await AlertsDb.open(dsn, schema=schema)
    try:
        router = Router(db, load_alerts_config(None, environ={}))
        now = dt.datetime.now(dt.UTC)
        for fund in ("f1", "f2"):
            await router.ingest(Alert(alert_id=f"alr-{fund}", severity="error",
                                      source="mts1b-oms", text=f"rejected in {fund}", ts=now,
                                      labels={"alertname": "OrderRejected", "fund": fund,
                                              "order_id": f"o-{fund}"}))
    finally:
        await db.close()


async def _reachable(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def _drop(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def test_list_silence_ack(kit: Kit, tmp_path: Path) -> None:
    if not asyncio.run(_reachable(kit.DSN)):
        pytest.skip(f"PostgreSQL not reachable at {kit.DSN}")
    schema = f"al_t_{uuid.uuid4().hex[:12]}"
    config = tmp_path / "alerts.yaml"
    config.write_text(yaml.safe_dump({"database_url": kit.DSN, "schema_name": schema,
                                      "receivers": [{"kind": "telegram", "name": "ops",
                                                     "chat_ids": [1]}]}))
    runner = CliRunner()
    env = {"MTS_ALERTS_CONFIG": str(config), "MTS_ALERTS_TELEGRAM_TOKEN": "77:SECRET-tok"}
    asyncio.run(_prepare(kit.DSN, schema))
    try:
        listed = runner.invoke(app, ["alerts", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        assert listed.output.count("OrderRejected") == 2 and "SECRET" not in listed.output

        silenced = runner.invoke(app, ["alerts", "silence", "fund=f1", "--for", "30m",
                                       "--comment", "broker maintenance", "--by", "ana"],
                                 env=env)
        assert silenced.exit_code == 0, silenced.output
        silence_id = silenced.output.split()[0]
        rows = [json.loads(line) for line in runner.invoke(
            app, ["alerts", "list", "--json"], env=env).output.splitlines()]
        muted = {r["alert"]["labels"]["fund"]: r["muted"] for r in rows}
        assert muted == {"f1": [f"silenced by {silence_id}"], "f2": []}
        assert "broker maintenance" in runner.invoke(app, ["alerts", "silences"],
                                                     env=env).output

        fingerprint = next(r["fingerprint"] for r in rows
                           if r["alert"]["labels"]["fund"] == "f2")
        acked = runner.invoke(app, ["alerts", "ack", fingerprint[:8], "--by", "ana"], env=env)
        assert acked.exit_code == 0 and "acknowledged by ana" in acked.output
        assert "acked by ana" in runner.invoke(app, ["alerts", "list"], env=env).output

        assert runner.invoke(app, ["alerts", "unsilence", silence_id], env=env).exit_code == 0
        again = runner.invoke(app, ["alerts", "unsilence", silence_id], env=env)
        assert again.exit_code != 0
        bad = runner.invoke(app, ["alerts", "silence", "fund", "--comment", "x"], env=env)
        assert bad.exit_code != 0 and "matcher" in str(bad.exception)
        bad = runner.invoke(app, ["alerts", "silence", "fund=f1", "--for", "soon",
                                  "--comment", "x"], env=env)
        assert bad.exit_code != 0 and "--for" in str(bad.exception)
    finally:
        asyncio.run(_drop(kit.DSN, schema))
