"""What the OMS commands print, and where: people's output on stdout, log lines on stderr.

Each command runs as a real process (``python -m mts1b_oms.cli``, which is ``mts mts1b-oms``)
with stdout and stderr read separately, against real NATS and PostgreSQL: no stdout line may be
a log line, a default run writes no INFO line, and every line ``serve`` logs names the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from mts1b_foundation import CommandReply, SubmitOrder
from mts1b_oms.testing import (
    drop_schema,
    make_fund,
    make_order,
    make_registry,
    write_signing_keys,
)
from mts1b_platform.bus import Bus, BusError

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KEYS: dict[str, str] = {}
"""MTS_OMS_KEYS (the registry ``serve`` loads) and MTS_OMS_KEY_FILE (a key with both roles, for
``halt`` and ``resume``), set by :func:`signing_keys` for every test of the module."""


@pytest.fixture(scope="module", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    registry, files = write_signing_keys(tmp_path_factory.mktemp("keys"))
    KEYS.update(MTS_OMS_KEYS=str(registry), MTS_OMS_KEY_FILE=str(files["desk-test"]))
    yield
    KEYS.clear()


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
    return {**env, "MTS_DATABASE_URL": DSN, "MTS_LOG_FORMAT": "json", **KEYS, **extra}


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


@contextlib.asynccontextmanager
async def _serving(tmp_path: Path, ns: str, schema: str, env: Mapping[str, str]
                   ) -> AsyncIterator[list[str]]:
    """Run ``serve`` until the block ends, then SIGTERM it; yields a list that then holds its
    stdout and stderr (its first stdout line, the one saying it serves, is read before)."""
    funds = tmp_path / "funds.json"
    funds.write_text(json.dumps([make_fund(name="CLI fund").model_dump(mode="json")]))
    (tmp_path / "instruments.json").write_text(make_registry().to_json())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mts1b_oms.cli", "serve", "--funds", str(funds),
        "--instruments", str(tmp_path / "instruments.json"),
        "--broker", "mts1b_oms.testing:RecordingBroker", "--schema", schema, "--namespace", ns,
        env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    output: list[str] = []
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
        yield output
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    output += [first.decode() + rest.decode(), err.decode()]


async def _serve(tmp_path: Path, ns: str, schema: str, env: Mapping[str, str]
                 ) -> tuple[str, str]:
    """Start ``serve``, wait for its line on stdout, SIGTERM it; its stdout and stderr."""
    async with _serving(tmp_path, ns, schema, env) as output:
        pass
    return output[0], output[1]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def test_halt_status_resume_print_the_state_on_stdout(place: tuple[str, str],
                                                           tmp_path: Path) -> None:
    """With an instance running, ``halt`` prints the state it applied and the sweep's
    outstanding cancels; ``status`` and ``resume`` print the state; nothing on stderr."""
    ns, schema = place
    where = ["--schema", schema]
    env = _env()
    async with _serving(tmp_path, ns, schema, env):
        results = [
            await _run(["halt", "--fund", "f1", *where, "--namespace", ns], env),
            await _run(["status", *where], env),
            await _run(["resume", "--fund", "f1", *where, "--namespace", ns], env),
            await _run(["status", *where], env),
        ]
    (rc, out, _err), *rest = results
    assert rc == 0 and re.fullmatch(
        r"fund f1: HALTED \(0 cancels outstanding, sweep swp-[0-9a-f-]+\)\n", out), out
    assert [(rc, out) for rc, out, _ in rest] == [
        (0, "fund f1: HALTED\n"), (0, "fund f1: ACTIVE\n"), (0, "all ACTIVE\n")]
    assert [err for _, _, err in results] == ["", "", "", ""]


async def test_halt_exits_non_zero_when_nats_is_unreachable(place: tuple[str, str]) -> None:
    """Reproduced: with NATS unreachable ``halt`` exited 0 and printed "HALTED" although no
    running instance heard it. Now it stores the state in PostgreSQL, says exactly that on
    stderr and exits 3."""
    ns, schema = place
    env = _env(MTS_NATS_URL=f"nats://127.0.0.1:{_closed_port()}")
    rc, out, err = await _run(["halt", "--fund", "f1", "--schema", schema, "--namespace", ns,
                               "--timeout", "0.5"], env)
    assert (rc, out) == (3, "fund f1: HALTED (stored in PostgreSQL only)\n")
    [said] = [line for line in err.splitlines() if line.startswith("fund f1: HALTED: NATS")]
    assert "NATS is unreachable" in said and "no running instance has confirmed it" in said
    assert "stored in PostgreSQL with sweep swp-" in said
    status = await _run(["status", "--schema", schema], env)
    assert status[:2] == (0, "fund f1: HALTED\n")


async def test_halt_exits_non_zero_when_no_instance_acknowledges(
        place: tuple[str, str]) -> None:
    """NATS answers but no OMS instance serves the namespace: exit 4, and say so."""
    ns, schema = place
    rc, out, err = await _run(["halt", "--all", "--schema", schema, "--namespace", ns,
                               "--timeout", "1"], _env())
    assert (rc, out) == (4, "global *: HALTED (stored in PostgreSQL only)\n")
    assert "no OMS instance acknowledged it within 1s" in err


async def test_halt_wait_reports_each_orders_outcome(place: tuple[str, str],
                                                    tmp_path: Path) -> None:
    """``halt --wait`` waits for the sweep and prints one line per order, then a summary."""
    ns, schema = place
    env = _env()
    bus = await Bus.connect(namespace=ns, connect_timeout=2)
    try:
        async with _serving(tmp_path, ns, schema, env):
            ids = []
            for i in range(3):
                r = await bus.request("mts.v1.oms.commands.submit",
                                      SubmitOrder(order=make_order(f"w{i}")), timeout=10,
                                      reply_model=CommandReply)
                assert isinstance(r, CommandReply) and r.ok, r
                ids.append(r.order_id)
            rc, out, err = await _run(["halt", "--fund", "f1", "--wait", "--schema", schema,
                                       "--namespace", ns], env)
    finally:
        await bus.drain()
    assert rc == 0 and err == "", err
    first, *orders, summary = out.splitlines()
    assert first.startswith("fund f1: HALTED (3 cancels outstanding, sweep swp-")
    assert sorted(orders) == sorted(f"  {oid} f1 canceled" for oid in ids)
    assert re.fullmatch(r"sweep swp-[0-9a-f-]+ finished: 3 canceled", summary), summary
