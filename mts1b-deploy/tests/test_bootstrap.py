"""vault bootstrap against a real OpenBao server in server mode: init, unseal, policies, AppRoles,
secrets, deliveries, the root token revoked; a rerun changes nothing; a restart is unsealed."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
from mts1b_deploy import (
    BootstrapOptions,
    VaultBootstrapError,
    bootstrap,
    login_with_delivery,
    unwrap_delivery,
)
from mts1b_deploy.bootstrap import APPROLE_SERVICES
from mts1b_platform.config import ConfigError, VaultSettings, read_vault_secrets
from mts1b_platform.signing import KeyRegistry, SigningKey

BaoServer = Any  # conftest's fixture type; conftest modules are not importable

pytestmark = pytest.mark.integration


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def spy_root(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The root token of each init, seen by the test only (the real call goes through)."""
    seen: list[str] = []
    original = hvac.api.system_backend.Init.initialize

    def initialize(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        seen.append(result["root_token"])
        return result

    monkeypatch.setattr(hvac.api.system_backend.Init, "initialize", initialize)
    return seen


def test_first_run_then_rerun_then_restart(bao: BaoServer, tmp_path: Path,
                                           spy_root: list[str]) -> None:
    out = tmp_path / "vault-out"
    options = BootstrapOptions(addr=bao.addr, out_dir=out, shares=3, threshold=2)
    first = bootstrap(options)
    assert any(c.startswith("initialised: 3 key shares, threshold 2") for c in first.changed)
    assert "root token revoked" in first.changed
    assert _mode(out) == 0o700 and _mode(out / "unseal") == 0o700
    shares = sorted((out / "unseal").iterdir())
    assert [p.name for p in shares] == ["share-1", "share-2", "share-3"]
    assert all(_mode(p) == 0o600 for p in [*shares, out / "deploy-token",
                                          *(out / "delivery").iterdir()])
    assert sorted(p.stem for p in (out / "delivery").iterdir()) == sorted(APPROLE_SERVICES)

    # the root token is gone; the deploy token is not root
    (root,) = spy_root
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=bao.addr, token=root).auth.token.lookup_self()
    deploy = hvac.Client(url=bao.addr, token=(out / "deploy-token").read_text().strip())
    assert deploy.auth.token.lookup_self()["data"]["policies"] == ["default", "mts1b-deploy"]

    # KV v2 requires check-and-set: a blind write is refused
    with pytest.raises(hvac.exceptions.InvalidRequest):
        deploy.secrets.kv.v2.create_or_update_secret("mts1b/oms", secret={"x": "y"},
                                                     mount_point="secret")

    # a service unwraps its delivery once, logs in once, reads its own path only
    role_id, secret_id = unwrap_delivery(out / "delivery" / "oms.json")
    oms_role = role_id
    with pytest.raises(VaultBootstrapError, match="was already unwrapped or has expired"):
        unwrap_delivery(out / "delivery" / "oms.json")
    settings = VaultSettings(addr=bao.addr, role_id=role_id, secret_id=secret_id)
    oms = read_vault_secrets("oms", settings)
    assert oms["nats_user"] == "mts1b-oms" and len(oms["nats_password"]) >= 40
    with pytest.raises(ConfigError):  # the secret id was single-use
        read_vault_secrets("oms", settings)
    role_id, secret_id = unwrap_delivery(out / "delivery" / "treasury.json")
    with pytest.raises(ConfigError):  # the treasury's AppRole cannot read the OMS's path
        read_vault_secrets("oms", VaultSettings(addr=bao.addr, role_id=role_id,
                                                secret_id=secret_id))

    # the signing key stored for the OMS is the one registered in keys.json
    key_file = tmp_path / "oms.key"
    key_file.write_text(oms["signing_key_file"])
    key_file.chmod(0o600)
    key = SigningKey.load(key_file)
    registered = KeyRegistry.load(out / "keys.json").get("svc-oms")
    assert registered is not None and registered.public_key == key.public_key
    assert [r.value for r in registered.roles] == ["operations"]
    role_id, secret_id = unwrap_delivery(out / "delivery" / "nats.json")
    users = read_vault_secrets("nats", VaultSettings(addr=bao.addr, role_id=role_id,
                                                     secret_id=secret_id))["users"]
    assert users["mts1b-oms"] == oms["nats_password"]
    assert sorted(users) == [f"mts1b-{s}" for s in
                             sorted(["oms", "brokers", "research", "treasury", "operations"])]

    # a rerun changes nothing and says so; new wrapped secret ids are issued
    before = deploy.secrets.kv.v2.read_secret_version("mts1b/oms", mount_point="secret",
                                                    raise_on_deleted_version=True)
    second = bootstrap(options)
    assert second.changed == []
    assert "unsealed" in second.unchanged and "policy mts1b-oms" in second.unchanged
    assert any("nothing changed on the server" in line for line in second.lines())
    after = deploy.secrets.kv.v2.read_secret_version("mts1b/oms", mount_point="secret",
                                                    raise_on_deleted_version=True)
    assert after["data"]["metadata"]["version"] == before["data"]["metadata"]["version"] == 1
    assert json.loads((out / "delivery" / "oms.json").read_text())["role_id"] == oms_role

    # a restarted server is sealed; the rerun unseals it with the share files
    bao.restart()
    assert bao.health()["sealed"] is True
    third = bootstrap(options)
    assert third.changed == ["unsealed with 2 key shares"]
    role_id, secret_id = unwrap_delivery(out / "delivery" / "oms.json")
    assert read_vault_secrets("oms", VaultSettings(addr=bao.addr, role_id=role_id,
                                                   secret_id=secret_id)) == oms

    # a container turns its delivery into a token file the service reads at every start
    token_file = tmp_path / "var" / "mts1b-treasury" / "vault-token"
    accessor = login_with_delivery(out / "delivery" / "treasury.json", token_file)
    assert _mode(token_file) == 0o600 and not (out / "delivery" / "treasury.json").exists()
    settings = VaultSettings.from_env({"VAULT_ADDR": bao.addr,
                                       "MTS_VAULT_TOKEN_FILE": str(token_file)})
    assert settings is not None
    treasury = read_vault_secrets("treasury", settings)
    assert treasury["nats_user"] == "mts1b-treasury"
    assert read_vault_secrets("treasury", settings) == treasury  # a restart: the same token
    token = hvac.Client(url=bao.addr, token=token_file.read_text().strip())
    info = token.auth.token.lookup_self()["data"]
    assert info["policies"] == ["default", "mts1b-treasury"] and info["period"] == 3600
    assert info["accessor"] == accessor
    with pytest.raises(VaultBootstrapError, match="cannot read the delivery file"):
        login_with_delivery(out / "delivery" / "treasury.json", token_file)


def test_rerun_without_a_token_and_bad_options(bao: BaoServer, tmp_path: Path) -> None:
    options = BootstrapOptions(addr=bao.addr, out_dir=tmp_path / "a", shares=1, threshold=1)
    bootstrap(options)
    elsewhere = BootstrapOptions(addr=bao.addr, out_dir=tmp_path / "b", shares=1, threshold=1)
    with pytest.raises(VaultBootstrapError, match=r"deploy token file .* cannot be read"):
        bootstrap(elsewhere)
    wrong = tmp_path / "wrong-token"
    wrong.write_text("s.not-a-token-at-all\n")
    with pytest.raises(VaultBootstrapError, match="failed: permission denied"):
        bootstrap(BootstrapOptions(addr=bao.addr, out_dir=tmp_path / "b", token_file=wrong))
    with pytest.raises(VaultBootstrapError, match="need 1 <= threshold <= shares"):
        BootstrapOptions(addr=bao.addr, out_dir=tmp_path, shares=2, threshold=3)
    with pytest.raises(VaultBootstrapError, match="init failed: cannot reach the server"):
        bootstrap(BootstrapOptions(addr="http://127.0.0.1:9", out_dir=tmp_path / "c",
                                   timeout=2))
