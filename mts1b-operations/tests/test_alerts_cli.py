"""``mts mts1b-operations alerts list|silence|silences|unsilence|ack`` on a real schema, as a
person runs them (the router's state written by the router itself)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace as Kit
from typing import Any

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
        rows = json.loads(runner.invoke(app, ["alerts", "list", "--json"], env=env).output)
        muted = {r["alert"]["labels"]["fund"]: r["muted"] for r in rows}
        assert muted == {"f1": [f"silenced by {silence_id}"], "f2": []}
        assert "broker maintenance" in runner.invoke(app, ["alerts", "silences"],
                                                     env=env).output
        [held] = json.loads(runner.invoke(app, ["alerts", "silences", "--json"],
                                          env=env).output)
        assert (held["silence_id"], held["matchers"], held["created_by"]) == (
            silence_id, ["fund=f1"], "ana")
        assert dt.datetime.fromisoformat(held["ends_at"]) > dt.datetime.now(dt.UTC)

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


def test_json_is_json_when_there_is_nothing(kit: Kit, tmp_path: Path) -> None:
    """``--json`` prints ``[]`` for no alerts or silences, not the words a person reads."""
    if not asyncio.run(_reachable(kit.DSN)):
        pytest.skip(f"PostgreSQL not reachable at {kit.DSN}")
    schema = f"al_t_{uuid.uuid4().hex[:12]}"
    config = tmp_path / "alerts.yaml"
    config.write_text(yaml.safe_dump({"database_url": kit.DSN, "schema_name": schema}))
    runner = CliRunner()
    try:
        for command in (["list"], ["list", "--all"], ["silences"]):
            shown = runner.invoke(app, ["alerts", *command, "--json", "--config", str(config)])
            assert shown.exit_code == 0, shown.output
            assert json.loads(shown.output) == [], command
        assert runner.invoke(app, ["alerts", "list", "--config", str(config)]
                             ).output == "no alerts\n"
    finally:
        asyncio.run(_drop(kit.DSN, schema))


SECRET = "999:SECRET-tok"
_TG = {"kind": "telegram", "name": "ops", "chat_ids": [1]}
_BAD_CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    # the file's content -> what the one line on stderr must say, word for word
    "no token": ({"receivers": [_TG]},
                 "receivers.ops.bot_token is missing: put it in the file or set "
                 "MTS_ALERTS_TELEGRAM_TOKEN"),
    "password not text": ({"receivers": [{"kind": "email", "name": "mail", "host": "127.0.0.1",
                                          "sender": "a@b.c", "to": ["d@e.f"],
                                          "username": "bot", "password": [SECRET]}]},
                          "receivers.0.email.password is invalid: Input should be a valid "
                          "string (got '<secret>')"),
    "header not text": ({"receivers": [{"kind": "webhook", "name": "hook",
                                        "url": "https://x.test/hook",
                                        "headers": {"Authorization": [SECRET]}}]},
                        "receivers.0.webhook.headers.Authorization is invalid: Input should be "
                        "a valid string (got '<secret>')"),
    "misspelt token": ({"receivers": [{**_TG, "token": SECRET}]},
                       "receivers.0.telegram.token is invalid: Extra inputs are not permitted "
                       "(got '<secret>')"),
}


def test_config_errors_about_secrets_reach_the_terminal_intact(tmp_path: Path) -> None:
    """The real ``mts`` command (its one-line error goes through the platform's redactor,
    which masks the word after ``bot_token:``): every message is whole, no secret in it. The
    other shapes of config error are checked against the redactor in test_alerts_render."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MTS_ALERTS_TELEGRAM_TOKEN", "MTS_ALERTS_SMTP_PASSWORD",
                        "MTS_ALERTS_CONFIG", "MTS_ALERTS_DATABASE_URL")}
    procs = {}
    for case, (content, _) in _BAD_CONFIGS.items():
        path = tmp_path / f"{case.replace(' ', '_')}.yaml"
        path.write_text(yaml.safe_dump(content))
        procs[case] = subprocess.Popen(
            [sys.executable, "-m", "mts1b_platform.cli", "mts1b-operations", "alerts", "list",
             "--config", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
    for case, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        expected = f"mts: [OPERATIONS.ALERTS.BAD_INPUT] {_BAD_CONFIGS[case][1]}\n"
        assert (proc.returncode, out, err) == (1, "", expected), case
        assert "***" not in err and "SECRET" not in err, case
