"""load_config: source precedence, one error listing every problem, .env refusal, Vault via hvac."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mts1b_platform import redaction
from mts1b_platform.config import ConfigError, VaultSettings, env_name, load_config
from mts1b_platform.logging import configure_logging, get_logger
from pydantic import BaseModel, SecretStr

FakeVault = Any  # the conftest fixture's type; conftest modules are not importable


class OmsConfig(BaseModel):
    database_url: SecretStr
    broker_api_key: SecretStr
    max_orders_per_minute: int = 600
    venues: list[str] = ["paper"]
    dry_run: bool = False


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    redaction.clear_secrets()
    yield
    redaction.clear_secrets()


def test_env_name() -> None:
    assert env_name("oms", "database_url") == "MTS_OMS_DATABASE_URL"
    assert env_name("paper-broker", "key") == "MTS_PAPER_BROKER_KEY"


def test_precedence_overrides_env_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("MTS_OMS_DATABASE_URL=postgresql://from-dotenv\n"
                      "MTS_OMS_BROKER_API_KEY=key-from-dotenv\n"
                      "MTS_OMS_MAX_ORDERS_PER_MINUTE=10\n")
    environ = {"MTS_OMS_MAX_ORDERS_PER_MINUTE": "20", "MTS_OMS_VENUES": '["a", "b"]',
               "MTS_OMS_DRY_RUN": "true"}
    cfg = load_config("oms", OmsConfig, env_file=dotenv, environ=environ,
                      overrides={"broker_api_key": "key-from-overrides"})
    assert cfg.database_url.get_secret_value() == "postgresql://from-dotenv"
    assert cfg.broker_api_key.get_secret_value() == "key-from-overrides"
    assert cfg.max_orders_per_minute == 20
    assert cfg.venues == ["a", "b"]
    assert cfg.dry_run is True


def test_one_error_lists_every_problem(tmp_path: Path) -> None:
    environ = {"MTS_OMS_MAX_ORDERS_PER_MINUTE": "lots", "MTS_OMS_BROKER_API_KEY": "k" * 8}
    with pytest.raises(ConfigError) as info:
        load_config("oms", OmsConfig, env_file=tmp_path / "missing.env", environ=environ)
    err = info.value
    keys = {e["key"]: e for e in err.context["errors"]}
    assert set(keys) == {"database_url", "max_orders_per_minute"}
    assert keys["database_url"]["problem"] == "missing"
    assert "MTS_OMS_DATABASE_URL" in keys["database_url"]["looked_in"]
    assert "Vault (not configured" in keys["database_url"]["looked_in"]
    assert "environment variable MTS_OMS_MAX_ORDERS_PER_MINUTE" in keys[
        "max_orders_per_minute"]["looked_in"]
    assert "'lots'" in str(err)
    assert "2 problem(s)" in str(err)


def test_invalid_secret_value_is_not_echoed() -> None:
    class Strict(BaseModel):
        pin: SecretStr
        count: int

    with pytest.raises(ConfigError) as info:
        load_config("svc", Strict, env_file=None, environ={"MTS_SVC_COUNT": "x"},
                    overrides={"pin": 12345678})
    assert "12345678" not in str(info.value)
    assert "<hidden>" in str(info.value)


def test_dotenv_refused_in_production(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("MTS_OMS_DATABASE_URL=x\n")
    with pytest.raises(ConfigError, match="not allowed when MTS_ENV=production"):
        load_config("oms", OmsConfig, env_file=dotenv, environ={"MTS_ENV": "production"})


def test_loaded_secrets_are_redacted_in_logs() -> None:
    buf = io.StringIO()
    configure_logging("oms", fmt="json", stream=buf)
    cfg = load_config("oms", OmsConfig, env_file=None,
                      environ={"MTS_OMS_DATABASE_URL": "postgresql://u@h/db?sslkey=zz9",
                               "MTS_OMS_BROKER_API_KEY": "brk-ABCDEF-123"})
    get_logger("t").info("connecting with %s", cfg.broker_api_key.get_secret_value(),
                         dsn=cfg.database_url.get_secret_value())
    out = buf.getvalue()
    assert "brk-ABCDEF-123" not in out
    assert "sslkey=zz9" not in out


def _vault_settings(vault: FakeVault, **kw: object) -> VaultSettings:
    return VaultSettings(addr=vault.addr, **kw)  # type: ignore[arg-type]


def test_vault_token_auth_kv_v2(fake_vault: FakeVault) -> None:
    """Real hvac client against a local HTTP fixture implementing Vault's documented KV v2 read
    (GET /v1/secret/data/<path>) and AppRole login endpoints; no Vault server runs here."""
    vault = fake_vault
    vault.tokens.add("root-token-123")
    vault.secrets["secret/mts1b/oms"] = {"database_url": "postgresql://vault/db",
                                         "broker_api_key": "vault-key-999",
                                         "unrelated": "ignored"}
    cfg = load_config("oms", OmsConfig, env_file=None,
                      environ={"MTS_OMS_MAX_ORDERS_PER_MINUTE": "7"},
                      vault=_vault_settings(vault, token="root-token-123"))
    assert cfg.database_url.get_secret_value() == "postgresql://vault/db"
    assert cfg.broker_api_key.get_secret_value() == "vault-key-999"
    assert cfg.max_orders_per_minute == 7
    method, path, headers = vault.requests[-1]
    assert (method, path) == ("GET", "/v1/secret/data/mts1b/oms")
    assert headers["X-Vault-Token"] == "root-token-123"


def test_vault_approle_and_env_wins(fake_vault: FakeVault) -> None:
    """AppRole login through hvac against the fixture (see test_vault_token_auth_kv_v2)."""
    vault = fake_vault
    vault.approles["role-1"] = "secret-id-1"
    vault.secrets["secret/mts1b/oms"] = {"database_url": "postgresql://vault/db",
                                         "broker_api_key": "vault-key"}
    environ = {"VAULT_ADDR": vault.addr, "VAULT_ROLE_ID": "role-1",
               "VAULT_SECRET_ID": "secret-id-1",
               "MTS_OMS_BROKER_API_KEY": "env-key-wins"}
    cfg = load_config("oms", OmsConfig, env_file=None, environ=environ)
    assert cfg.database_url.get_secret_value() == "postgresql://vault/db"
    assert cfg.broker_api_key.get_secret_value() == "env-key-wins"
    assert [(m, p) for m, p, _ in vault.requests] == [
        ("POST", "/v1/auth/approle/login"), ("GET", "/v1/secret/data/mts1b/oms")]
    assert vault.requests[1][2]["X-Vault-Token"] in vault.tokens


def test_vault_missing_path_and_refusals(fake_vault: FakeVault) -> None:
    """Fixture-backed (see test_vault_token_auth_kv_v2): 404 means no secrets; 403 and a bad
    AppRole fail in production with the address and path, and fall back elsewhere."""
    vault = fake_vault
    vault.tokens.add("tok-1234")
    environ = {"MTS_OMS_DATABASE_URL": "x", "MTS_OMS_BROKER_API_KEY": "y"}
    cfg = load_config("oms", OmsConfig, env_file=None, environ=environ,
                      vault=_vault_settings(vault, token="tok-1234"))
    assert cfg.max_orders_per_minute == 600
    prod = {**environ, "MTS_ENV": "production"}
    with pytest.raises(ConfigError, match="Vault refused") as info:
        load_config("oms", OmsConfig, env_file=None, environ=prod,
                    vault=_vault_settings(vault, token="wrong-token"))
    assert f"{vault.addr} secret/mts1b/oms" in str(info.value)
    with pytest.raises(ConfigError, match="Vault refused"):
        load_config("oms", OmsConfig, env_file=None, environ=prod,
                    vault=_vault_settings(vault, role_id="nope", secret_id="nope-nope"))
    # Not production: the refusal is logged and env values are used.
    cfg = load_config("oms", OmsConfig, env_file=None, environ=environ,
                      vault=_vault_settings(vault, token="wrong-token"))
    assert cfg.broker_api_key.get_secret_value() == "y"


def test_vault_unreachable_in_production_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    environ = {"MTS_ENV": "production", "VAULT_ADDR": dead, "VAULT_TOKEN": "tok-1234"}
    with pytest.raises(ConfigError, match="Vault unreachable") as info:
        load_config("oms", OmsConfig, env_file=None, environ=environ)
    assert dead in str(info.value)
    assert "secret/mts1b/oms" in str(info.value)
