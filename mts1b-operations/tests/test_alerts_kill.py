"""SIGKILL the alert router while alerts stream in, restart it: every alert reaches the local
Telegram server and the real SMTP server (none lost), under the chat's rate limit (no 429);
duplicates - notifications sent again because the kill landed between the send and its
record - are counted and reported."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace as Kit
from typing import Any

import pytest
import yaml
from mts1b_foundation import Alert, Severity
from mts1b_operations.alerts.store import AlertsDb
from mts1b_operations.testing import TEST_BOT_TOKEN, LocalTelegram

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FUNDS = 4
TOTAL = 60


def spawn(ns: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mts1b_operations.cli", "serve", "alerts", "--config",
           str(config), "--namespace", ns]
    return subprocess.Popen(cmd, env=dict(os.environ), stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


def _alert(i: int) -> Alert:
    return Alert(alert_id=f"alr-kill-{i}", severity=Severity.ERROR, source="mts1b-oms",
                 labels={"alertname": "OrderRejected", "service": "mts1b-oms",
                         "fund": f"f{i % FUNDS}", "order_id": f"o{i}"},
                 text=f"order o{i} rejected", ts=dt.datetime.now(dt.UTC))


async def test_sigkill_mid_stream_loses_no_alert(alerts_db: AlertsDb, fresh_bus: Any,
                                                 kit: Kit, tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    mails: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope.content)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(Handler(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    bus = fresh_bus
    await bus.declare_streams(["operations"])
    # the chat's limit is 5 a second here (Telegram's: 1) so the test takes seconds
    async with LocalTelegram(per_chat_per_second=5) as telegram:
        config = tmp_path / "alerts.yaml"
        config.write_text(yaml.safe_dump({
            "database_url": kit.DSN, "schema_name": alerts_db.schema,
            "group_by": ["alertname", "fund"], "group_wait": 0.3, "group_interval": 0.5,
            "tick": 0.1, "ack_wait": 2, "resolve_timeout": 3600,
            "receivers": [
                {"kind": "telegram", "name": "ops", "bot_token": TEST_BOT_TOKEN,
                 "chat_ids": [42], "api_url": telegram.api_url, "per_chat_per_second": 5},
                {"kind": "email", "name": "mail", "host": "127.0.0.1", "port": smtp_port,
                 "sender": "router@mts1b.test", "to": ["ops@mts1b.test"]}]}))
        log = tmp_path / "router.log"
        proc = spawn(bus.namespace, config, log)
        try:
            for i in range(TOTAL):
                await bus.publish("mts.v1.operations.alerts.raised", _alert(i),
                                  msg_id=f"alr-kill-{i}")
                await asyncio.sleep(0.05)
                if i == TOTAL // 2:
                    # kill it once it has delivered a few: mid-stream, mid-outbox
                    for _ in range(400):
                        if len(telegram.messages) >= 3:
                            break
                        await asyncio.sleep(0.05)
                    assert len(telegram.messages) >= 3, log.read_text()[-2000:]
                    backlog = await alerts_db.undelivered()
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    killed_after = len(telegram.messages)
                    proc = spawn(bus.namespace, config, log)
            expected = {_alert(i).fingerprint for i in range(TOTAL)}
            for _ in range(600):
                seen_tg = set(re.findall(r"fingerprint ([0-9a-f]{16})",
                                         "\n".join(telegram.texts())))
                seen_mail = set(re.findall(rb"fingerprint ([0-9a-f]{16})", b"\n".join(mails)))
                if expected <= seen_tg and {f.encode() for f in expected} <= seen_mail:
                    break
                await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            smtp.stop()
        assert expected <= seen_tg, f"lost on Telegram: {len(expected - seen_tg)}"
        assert {f.encode() for f in expected} <= seen_mail, "lost in the mail"
        assert telegram.too_many == 0  # the rate limit was kept, across the restart too
        refs = collections.Counter(re.findall(r"ref (\S+)", "\n".join(telegram.texts())))
        ids = collections.Counter(re.findall(rb"Message-ID: <([^>]+)>", b"\n".join(mails)))
        dup_tg = sum(n - 1 for n in refs.values())
        dup_mail = sum(n - 1 for n in ids.values())
        print(f"\nkilled after {killed_after} Telegram messages ({backlog} notifications "
              f"waiting in the outbox); delivered {len(refs)} Telegram "
              f"notifications ({dup_tg} duplicates) and {len(ids)} mails ({dup_mail} "
              f"duplicates) for {TOTAL} alerts")
        # a duplicate needs the kill between a send and its record: one per receiver at most
        assert dup_tg <= 1 and dup_mail <= 1
