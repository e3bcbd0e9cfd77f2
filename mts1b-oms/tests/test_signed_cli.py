"""``mts mts1b-oms keygen`` and the signing side of ``halt`` / ``reduce`` / ``resume``.

keygen writes the private key to a file only its owner may read and prints only the public
key's registry entry; the private key appears in no output. halt, reduce and resume sign with
``--key-file`` (or the file ``$MTS_OMS_KEY_FILE`` names); a resume that no instance could
verify is never stored directly; a resume signed by an operations key is refused by a running
OMS and exits 1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import stat
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from mts1b_foundation import TradingState
from mts1b_oms.cli import app
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.signing import KeyRegistry, SigningKey
from mts1b_oms.store import Store
from mts1b_oms.testing import drop_schema, make_fund, make_registry, write_signing_keys
from mts1b_platform.bus import Bus, BusError
from typer.testing import CliRunner

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _said(output: str) -> str:
    """The words of a usage error without the panel Typer draws around it: the panel wraps at
    the terminal's width, so a message holding a path breaks wherever the path's length puts
    it (the test failed under a shorter ``--basetemp``)."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", output).split())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keygen_writes_a_private_file_and_prints_only_the_public_entry(tmp_path: Path) -> None:
    out = tmp_path / "ops-alice.key"
    res = CliRunner().invoke(app, ["keygen", "--name", "ops-alice", "--out", str(out),
                                   "--role", "operations"])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    seed = json.loads(out.read_text())["seed"]
    assert seed not in res.stdout and seed not in res.stderr
    [line] = res.stdout.splitlines()
    entry = json.loads(line)
    assert entry == {"name": "ops-alice", "roles": ["operations"],
                     "public_key": base64.b64encode(SigningKey.load(out).public_key).decode()}
    # the printed line is what the registry takes, as it is
    registry = KeyRegistry.from_json(json.dumps({"keys": [entry]}))
    assert registry.get("ops-alice") is not None


def test_keygen_makes_a_missing_key_folder_private(tmp_path: Path) -> None:
    """The first key on a new machine goes to a folder nothing has made yet (``~/.mts``)."""
    out = tmp_path / "home" / ".mts" / "ops.key"
    res = CliRunner().invoke(app, ["keygen", "--name", "ops", "--out", str(out),
                                   "--role", "operations"])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert SigningKey.load(out).name == "ops"


def test_keygen_never_overwrites_and_needs_a_role(tmp_path: Path) -> None:
    out = tmp_path / "k.key"
    runner = CliRunner()
    assert runner.invoke(app, ["keygen", "--name", "a", "--out", str(out), "--role", "risk"]
                         ).exit_code == 0
    before = out.read_text()
    again = runner.invoke(app, ["keygen", "--name", "b", "--out", str(out), "--role", "risk"])
    assert again.exit_code == 2 and "never overwritten" in _said(again.output)
    assert out.read_text() == before
    no_role = runner.invoke(app, ["keygen", "--name", "c", "--out", str(tmp_path / "c.key")])
    assert no_role.exit_code == 2 and ("--role operations and/or --role risk"
                                        in _said(no_role.output))
    assert not (tmp_path / "c.key").exists()


def test_a_key_file_others_may_read_is_refused_without_showing_it(tmp_path: Path) -> None:
    _registry, files = write_signing_keys(tmp_path)
    key = files["ops-test"]
    key.chmod(0o644)
    seed = json.loads(key.read_text())["seed"]
    res = CliRunner().invoke(app, ["halt", "--fund", "f1", "--key-file", str(key)])
    assert res.exit_code == 2 and "may be read by others" in _said(res.output)
    assert seed not in res.output and seed not in _said(res.output)


def test_a_resume_no_instance_could_verify_is_not_stored(tmp_path: Path) -> None:
    """NATS unreachable: a halt would be stored in PostgreSQL directly (exit 3); a resume is
    not - only an instance that checked the key's role may lift a halt. PostgreSQL is out of
    reach here too, so a resume that tried to store itself would say so."""
    _registry, files = write_signing_keys(tmp_path)
    env = {"MTS_NATS_URL": f"nats://127.0.0.1:{_closed_port()}",
           "MTS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres",
           "MTS_OMS_KEY_FILE": str(files["risk-test"])}
    res = CliRunner().invoke(app, ["resume", "--fund", "f1", "--timeout", "0.2"], env=env)
    assert res.exit_code == 3, res.output
    assert res.stdout == ""
    assert "NOT applied: NATS is unreachable" in res.stderr
    assert "A resume is applied only by a running OMS instance" in res.stderr


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[tuple[str, str, dict[str, Path]]]:
    """An OMS service on a throwaway namespace and schema with the test keys registered:
    (namespace, schema, private key files)."""
    ns = f"c{uuid.uuid4().hex[:10]}"
    schema = f"oms_c_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    registry, files = write_signing_keys(tmp_path)
    opts = ServeOptions(dsn=DSN, funds=[make_fund()], instruments=make_registry(),
                        broker="mts1b_oms.testing:RecordingBroker", schema=schema,
                        namespace=ns, prices={"AAPL": Decimal(100)},
                        keys=KeyRegistry.load(registry))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield ns, schema, files
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


@pytest.mark.integration
async def test_the_oms_refuses_a_resume_signed_by_an_operations_key(
        serving: tuple[str, str, dict[str, Path]]) -> None:
    ns, schema, files = serving
    runner = CliRunner()
    args = ["--fund", "f1", "--schema", schema, "--namespace", ns]

    def run(command: str, key: str) -> tuple[int, str, str]:
        """The command's exit code, stdout and its own stderr lines: the OMS serving it runs in
        this process, so the service's log lines (JSON) reach the runner's stderr too."""
        res = runner.invoke(app, [command, *args], env={"MTS_DATABASE_URL": DSN,
                                                        "MTS_OMS_KEY_FILE": str(files[key]),
                                                        "MTS_LOG_FORMAT": "json"})
        own = [line for line in res.stderr.splitlines(keepends=True)
               if not line.startswith('{"timestamp"')]
        return res.exit_code, res.stdout, "".join(own)

    assert (await asyncio.to_thread(run, "halt", "ops-test"))[0] == 0
    rc, out, err = await asyncio.to_thread(run, "resume", "ops-test")
    assert (rc, out) == (1, "")
    assert err.startswith("fund f1: ACTIVE refused by the OMS: UNAUTHORIZED: key 'ops-test' "
                          "may not resume: that needs the role 'risk'")
    assert await asyncio.to_thread(run, "resume", "risk-test") == (0, "fund f1: ACTIVE\n", "")
    store = await Store.open(DSN, schema=schema, min_size=1, max_size=1)
    try:
        assert [(c.state, c.actor) for c in await store.state_changes()] == [
            (TradingState.ACTIVE, "risk-test")]
    finally:
        await store.close()
