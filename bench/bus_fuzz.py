"""Fuzz the bus's consumer and dead-letter path over the real NATS JetStream.

    python bench/bus_fuzz.py                          # 100,000 messages, seed 15
    python bench/bus_fuzz.py --messages 5000 --seed 7

A seeded generator writes ``--messages`` payloads onto ``mts.v1.datalake.bars.<symbol>`` (the
subjects of the ``Bar`` model) with ``Bus.publish_batch_bytes``, each with its own
``Nats-Msg-Id``; one durable ``Bus.consume`` consumer takes them. Kinds of payload, by share:

=========== ===== =====================================================================
valid        20 % a correct Bar (some with a huge ``interval``, which the model allows)
random bytes 19 % 0-4,096 random bytes, some of them valid UTF-8 text
truncated    15 % a valid Bar's JSON cut at a random point
wrong types  15 % one field replaced: list, object, bool, float, null, huge int, "NaN", ...
versions     10 % ``schema_version`` 0, 3, 99, -1, "2", 2.0, true, null, 1e400, missing
unknown      10 % extra fields, deeply nested values, duplicate keys
odd JSON     10 % a BOM, a JSON array or scalar, invalid escapes, lone surrogates, deep nests
huge          1 % a field of 10 KB up to the server's max_payload (some within 2 KB of it)
=========== ===== =====================================================================

Some payloads and headers carry ``password=fuzz-s3cret-...``. What is checked, and printed:

- every message ends either handled (exactly the payloads that ``parse_message(Bar, ...)``
  accepts) or on ``mts.v1.dlq.datalake`` (all the others): ``lost`` must be 0;
- each dead letter's ``payload_size`` and ``payload_sha256`` describe its original, a letter is
  truncated only when the whole letter would exceed ``max_payload``, and its prefix is the
  original's start;
- ``internal errors`` must be 0: handler crashes (naks), messages the consumer left for
  redelivery, and ERROR lines logged by ``mts1b_platform.bus``;
- no letter's reason, errors or headers hold the fuzzed secret (the payload keeps it: it is
  the evidence).

``tests/test_bus_fuzz.py`` of mts1b-platform runs :func:`run` with 5,000 messages in CI. Figures
live in ``bench/RESULTS.md``. Everything runs under a throw-away namespace whose streams are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mts1b_foundation import Bar, ValidationFailed
from mts1b_foundation.operations import DeadLetter
from mts1b_foundation.wire import parse_message
from mts1b_platform.bus import DLQ_HEADROOM, Bus, BusSettings, Delivery
from mts1b_platform.logging import configure_logging

SUBJECT = "mts.v1.datalake.bars.{}"
SECRET = "fuzz-s3cret-7f3a"
KINDS = (("valid", 20), ("random", 19), ("truncated", 15), ("types", 15), ("version", 10),
         ("unknown", 10), ("odd", 10), ("huge", 1))
SYMBOLS = ("AAPL", "MSFT", "BRK_2EB", "SPY", "X")


def _bar_dict(rng: random.Random) -> dict[str, Any]:
    low = rng.randint(1, 1000)
    high = low + rng.randint(0, 50)
    return {"schema_version": 2, "symbol": rng.choice(("AAPL", "MSFT", "SPY", "X")),
            "ts": f"2024-07-{rng.randint(1, 28):02d}T20:00:00Z", "interval": "1d",
            "open": str(low), "high": str(high), "low": str(low),
            "close": str(rng.randint(low, high)), "volume": str(rng.randint(0, 10**9))}


_WRONG = ([], {}, True, False, None, 1.5, -1, 10**40, "NaN", "Infinity", "1e999999", "",
          "١٢٣", " 12 ", "12_000", [1, 2], {"x": 1}, "../../etc/passwd", f"password={SECRET}")
_VERSIONS = (0, 3, 99, -1, "2", 2.0, True, None, 10**400, "")


def _payload(kind: str, rng: random.Random, max_payload: int) -> bytes:
    """One fuzzed payload of ``kind``."""
    bar = _bar_dict(rng)
    if kind == "valid":
        if rng.random() < 0.02:
            bar["interval"] = "m" * rng.randint(1000, 200_000)
        return json.dumps(bar).encode()
    if kind == "random":
        n = rng.choice((0, 1, 2, rng.randint(0, 64), rng.randint(0, 4096)))
        if rng.random() < 0.3:
            return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(n)).encode(
                "utf-8", "surrogatepass")
        return rng.randbytes(n)
    if kind == "truncated":
        text = json.dumps(bar).encode()
        return text[:rng.randint(0, len(text) - 1)]
    if kind == "types":
        bar[rng.choice(list(bar))] = rng.choice(_WRONG)
        return json.dumps(bar, default=str).encode()
    if kind == "version":
        if rng.random() < 0.1:
            del bar["schema_version"]
            bar["open"] = rng.choice(_WRONG)  # so that it is not simply valid
        else:
            bar["schema_version"] = rng.choice(_VERSIONS)
        return json.dumps(bar).encode()
    if kind == "unknown":
        choice = rng.random()
        if choice < 0.4:
            bar[f"x_{rng.randint(0, 999)}"] = rng.choice(_WRONG)
        elif choice < 0.7:
            bar["symbol"] = {"nested": [[[{"password": SECRET}]]]}
        else:
            text = json.dumps(bar)
            return (text[:-1] + f', "open": "{rng.choice(["1", "x", "-5"])}"}}').encode()
        return json.dumps(bar, default=str).encode()
    if kind == "odd":
        return rng.choice((
            b"\xef\xbb\xbf" + json.dumps(bar).encode(),
            json.dumps([bar]).encode(),
            json.dumps(rng.choice((1, "x", None, True, 1.5))).encode(),
            b'{"symbol": "\\x41"}',
            b'{"symbol": "\\ud800"}',
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 2000 + b"1" + b"}" * 2000,
            b"{" + b'"k": 1,' * 5000 + b'"k": 2}',
            json.dumps({**bar, "close": f"password={SECRET}"}).encode(),
        ))
    # huge: a field (or junk) of 10 KB up to the server's limit, some within 2 KB of it
    room = max_payload - 1500
    size = rng.choice((rng.randint(10_000, 100_000), rng.randint(100_000, room),
                       rng.randint(room - 2000, room)))
    target = rng.choice(("close", "symbol", "junk", "errors"))
    if target == "junk":
        return rng.randbytes(size)
    if target == "errors":  # many invalid fields: a long list of validation errors
        many = {f"k{i}": "v" for i in range(size // 12)}
        return json.dumps({**bar, **many})[:size].encode()
    bar[target] = f"password={SECRET} " + "9" * size
    return json.dumps(bar).encode()[:max_payload - 1000]


def generate(n: int, seed: int, max_payload: int) -> list[tuple[str, str, bytes]]:
    """``n`` fuzzed ``(msg_id, kind, payload)``; the first two are huge, near ``max_payload``
    (so that even a small run dead-letters a truncated letter)."""
    rng = random.Random(seed)
    names = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    out = []
    for i in range(n):
        if i < 2:
            kind = "huge"
            data = b'{"symbol": "' + b"A" * (max_payload - 1500 - i) + b'"}'
        else:
            kind = rng.choices(names, weights)[0]
            data = _payload(kind, rng, max_payload)
        out.append((f"fz-{seed}-{i}", kind, data))
    return out


@dataclass
class Report:
    """What a run found (``ok`` when nothing was lost and nothing went wrong)."""

    messages: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    valid: int = 0
    handled: int = 0
    dead_lettered: int = 0
    truncated: int = 0
    lost: int = 0
    internal_errors: int = 0
    problems: list[str] = field(default_factory=list)
    publish_s: float = 0.0
    drain_s: float = 0.0
    consumer_stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.internal_errors and not self.problems

    def lines(self) -> list[str]:
        rate = self.messages / self.drain_s if self.drain_s else 0.0
        kinds = ", ".join(f"{k} {v:,}" for k, v in self.by_kind.items())
        return [
            f"messages {self.messages:,} ({kinds})",
            f"handled {self.handled:,} of {self.valid:,} valid; dead-lettered "
            f"{self.dead_lettered:,} ({self.truncated:,} truncated); lost {self.lost}; "
            f"internal errors {self.internal_errors}",
            f"publish {self.publish_s:.1f} s; consumed and dead-lettered in {self.drain_s:.1f} s "
            f"({rate:,.0f} messages/s); consumer stats {self.consumer_stats}",
            *(f"PROBLEM: {p}" for p in self.problems[:20]),
        ]


class _Errors(logging.Handler):
    """Counts ERROR lines of the bus (a handler that failed, a letter not stored, ...)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def run(bus: Bus, n: int, seed: int, *, timeout: float = 600.0) -> Report:
    """Publish ``n`` fuzzed messages, consume them, check every message's fate."""
    report = Report(messages=n)
    max_payload = bus.nc.max_payload
    limit = max_payload - DLQ_HEADROOM
    messages = generate(n, seed, max_payload)
    report.by_kind = dict(Counter(kind for _, kind, _ in messages))
    valid_ids: set[str] = set()
    for msg_id, _, data in messages:
        try:
            parse_message(Bar, data)
        except ValidationFailed:
            continue
        valid_ids.add(msg_id)
    report.valid = len(valid_ids)
    originals = {msg_id: data for msg_id, _, data in messages}

    await bus.declare_streams(["datalake"])
    handled: list[str] = []

    async def handler(delivery: Delivery[Any]) -> None:
        handled.append(delivery.msg_id or "?")

    errors = _Errors()
    bus_log = logging.getLogger("mts1b_platform.bus")
    bus_log.addHandler(errors)
    try:
        durable = f"fuzz{uuid.uuid4().hex[:8]}"
        consumer = await bus.consume(SUBJECT.format("*"), handler, durable=durable, batch=256)
        started = time.perf_counter()
        rng = random.Random(seed + 1)
        for i in range(0, n, 500):
            chunk = messages[i:i + 500]
            await bus.publish_batch_bytes(
                [(SUBJECT.format(rng.choice(SYMBOLS)), data,
                  {"Nats-Msg-Id": msg_id, "X-Fuzz": kind,
                   **({"Authorization": f"Bearer {SECRET}"} if j % 7 == 0 else {})})
                 for j, (msg_id, kind, data) in enumerate(chunk)], timeout=120)
        report.publish_s = time.perf_counter() - started
        deadline = time.monotonic() + timeout
        stats = consumer.stats
        while stats["acked"] + stats["dead_lettered"] < n and time.monotonic() < deadline:
            if stats["naked"] or stats["left"]:
                break
            await asyncio.sleep(0.05)
        report.drain_s = time.perf_counter() - started
        await consumer.stop()
        report.consumer_stats = dict(stats)
    finally:
        bus_log.removeHandler(errors)

    stored = await _read_letters(bus, stats["dead_lettered"])
    letters = dict(stored)
    report.handled = len(handled)
    report.dead_lettered = len(stored)
    report.truncated = sum(1 for _, x in stored if x.payload_truncated)
    report.internal_errors = stats["naked"] + stats["left"] + len(errors.records)
    report.problems += [f"logged: {r.getMessage()}" for r in errors.records]
    fate = Counter(handled) + Counter(msg_id for msg_id, _ in stored)
    report.lost = sum(1 for msg_id in originals if fate[msg_id] == 0)
    report.problems += [f"{m} handled or dead-lettered {c} times" for m, c in fate.items()
                        if c > 1]
    if set(handled) != valid_ids:
        report.problems.append(f"handled {len(set(handled) ^ valid_ids)} messages other than "
                               "exactly the valid ones")
    for msg_id, letter in letters.items():
        report.problems += _check_letter(msg_id, letter, originals.get(msg_id), limit)
    return report


