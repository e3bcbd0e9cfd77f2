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

OpenBao = Any  # conftest's fixture types; conftest modules are not importable


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


# -- Vault: a real OpenBao server (conftest's ``openbao``), see also test_vault.py --------------


@pytest.mark.integration
def test_vault_token_auth_kv_v2(openbao: OpenBao) -> None:
    openbao.put("oms", {"database_url": "postgresql://vault/db", "broker_api_key": "vault-key-999",
                        "unrelated": "ignored"})
    token = openbao.token(openbao.read_policy("oms"))
    cfg = load_config("oms", OmsConfig, env_file=None,
                      environ={"MTS_OMS_MAX_ORDERS_PER_MINUTE": "7"},
                      vault=VaultSettings(addr=openbao.addr, token=token))
    assert cfg.database_url.get_secret_value() == "postgresql://vault/db"
    assert cfg.broker_api_key.get_secret_value() == "vault-key-999"
    assert cfg.max_orders_per_minute == 7


@pytest.mark.integration
def test_vault_approle_and_env_wins(openbao: OpenBao) -> None:
    openbao.put("oms", {"database_url": "postgresql://vault/db", "broker_api_key": "vault-key"})
    role_id, secret_id = openbao.approle("oms-config", openbao.read_policy("oms"))
    environ = {"VAULT_ADDR": openbao.addr, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id,
               "MTS_OMS_BROKER_API_KEY": "env-key-wins"}
    tokens_before = _token_count(openbao)
    cfg = load_config("oms", OmsConfig, env_file=None, environ=environ)
    assert cfg.database_url.get_secret_value() == "postgresql://vault/db"
    assert cfg.broker_api_key.get_secret_value() == "env-key-wins"
    # The token the AppRole login made was revoked once read: load_config leaves none behind.
    assert _token_count(openbao) == tokens_before


def _token_count(openbao: OpenBao) -> int:
    return len(openbao.admin.auth.token.list_accessors()["data"]["keys"])


