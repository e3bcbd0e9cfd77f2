"""Shared fixtures.

``fake_vault``: a tiny HTTP server speaking the two Vault endpoints config uses, as documented.

No Vault server can run on this machine, so the hvac path of ``load_config`` is tested against
this: ``POST /v1/auth/<mount>/login`` (AppRole login: JSON body ``role_id``/``secret_id``,
answers ``{"auth": {"client_token": ...}}`` or 400 ``{"errors": [...]}``) and
``GET /v1/<mount>/data/<path>`` (KV v2 read: needs ``X-Vault-Token``, answers
``{"data": {"data": {...}, "metadata": {...}}}``, 403 ``{"errors": ["permission denied"]}`` or
404 ``{"errors": []}``). The client on the other side is the real hvac.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class FakeVault:
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)  # "secret/mts1b/oms" -> data
    tokens: set[str] = field(default_factory=set)
    approles: dict[str, str] = field(default_factory=dict)  # role_id -> secret_id
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
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

        def do_POST(self) -> None:
            vault.requests.append(("POST", self.path, dict(self.headers)))
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) == 4 and parts[:2] == ["v1", "auth"] and parts[3] == "login":
                role, secret = body.get("role_id"), body.get("secret_id")
                if role not in vault.approles:
                    return self._reply(400, {"errors": ["invalid role ID"]})
                if vault.approles[role] != secret:
                    return self._reply(400, {"errors": ["invalid secret id"]})
                token = f"hvs.{uuid.uuid4().hex}"
                vault.tokens.add(token)
                return self._reply(200, {
                    "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                    "lease_duration": 0, "data": None, "wrap_info": None, "warnings": None,
                    "auth": {"client_token": token, "accessor": uuid.uuid4().hex,
                             "policies": ["default", "mts1b"], "token_policies": ["default"],
                             "metadata": {"role_name": "mts1b"}, "lease_duration": 1200,
                             "renewable": True, "entity_id": "", "token_type": "service",
                             "orphan": True}})
            return self._reply(404, {"errors": []})

        def do_GET(self) -> None:
            vault.requests.append(("GET", self.path, dict(self.headers)))
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) < 4 or parts[0] != "v1" or parts[2] != "data":
                return self._reply(404, {"errors": []})
            if self.headers.get("X-Vault-Token") not in vault.tokens:
                return self._reply(403, {"errors": ["permission denied"]})
            key = "/".join([parts[1], *parts[3:]])
            if key not in vault.secrets:
                return self._reply(404, {"errors": []})
            return self._reply(200, {
                "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                "lease_duration": 0, "wrap_info": None, "warnings": None, "auth": None,
                "data": {"data": vault.secrets[key],
                         "metadata": {"created_time": "2024-06-01T12:00:00.000000Z",
                                      "custom_metadata": None, "deletion_time": "",
                                      "destroyed": False, "version": 1}}})

    return Handler


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


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    """A running fake Vault (see the module docstring); its ``addr`` is the base URL."""
    vault = FakeVault()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(vault))
    vault.addr = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield vault
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