def _check_letter(msg_id: str, letter: DeadLetter, data: bytes | None,
                  limit: int) -> list[str]:
    if data is None:
        return [f"a letter for unknown message {msg_id}"]
    problems = []
    prefix = base64.b64decode(letter.payload_b64)
    if (letter.payload_size, letter.payload_sha256) != (len(data),
                                                        hashlib.sha256(data).hexdigest()):
        problems.append(f"{msg_id}: size or digest do not describe the original")
    if not data.startswith(prefix):
        problems.append(f"{msg_id}: payload is not the original's start")
    if letter.payload_truncated != (len(prefix) < len(data)):
        problems.append(f"{msg_id}: payload_truncated is wrong")
    if letter.payload_truncated and 4 * -(-len(data) // 3) + 2000 < limit:
        problems.append(f"{msg_id}: truncated although the whole payload fits")
    if SECRET in letter.model_dump_json(exclude={"payload_b64"}):
        problems.append(f"{msg_id}: the fuzzed secret is in the letter's text")
    return problems


async def _read_letters(bus: Bus, expected: int) -> list[tuple[str, DeadLetter]]:
    """Every dead letter of the namespace, with the original's ``Nats-Msg-Id``."""
    sub = await bus.js.pull_subscribe(bus.wire_subject("mts.v1.dlq.>"),
                                      stream=bus.stream_for("dlq"))
    letters: list[tuple[str, DeadLetter]] = []
    seen = 0
    try:
        while seen < expected:
            try:
                msgs = await sub.fetch(min(1000, expected - seen), timeout=10)
            except TimeoutError:
                break
            for m in msgs:
                seen += 1
                letter = parse_message(DeadLetter, m.data)
                letters.append((letter.headers.get("Nats-Msg-Id", f"?{seen}"), letter))
                await m.ack()
    finally:
        await sub.unsubscribe()
    return letters


def _loadavg() -> str:
    path = Path("/proc/loadavg")
    return path.read_text().strip() if path.exists() else "n/a"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("MTS_NATS_URL",
                                                        "nats://127.0.0.1:4222"))
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    # The bus logs each dead letter at WARNING; the run counts ERROR lines itself.
    configure_logging("bus-fuzz", level="ERROR")
    bus = await Bus.connect(BusSettings(url=args.url, namespace=f"fz{uuid.uuid4().hex[:8]}"))
    try:
        print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; nats-server "
              f"{bus.server_version}, max_payload {bus.nc.max_payload:,}; Python "
              f"{platform.python_version()}; {os.cpu_count()} cores; loadavg {_loadavg()}")
        report = await run(bus, args.messages, args.seed, timeout=3600)
        for line in report.lines():
            print(line)
        print(f"loadavg after: {_loadavg()}")
        print("OK" if report.ok else "FAILED")
        return 0 if report.ok else 1
    finally:
        await bus.delete_streams()
        await bus.drain()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