@pytest.mark.integration
def test_vault_precedence_with_a_token_file(openbao: OpenBao, tmp_path: Path) -> None:
    """Vault < .env < environment < overrides, the token read from MTS_VAULT_TOKEN_FILE."""

    class Layered(BaseModel):
        a: str
        b: str
        c: str
        d: SecretStr

    openbao.put("layered", {"a": "vault", "b": "vault", "c": "vault", "d": "vault"})
    token_file = tmp_path / "vault-token"
    token_file.write_text(openbao.token(openbao.read_policy("layered")) + "\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text("MTS_LAYERED_B=dotenv\nMTS_LAYERED_C=dotenv\nMTS_LAYERED_D=dotenv\n")
    environ = {"VAULT_ADDR": openbao.addr, "MTS_VAULT_TOKEN_FILE": str(token_file),
               "MTS_LAYERED_C": "env", "MTS_LAYERED_D": "env"}
    cfg = load_config("layered", Layered, env_file=dotenv, environ=environ,
                      overrides={"d": "override"})
    assert (cfg.a, cfg.b, cfg.c, cfg.d.get_secret_value()) == ("vault", "dotenv", "env",
                                                               "override")


@pytest.mark.integration
def test_vault_missing_path_and_refusals(openbao: OpenBao) -> None:
    """Nothing stored for the service is no error (also in production) and a missing key says
    so; a rejected token or AppRole login fails in production and falls back elsewhere."""
    token = openbao.token(openbao.read_policy("nothing-here"))
    environ = {"MTS_NOTHING_HERE_DATABASE_URL": "x", "MTS_NOTHING_HERE_BROKER_API_KEY": "y"}
    prod = {**environ, "MTS_ENV": "production"}
    settings = VaultSettings(addr=openbao.addr, token=token)
    cfg = load_config("nothing-here", OmsConfig, env_file=None, environ=prod, vault=settings)
    assert cfg.max_orders_per_minute == 600
    with pytest.raises(ConfigError) as info:
        load_config("nothing-here", OmsConfig, env_file=None, environ={"MTS_ENV": "production"},
                    vault=settings)
    assert (f"Vault {openbao.addr} secret/mts1b/nothing-here (nothing stored at this path)"
            in str(info.value))

    with pytest.raises(ConfigError, match="rejected the token from VAULT_TOKEN") as info:
        load_config("oms", OmsConfig, env_file=None, environ=prod,
                    vault=VaultSettings(addr=openbao.addr, token="s.not-a-real-token"))
    assert info.value.context == {"vault": openbao.addr, "reason": "token_rejected"}
    with pytest.raises(ConfigError, match="refused the AppRole login") as info:
        load_config("oms", OmsConfig, env_file=None, environ=prod,
                    vault=VaultSettings(addr=openbao.addr, role_id="nope", secret_id="nope-nope"))
    assert info.value.context["reason"] == "login_failed"
    # Not production: the refusal is logged and the other sources are used.
    cfg = load_config("oms", OmsConfig, env_file=None,
                      environ={"MTS_OMS_DATABASE_URL": "x", "MTS_OMS_BROKER_API_KEY": "y"},
                      vault=VaultSettings(addr=openbao.addr, token="s.not-a-real-token"))
    assert cfg.broker_api_key.get_secret_value() == "y"
    # ... and a key then missing says why Vault did not supply it.
    with pytest.raises(ConfigError) as info:
        load_config("oms", OmsConfig, env_file=None, environ={"MTS_OMS_DATABASE_URL": "x"},
                    vault=VaultSettings(addr=openbao.addr, token="s.not-a-real-token"))
    assert f"Vault {openbao.addr} secret/mts1b/oms (not used: token_rejected)" in str(info.value)


def test_vault_unreachable_in_production_fails_fast() -> None:
    pytest.importorskip("hvac", reason="hvac (the vault extra of mts1b-platform) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    environ = {"MTS_ENV": "production", "VAULT_ADDR": dead, "VAULT_TOKEN": "tok-1234"}
    with pytest.raises(ConfigError, match=f"Vault at {dead} is unreachable") as info:
        load_config("oms", OmsConfig, env_file=None, environ=environ)
    assert info.value.context["reason"] == "unreachable"


@pytest.mark.parametrize("problem", ["missing", "empty", "directory", "not text"])
def test_vault_token_file_problems_name_variable_and_path(problem: str, tmp_path: Path) -> None:
    path = tmp_path / "token"
    if problem == "empty":
        path.write_text("\n")
    elif problem == "directory":
        path.mkdir()
    elif problem == "not text":
        path.write_bytes(b"\xff\xfe s3cr3t-t0ken-value")
    environ = {"VAULT_ADDR": "http://127.0.0.1:1", "MTS_VAULT_TOKEN_FILE": str(path)}
    with pytest.raises(ConfigError) as info:
        VaultSettings.from_env(environ)
    message = str(info.value)
    assert f"MTS_VAULT_TOKEN_FILE={path}" in message
    assert {"missing": "does not exist", "empty": "is empty", "directory": "cannot be read",
            "not text": "cannot be read"}[problem] in message
    assert "s3cr3t" not in message and "s3cr3t" not in repr(info.value.context)
    # load_config: fatal in production, a warning and the other sources elsewhere.
    with pytest.raises(ConfigError, match="MTS_VAULT_TOKEN_FILE="):
        load_config("oms", OmsConfig, env_file=None, environ={**environ, "MTS_ENV": "prod"})
    cfg = load_config("oms", OmsConfig, env_file=None,
                      environ={**environ, "MTS_OMS_DATABASE_URL": "x",
                               "MTS_OMS_BROKER_API_KEY": "y"})
    assert cfg.database_url.get_secret_value() == "x"
    with pytest.raises(ConfigError) as info:
        load_config("oms", OmsConfig, env_file=None, environ=environ)
    assert "Vault http://127.0.0.1:1 (not used: token_file)" in str(info.value)


def test_vault_token_wins_over_token_file_and_settings_hide_credentials(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("file-token-5678")
    settings = VaultSettings.from_env({"VAULT_ADDR": "http://127.0.0.1:1",
                                       "VAULT_TOKEN": "env-token-1234",
                                       "MTS_VAULT_TOKEN_FILE": str(path),
                                       "VAULT_ROLE_ID": "role-id-1234",
                                       "VAULT_SECRET_ID": "secret-id-1234"})
    assert settings is not None
    assert (settings.token, settings.token_file) == ("env-token-1234", None)
    for secret in ("env-token-1234", "role-id-1234", "secret-id-1234"):
        assert secret not in repr(settings)
