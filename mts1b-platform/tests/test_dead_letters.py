"""Dead letters are never lost: a message too large to carry whole is dead-lettered with a prefix,
its size and SHA-256; a letter that cannot be stored leaves the message for redelivery.

``build_dead_letter`` is tested alone (sizes, what is cut first, redaction); the rest runs against
the real NATS JetStream (MTS_NATS_URL) under a throw-away namespace, with a bad message of about
1 MB - the size whose base64 letter used to exceed the server's max_payload and be dropped.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")

from mts1b_foundation.operations import DeadLetter
from mts1b_foundation.wire import parse_message
from mts1b_platform.bus import (
    DLQ_HEADROOM,
    MAX_LETTER_ERRORS,
    Bus,
    BusError,
    BusSettings,
    Delivery,
    build_dead_letter,
)

NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
BAR_SUBJECT = "mts.v1.datalake.bars.AAPL"
TS = dt.datetime(2024, 7, 3, 17, tzinfo=dt.UTC)


def _letter(data: bytes, max_bytes: int, **kwargs: Any) -> DeadLetter:
    options: dict[str, Any] = {"reason": "invalid message", "ts": TS, **kwargs}
    letter = build_dead_letter(BAR_SUBJECT, data, options.pop("headers", {}),
                               max_bytes=max_bytes, **options)
    assert len(letter.to_json()) <= max_bytes
    assert parse_message(DeadLetter, letter.to_json()) == letter  # valid as written
    return letter


def test_a_letter_that_fits_carries_the_whole_payload() -> None:
    data = b"\xff{not json" * 100
    letter = _letter(data, 100_000, headers={"X-Src": "t"})
    assert base64.b64decode(letter.payload_b64) == data
    assert (letter.payload_size, letter.payload_sha256, letter.payload_truncated) == (
        len(data), hashlib.sha256(data).hexdigest(), False)
    assert letter.headers == {"X-Src": "t"}


def test_a_payload_too_large_is_carried_as_the_longest_prefix_that_fits() -> None:
    data = bytes(range(256)) * 400  # 102,400 bytes: 136,536 in base64
    letter = _letter(data, 50_000, headers={"X-Src": "t"},
                     errors=[{"field": "<root>", "value": "x", "reason": "bad"}])
    prefix = base64.b64decode(letter.payload_b64)
    assert letter.payload_truncated
    assert data.startswith(prefix)
    assert 0 < len(prefix) < len(data)
    assert len(letter.to_json()) > 50_000 - 8  # the prefix fills the room (base64 quantum: 4)
    assert (letter.payload_size, letter.payload_sha256) == (len(data),
                                                            hashlib.sha256(data).hexdigest())
    assert letter.headers == {"X-Src": "t"} and len(letter.errors) == 1  # small: kept


def test_errors_and_headers_are_cut_before_the_payload_is_lost() -> None:
    errors = [{"field": f"f{i}", "value": "v" * 150, "reason": "bad"} for i in range(5000)]
    headers = {f"X-H{i}": "h" * 5000 for i in range(100)}
    letter = _letter(b"{}" * 100_000, 200_000, errors=errors, headers=headers)
    assert letter.payload_truncated
    assert len(letter.errors) == MAX_LETTER_ERRORS + 1
    assert letter.errors[-1] == {"field": "<dead letter>", "value": 5000 - MAX_LETTER_ERRORS,
                                 "reason": "more errors left out so that the letter fits "
                                           "max_payload"}
    assert len(letter.headers) == 64
    assert all(len(v) == 1024 for v in letter.headers.values())
    assert len(base64.b64decode(letter.payload_b64)) > 50_000


def test_when_even_cut_errors_do_not_fit_they_are_left_out() -> None:
    errors = [{"field": f"f{i}", "value": "v" * 1500, "reason": "bad"} for i in range(200)]
    letter = _letter(b"x" * 10_000, 20_000, errors=errors, headers={"X-Big": "h" * 900},
                     reason="r" * 3000)
    assert letter.errors == [{"field": "<dead letter>", "value": 200,
                              "reason": "errors and headers left out so that the letter fits "
                                        "max_payload"}]
    assert letter.headers == {}
    assert len(letter.reason) == 1000
    assert letter.payload_truncated and letter.payload_size == 10_000


def test_a_limit_no_letter_fits_is_an_error() -> None:
    with pytest.raises(BusError, match="does not fit in 100 bytes even without its payload"):
        build_dead_letter(BAR_SUBJECT, b"x" * 1000, {}, reason="r", max_bytes=100)


def test_text_in_a_letter_is_redacted_and_the_payload_is_not() -> None:
    data = b'{"url": "nats://trader:hunter22@db"}'
    letter = _letter(data, 100_000, reason="handler failed: password=hunter22",
                     headers={"Authorization": "Bearer abc.def.ghi"},
                     errors=[{"field": "dsn", "value": "postgresql://u:hunter22@db/x",
                              "reason": "bad"}])
    text = letter.model_dump_json(exclude={"payload_b64"})
    assert "hunter22" not in text and "abc.def.ghi" not in text
    assert letter.reason == "handler failed: password=***"
    assert letter.errors[0]["value"] == "postgresql://u:***@db/x"
    assert base64.b64decode(letter.payload_b64) == data  # the evidence stays as it was


# --- over the real NATS ----------------------------------------------------------------------


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    try:
        b = await Bus.connect(BusSettings(url=NATS_URL, namespace=namespace, connect_timeout=2))
    except BusError as exc:
        pytest.skip(f"no NATS server reachable at {NATS_URL} ({exc}); run `mts dev up`")
    await b.declare_streams(["datalake"])
    yield b
    if b.nc.is_closed:
        b = await Bus.connect(BusSettings(url=NATS_URL, namespace=namespace))
    await b.delete_streams()
    await b.drain()


async def _dead_letters(bus: Bus, n: int, timeout: float = 20.0) -> list[DeadLetter]:
    sub = await bus.js.pull_subscribe(bus.wire_subject("mts.v1.dlq.>"),
                                      stream=bus.stream_for("dlq"))
    msgs = await sub.fetch(n, timeout=timeout)
    for m in msgs:
        await m.ack()
    await sub.unsubscribe()
    return [parse_message(DeadLetter, m.data) for m in msgs]


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _near_max(bus: Bus) -> bytes:
    """A bad message as large as the server takes, leaving room for its headers."""
    return b'{"symbol": "AAPL", "close": "' + b"9" * (bus.nc.max_payload - 1000) + b'"}'


@pytest.mark.integration
async def test_a_bad_message_near_max_payload_is_dead_lettered_truncated(bus: Bus) -> None:
    handled: list[Delivery[Any]] = []

    async def handler(delivery: Delivery[Any]) -> None:
        handled.append(delivery)

    consumer = await bus.consume(BAR_SUBJECT, handler, durable="big")
    data = _near_max(bus)
    await bus.publish_bytes(BAR_SUBJECT, data, headers={"Nats-Msg-Id": "huge-1"})
    (letter,) = await _dead_letters(bus, 1)
    prefix = base64.b64decode(letter.payload_b64)
    assert letter.payload_truncated
    assert letter.payload_size == len(data) > 1_000_000 * 0.99
    assert letter.payload_sha256 == hashlib.sha256(data).hexdigest()
    assert data.startswith(prefix) and len(prefix) > 0.7 * len(data)
    assert letter.headers["Nats-Msg-Id"] == "huge-1"
    assert "invalid message" in letter.reason
    assert len(letter.to_json()) <= bus.nc.max_payload - DLQ_HEADROOM
    assert handled == []
    await _until(lambda: consumer.stats["dead_lettered"] == 1)
    assert consumer.stats == {"acked": 0, "naked": 0, "dead_lettered": 1, "left": 0}
    await consumer.stop()


@pytest.mark.integration
async def test_an_invalid_request_near_max_payload_is_dead_lettered(bus: Bus) -> None:
    from mts1b_foundation import CancelOrder, CommandReply

    async def cancel(request: CancelOrder) -> CommandReply:
        return CommandReply(ok=True)

    await bus.declare_streams(["oms"])
    await bus.serve("mts.v1.oms.commands.cancel", cancel)
    data = _near_max(bus)
    reply = await bus.nc.request(bus.wire_subject("mts.v1.oms.commands.cancel"), data,
                                 timeout=20)
    assert reply.headers is not None and reply.headers["Mts-Error"] == "FOUNDATION.VALIDATION"
    (letter,) = await _dead_letters(bus, 1)
    assert letter.payload_truncated and letter.payload_size == len(data)
    assert letter.payload_sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.integration
async def test_a_letter_that_cannot_be_stored_leaves_the_message_for_redelivery(
        bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """No DLQ stream: the letter is refused, so the message is not acknowledged and an error
    is logged; once the stream is back, the redelivered message is dead-lettered."""
    assert await bus.js.delete_stream(bus.stream_for("dlq"))

    async def handler(delivery: Delivery[Any]) -> None:
        raise AssertionError("an invalid message never reaches the handler")

    consumer = await bus.consume(BAR_SUBJECT, handler, durable="nodlq", ack_wait=1.0)
    data = b"\xff junk"
    with caplog.at_level(logging.ERROR, logger="mts1b_platform.bus"):
        await bus.publish_bytes(BAR_SUBJECT, data, headers={"Nats-Msg-Id": "junk-nodlq"})
        await _until(lambda: consumer.stats["left"] >= 1)
    failures = [r for r in caplog.records if r.getMessage() == "message left for redelivery"]
    assert failures and failures[0].levelno == logging.ERROR
    assert consumer.stats["dead_lettered"] == 0 and consumer.stats["acked"] == 0
    await bus.declare_streams(["datalake"])  # brings the DLQ stream back
    (letter,) = await _dead_letters(bus, 1)
    assert base64.b64decode(letter.payload_b64) == data
    await _until(lambda: consumer.stats["dead_lettered"] == 1)
    await consumer.stop()
