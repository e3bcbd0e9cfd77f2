"""What the OMS commands print, and where: people's output on stdout, log lines on stderr.

Each command runs as a real process (``python -m mts1b_oms.cli``, which is ``mts mts1b-oms``)
with stdout and stderr read separately, against real NATS and PostgreSQL: no stdout line may be
a log line, a default run writes no INFO line, and every line ``serve`` logs names the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from mts1b_oms.testing import drop_schema, make_fund
from mts1b_platform.bus import Bus, BusError

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def place() -> AsyncIterator[tuple[str, str]]:
    """A throwaway NATS namespace and PostgreSQL schema, removed afterwards."""
    ns = f"o{uuid.uuid4().hex[:10]}"
    schema = f"oms_o_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    try:
        yield ns, schema
    finally:
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTS_LOG_")}
    return {**env, "MTS_DATABASE_URL": DSN, "MTS_LOG_FORMAT": "json", **extra}


def _log_lines(text: str) -> list[dict[str, object]]:
    """Every stderr line as a parsed JSON log line (fails on anything else)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _assert_no_log_line(stdout: str) -> None:
    for line in stdout.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        assert not (isinstance(parsed, dict) and "level" in parsed), line


async def _run(args: list[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mts1b_oms.cli", *args, env=dict(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def _serve(tmp_path: Path, ns: str, schema: str, env: Mapping[str, str]
                 ) -> tuple[str, str]:
    """Start ``serve``, wait for its line on stdout, SIGTERM it; its stdout and stderr."""
    funds = tmp_path / "funds.json"
    funds.write_text(json.dumps([make_fund(name="CLI fund").model_dump(mode="json")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mts1b_oms.cli", "serve", "--funds", str(funds),
        "--broker", "mts1b_oms.testing:RecordingBroker", "--schema", schema, "--namespace", ns,
        env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
    finally:
        proc.send_signal(signal.SIGTERM)
    rest, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return first.decode() + rest.decode(), err.decode()


async def test_serve_says_it_is_up_on_stdout_and_logs_nothing_by_default(
        place: tuple[str, str], tmp_path: Path) -> None:
    ns, schema = place
    out, err = await _serve(tmp_path, ns, schema, _env())
    assert out.splitlines() == [
        f"oms serving funds f1 on mts.v1.oms.commands.* (schema {schema}, namespace {ns}); "
        "SIGTERM drains", "oms stopped"]
    assert [line for line in _log_lines(err) if line["level"] in ("DEBUG", "INFO")] == []


async def test_serve_names_itself_in_every_log_line(place: tuple[str, str],
                                                     tmp_path: Path) -> None:
    ns, schema = place
    out, err = await _serve(tmp_path, ns, schema, _env(MTS_LOG_LEVEL="INFO"))
    _assert_no_log_line(out)
    lines = _log_lines(err)
    assert {"oms serving", "oms stopped"} <= {str(line["message"]) for line in lines}
    assert {line.get("service") for line in lines} == {"oms"}


async def test_halt_status_resume_print_the_state_on_stdout(place: tuple[str, str]) -> None:
    ns, schema = place
    where = ["--schema", schema]
    env = _env()
    results = [
        await _run(["halt", "--fund", "f1", *where, "--namespace", ns], env),
        await _run(["status", *where], env),
        await _run(["resume", "--fund", "f1", *where, "--namespace", ns], env),
        await _run(["status", *where], env),
    ]
    assert [(rc, out) for rc, out, _ in results] == [
        (0, "fund f1: HALTED\n"), (0, "fund f1: HALTED\n"), (0, "fund f1: ACTIVE\n"),
        (0, "all ACTIVE\n")]
    assert [err for _, _, err in results] == ["", "", "", ""]
