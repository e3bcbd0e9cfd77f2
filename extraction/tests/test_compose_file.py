"""extraction/tests/docker-compose.yml: valid Compose, and the same services as `mts dev up`.

Crosses: mts1b-platform (the embedded dev servers' defaults). No Docker engine runs in CI, so the
file is checked statically: against the Compose specification's JSON schema (the copy vendored
by check-jsonschema) and against the defaults in :mod:`mts1b_platform.devservices`, which are read
from the platform code here rather than written down a second time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from mts1b_platform.devservices import (
    DEFAULT_DATABASE_URL,
    DEFAULT_NATS_URL,
    DEFAULT_VAULT_ADDR,
)

COMPOSE = Path(__file__).with_name("docker-compose.yml")


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    found = doc["services"]
    assert isinstance(found, dict)
    return found


def _published(service: dict[str, Any]) -> set[tuple[str, int, int]]:
    """The service's ``host_ip:published:target`` port mappings as tuples."""
    out = set()
    for entry in service.get("ports", []):
        host_ip, published, target = str(entry).split(":")
        out.add((host_ip, int(published), int(target)))
    return out


def test_the_file_is_valid_compose() -> None:
    done = _validate(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validation above can fail: a misspelt key is refused."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text(encoding="utf-8")
    broken.write_text(text.replace("    ports:\n", "    portz:\n", 1), encoding="utf-8")
    done = _validate(broken)
    assert done.returncode != 0
    assert "portz" in done.stdout + done.stderr


def test_nats_matches_the_embedded_default(services: dict[str, Any]) -> None:
    url = urlsplit(DEFAULT_NATS_URL)
    nats = services["nats"]
    assert url.port is not None
    assert (url.hostname, url.port, url.port) in _published(nats)
    command = nats["command"]
    assert "-js" in command, "the bus needs JetStream"
    assert command[command.index("-p") + 1] == str(url.port)


def test_postgres_matches_the_embedded_default(services: dict[str, Any]) -> None:
    url = urlsplit(DEFAULT_DATABASE_URL)
    pg = services["postgres"]
    assert url.port is not None
    assert (url.hostname, url.port, url.port) in _published(pg)
    env = pg["environment"]
    assert env["POSTGRES_USER"] == url.username
    assert env["POSTGRES_DB"] == url.path.lstrip("/")
    # The default URL carries no password: the embedded server runs initdb --auth=trust.
    assert url.password is None
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "POSTGRES_PASSWORD" not in env
    command = pg["command"]
    assert command[command.index("-p") + 1] == str(url.port)


def test_openbao_matches_the_embedded_default(services: dict[str, Any]) -> None:
    url = urlsplit(DEFAULT_VAULT_ADDR)
    bao = services["openbao"]
    assert url.port is not None
    assert (url.hostname, url.port, url.port) in _published(bao)
    assert bao["command"][:2] == ["server", "-dev"]
    assert f"-dev-listen-address=0.0.0.0:{url.port}" in bao["command"]
    # Opt-in, like `mts dev up --vault`; no token is written into the file.
    assert bao["profiles"] == ["vault"]
    assert all("=" not in item for item in bao["environment"])


def test_every_port_is_bound_to_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for host_ip, _, _ in _published(service):
            assert host_ip == "127.0.0.1", name
