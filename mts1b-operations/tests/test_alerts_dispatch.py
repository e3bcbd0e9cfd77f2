"""Dispatch against real local servers: the Bot API stand-in (its limits and 429s), a real
SMTP server (aiosmtpd) and an HTTP webhook receiver; and the outbox delivered in order."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mts1b_foundation import Alert, AlertDeliveryError
from mts1b_operations.alerts.config import (
    EmailReceiver,
    TelegramReceiver,
    WebhookReceiver,
    load_alerts_config,
)
from mts1b_operations.alerts.dispatch import Dispatcher, build_sinks, dispatch_alert
from mts1b_operations.alerts.email import EmailSink, message_id
from mts1b_operations.alerts.http import post_json
from mts1b_operations.alerts.router import Router
from mts1b_operations.alerts.store import AlertsDb
from mts1b_operations.alerts.telegram import TelegramSink, send_telegram
from mts1b_operations.alerts.webhook import WebhookSink
from mts1b_operations.testing import TEST_BOT_TOKEN, LocalTelegram, LocalWebhook

NOW = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


def _alert(n: int = 0, text: str = "order rejected", **labels: str) -> Alert:
    return Alert(alert_id=f"alr-{uuid.uuid4().hex[:12]}",
                 labels={"alertname": "OrderRejected", "fund": "f1", "n": str(n), **labels},
                 severity="error", source="mts1b-oms", text=text, ts=NOW)


def _telegram(server: LocalTelegram, chats: tuple[int, ...] = (42,), **extra: Any
              ) -> TelegramReceiver:
    return TelegramReceiver(name="ops", bot_token=TEST_BOT_TOKEN, chat_ids=chats,
                            api_url=server.api_url, **extra)


async def test_get_me_and_send_message_shapes() -> None:
    async with LocalTelegram() as server:
        me = (await post_json(f"{server.api_url}/bot{TEST_BOT_TOKEN}/getMe", {})).json()
        assert me["ok"] and me["result"]["is_bot"] and me["result"]["id"] == 123456
        message_id_ = await send_telegram(server.api_url, TEST_BOT_TOKEN, 42, "<b>hi</b> &amp;")
        assert message_id_ == 1 and server.messages[0].visible == "hi &"
        with pytest.raises(AlertDeliveryError) as err:
            await send_telegram(server.api_url, "1:wrong-token-SECRET", 42, "x")
        assert err.value.permanent and "401" in err.value.message
        assert "SECRET" not in str(err.value) and "SECRET" not in repr(err.value.context)
        with pytest.raises(AlertDeliveryError, match="can't parse entities") as err:
            await send_telegram(server.api_url, TEST_BOT_TOKEN, 42, "a < b")
        assert err.value.permanent


async def test_one_chat_gets_one_message_a_second_and_no_429() -> None:
    async with LocalTelegram() as server:
        sink = TelegramSink(_telegram(server))
        started = time.monotonic()
        for n in range(4):
            await sink.send(f"k{n}", [_alert(n)])
        elapsed = time.monotonic() - started
        assert len(server.messages) == 4 and server.too_many == 0
        assert elapsed >= 2.9  # 4 messages, one a second
        gaps = [b.at - a.at for a, b in zip(server.messages, server.messages[1:], strict=False)]
        assert min(gaps) >= 0.95


async def test_a_group_chat_stays_under_its_minute_limit() -> None:
    # the group limit is 20 a minute; here the server's "minute" is 3 s (3 per 3 s) to keep
    # the test short, and the receiver is told the same rate (60 a minute)
    async with LocalTelegram(per_group_per_minute=3, group_window=3,
                             per_chat_per_second=10) as server:
        sink = TelegramSink(_telegram(server, (-1001,), per_group_per_minute=60,
                                      per_chat_per_second=10))
        for n in range(5):
            await sink.send(f"k{n}", [_alert(n)])
        assert server.too_many == 0 and len(server.messages) == 5
        # a receiver told a looser rate than the server keeps meets 429s and honours them
        fast = TelegramSink(_telegram(server, (-1002,), per_group_per_minute=600,
                                      per_chat_per_second=10))
        started = time.monotonic()
        for n in range(4):
            await fast.send(f"f{n}", [_alert(n)])
        assert server.too_many >= 1 and fast.retried_after
        assert time.monotonic() - started >= fast.retried_after[0] - 0.05
        assert len(server.messages) == 9


async def test_retry_after_is_honoured_in_place_or_handed_back() -> None:
    async with LocalTelegram() as server:
        sink = TelegramSink(_telegram(server, max_inline_wait=5))
        server.fail_next(1, retry_after=2)
        started = time.monotonic()
        await sink.send("k1", [_alert()])
        assert time.monotonic() - started >= 1.95
        assert sink.retried_after == [2.0] and len(server.messages) == 1
        server.fail_next(1, retry_after=30)  # longer than max_inline_wait
        with pytest.raises(AlertDeliveryError) as err:
            await sink.send("k2", [_alert()])
        assert err.value.retry_after == 30 and not err.value.permanent


async def test_a_long_notification_arrives_in_parts_each_accepted() -> None:
    async with LocalTelegram(per_chat_per_second=30) as server:
        sink = TelegramSink(_telegram(server, per_chat_per_second=30))
        alerts = [_alert(n, text=("<&> " * 990)) for n in range(4)]
        await sink.send("long", alerts)
        texts = server.texts(42)
        assert len(texts) >= 4 and server.refused == []
        assert [t.split("\n", 1)[0] for t in texts] == [f"({i}/{len(texts)})"
                                                       for i in range(1, len(texts) + 1)]
        assert "".join(texts).count("<&>") == 4 * 990


async def test_parts_already_delivered_are_not_repeated_on_retry() -> None:
    async with LocalTelegram(per_chat_per_second=30, chats={42, 43}) as server:
        sink = TelegramSink(_telegram(server, (42, 43), per_chat_per_second=30,
                                      max_inline_wait=0))
        alerts = [_alert(0)]
        # the second chat refuses once with a long wait: the first chat's copy is kept
        server.chats = {42}
        with pytest.raises(AlertDeliveryError):
            await sink.send("k", alerts)
        server.chats = {42, 43}
        await sink.send("k", alerts)
        assert [m.chat_id for m in server.messages] == [42, 43]


async def test_a_group_that_became_a_supergroup_is_followed() -> None:
    async with LocalTelegram(migrated={-100: -1000000000100}) as server:
        sink = TelegramSink(_telegram(server, (-100,)))
        await sink.send("k1", [_alert(1)])
        await sink.send("k2", [_alert(2)])
        assert [m.chat_id for m in server.messages] == [-1000000000100] * 2
        assert len(server.refused) == 1  # the old id was tried once


class _Later:
    def __init__(self, ahead: dt.timedelta) -> None:
        self.ahead = ahead

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.ahead


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list[Any] = []

    class Handler:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                              rcpt_options: Any) -> str:
            if address.startswith("nobody@"):
                return "550 5.1.1 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"bot"
              and auth_data.password == b"s3cret")
        return AuthResult(success=ok)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port,
                            authenticator=authenticator, auth_require_tls=False)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


async def test_email_reaches_a_real_smtp_server(smtp: tuple[int, list[Any]]) -> None:
    port, received = smtp
    receiver = EmailReceiver(name="mail", host="127.0.0.1", port=port, sender="mts@x.org",
                             to=("ops@x.org",), username="bot", password="s3cret")
    await EmailSink(receiver).send("al-7", [_alert(1, symbol="AAPL")])
    [envelope] = received
    body = envelope.content.decode()
    assert envelope.rcpt_tos == ["ops@x.org"]
    assert f"Message-ID: {message_id('al-7')}" in body
    assert "Subject: [FIRING:1]" in body and "symbol=AAPL" in body
    nobody = receiver.model_copy(update={"to": ("nobody@x.org",)})
    with pytest.raises(AlertDeliveryError, match="550") as err:
        await EmailSink(nobody).send("al-8", [_alert()])
    assert err.value.permanent and "s3cret" not in str(err.value)
    assert len(received) == 1


async def test_webhook_posts_alertmanager_json_and_honours_retry_after() -> None:
    async with LocalWebhook() as hook:
        receiver = WebhookReceiver(name="hook", url=f"{hook.url}/alerts",
                                   headers={"Authorization": "Bearer T"})
        sink = WebhookSink(receiver)
        hook.fail_next(1, retry_after=3)
        with pytest.raises(AlertDeliveryError) as err:
            await sink.send("k-1", [_alert()])
        assert err.value.retry_after == 3 and not err.value.permanent
        await sink.send("k-1", [_alert()])
        [request] = hook.requests
        assert request.headers["idempotency-key"] == "k-1"
        assert request.headers["authorization"] == "Bearer T"
        assert request.json()["alerts"][0]["labels"]["alertname"] == "OrderRejected"


async def test_the_outbox_is_delivered_in_order_and_a_failure_waits(alerts_db: AlertsDb) -> None:
    db = alerts_db
    async with LocalTelegram(per_chat_per_second=30) as server, LocalWebhook() as hook:
        config = load_alerts_config(None, environ={}, overrides={
            "group_wait": 0, "group_by": ["alertname", "fund", "n"], "receivers": [
                {"kind": "telegram", "name": "tg", "bot_token": TEST_BOT_TOKEN,
                 "chat_ids": [42], "api_url": server.api_url, "per_chat_per_second": 30,
                 "max_inline_wait": 0},
                {"kind": "webhook", "name": "hook", "url": hook.url}]})
        router = Router(db, config)
        dispatcher = Dispatcher(db, build_sinks(config), poll=0.05)
        for n in range(5):
            await router.ingest(_alert(n))
        assert await router.tick() == 10
        server.fail_next(1, retry_after=1)
        assert await dispatcher.drain("tg") == pytest.approx(1, abs=0.2)  # waits, in order
        assert server.messages == []
        await asyncio.sleep(1.05)
        await dispatcher.drain("tg")
        await dispatcher.drain("hook")
        assert [m.visible.count("n=") for m in server.messages] == [1] * 5
        order = [int(m.visible.split("n=")[1].split()[0]) for m in server.messages]
        assert order == [0, 1, 2, 3, 4]
        assert len(hook.requests) == 5
        async with db.pool.acquire() as conn:
            retried = await conn.fetchval("SELECT max(attempts) FROM outbox")
        assert await db.undelivered() == 0 and retried == 2
        router.clock = _Later(dt.timedelta(days=8))
        await router.tick()  # delivered more than a week ago: gone (and the 5 resolved)
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE delivered_at IS "
                                       "NOT NULL") == 0
        assert await db.undelivered() == 10


async def test_a_permanent_failure_does_not_hold_up_the_rest(alerts_db: AlertsDb) -> None:
    db = alerts_db
    async with LocalWebhook() as hook:
        config = load_alerts_config(None, environ={}, overrides={
            "receivers": [{"kind": "webhook", "name": "hook", "url": hook.url}]})
        sink = build_sinks(config)["hook"]
        async with db.pool.acquire() as conn:
            for n in range(2):
                await conn.execute(
                    "INSERT INTO outbox (receiver, group_key, alerts, created_at, "
                    "next_attempt_at) VALUES ('hook', 'g', $1::jsonb, now(), now())",
                    f"[{_alert(n).model_dump_json()}]")
        broken = WebhookSink(WebhookReceiver(name="hook", url=f"{hook.url}/x"))
        hook_handle = hook.handle

        async def refuse_first(request: Any) -> Any:
            if not hook.requests and request.path == "/x":
                return 400, {"error": "bad"}, {}
            return await hook_handle(request)

        hook.handle = refuse_first  # type: ignore[method-assign]
        assert await dispatch_alert(db, broken, 1, [_alert(0)]) is None  # permanent
        dispatcher = Dispatcher(db, {"hook": sink}, poll=0.05)
        await dispatcher.drain("hook")
        assert len(hook.requests) == 1  # the second went; the first waits an hour
        async with db.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT permanent, last_error FROM outbox WHERE id = 1")
        assert row["permanent"] and "400" in row["last_error"]
