"""5,000 fuzzed messages through a bus consumer over the real NATS: 0 internal errors, 0 lost.

The generator and the checks are ``bench/bus_fuzz.py``'s (the full-size run, 100,000 messages,
is that script; its figures are in ``bench/RESULTS.md``), loaded from the repository so that CI
and the benchmark fuzz the same way. Random bytes, truncated JSON, wrong types, wrong
``schema_version``, unknown fields, odd JSON and payloads up to the server's ``max_payload`` go
onto ``mts.v1.datalake.bars.*``; every message must end either handled (exactly those that parse
as a ``Bar``) or on ``mts.v1.dlq.datalake`` with its size and SHA-256, and no dead letter's text
may hold the secret some payloads and headers carry. ``MTS_FUZZ_SEED`` replays a failing seed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")

from mts1b_platform.bus import Bus, BusError, BusSettings

pytestmark = pytest.mark.integration

NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bus_fuzz.py"
MESSAGES = 5000


def _fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_bus_fuzz", BENCH)
    assert spec is not None and spec.loader is not None, BENCH
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    namespace = f"fz{uuid.uuid4().hex[:10]}"
    try:
        b = await Bus.connect(BusSettings(url=NATS_URL, namespace=namespace, connect_timeout=2))
    except BusError as exc:
        pytest.skip(f"no NATS server reachable at {NATS_URL} ({exc}); run `mts dev up`")
    yield b
    await b.delete_streams()
    await b.drain()


async def test_fuzzed_messages_end_handled_or_dead_lettered(bus: Bus) -> None:
    fuzz = _fuzz_module()
    seed = int(os.environ.get("MTS_FUZZ_SEED", "15"))
    report = await fuzz.run(bus, MESSAGES, seed, timeout=300)
    summary = "\n".join([f"seed {seed}", *report.lines()])
    assert report.internal_errors == 0, summary
    assert report.lost == 0, summary
    assert report.problems == [], summary
    assert report.handled == report.valid > 0, summary
    assert report.handled + report.dead_lettered == MESSAGES, summary
    assert report.truncated >= 2, summary  # the two near max_payload, at least
    assert set(report.by_kind) == {"valid", "random", "truncated", "types", "version",
                                   "unknown", "odd", "huge"}, summary
