"""``vault bootstrap``: a new Vault or OpenBao made ready for the services, and a rerun that
changes only what is missing.

The steps, each skipped when already done (so a rerun is safe and says what it changed):

1. **init** (a new server only): ``shares`` unseal key shares with threshold ``threshold``,
   each written to its own mode-0600 file ``unseal/share-<n>`` in a mode-0700 folder, one per
   operator - or, with ``pgp_keys`` (one per share), each encrypted by the server to its
   operator's OpenPGP key (``unseal/share-<n>.pgp``), so that no share is ever readable here;
   the root token stays in memory.
2. **unseal** with the share files when the server is sealed; with shares encrypted to the
   operators, wait (``unseal_wait``) while they unseal it with their decrypted shares.
3. **KV v2** at ``secret/`` with ``cas_required`` (every write says which version it
   replaces, so two writers cannot silently overwrite each other) and ``max_versions``.
4. **policies**: ``mts1b-<service>`` reads ``secret/mts1b/<service>`` only; ``mts1b-deploy``
   may do what a rerun needs (:mod:`mts1b_deploy.vaultpolicy`).
5. **AppRole** per service (``mts1b-<service>``): single-use secret ids (``secret_id_num_uses
   = 1``, ``secret_id_ttl``), periodic tokens the platform's
   :class:`~mts1b_platform.vault.VaultSession` keeps renewed.
6. **secrets**: each bus service's NATS user and password and signing key, the NATS server's
   user list (:mod:`mts1b_deploy.servicesecrets`), written with check-and-set; a stored value is
   never replaced. The public key registry goes to ``keys.json`` (public).
7. **delivery**: per service a file ``delivery/<service>.json`` (mode 0600) with the role id and
   a *response-wrapped* secret id (``wrap_ttl``): the container unwraps it once; a wrapping
   token that was used or seen by someone else fails to unwrap, which the service notices.
8. **tokens**: a first run makes a ``mts1b-deploy`` token (periodic, file ``deploy-token``,
   mode 0600) for reruns, then **revokes the root token**. A rerun uses that token (or one given
   with ``token_file``) and renews it.

No secret is ever printed, logged or put in an exception: every value made or read is
registered with :func:`mts1b_platform.redaction.register_secret` at once, errors name the step
and the path only, and hvac's own exception text (which can echo a request) is not passed on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
from mts1b_platform.redaction import register_secret, register_secrets

from mts1b_deploy.errors import VaultBootstrapError
from mts1b_deploy.files import private_dir, write_atomic, write_secret_file
from mts1b_deploy.inventory import SERVICES
from mts1b_deploy.pgpkeys import pgp_key_base64
from mts1b_deploy.servicesecrets import (
    BUS_SERVICES,
    nats_users,
    new_service_secrets,
    registry_of,
)
from mts1b_deploy.vaultpolicy import (
    DEPLOY_POLICY,
    KV_MOUNT,
    deploy_policy,
    service_policy,
    service_policy_name,
    service_role_name,
)
from mts1b_deploy.vaultstep import vault_step

__all__ = ["APPROLE_SERVICES", "BootstrapOptions", "BootstrapReport", "bootstrap"]

APPROLE_SERVICES: tuple[str, ...] = tuple(s for s in SERVICES if s != "vault")
"""Every service but Vault itself logs in to Vault with its AppRole."""

SHARE_DIR = "unseal"
DELIVERY_DIR = "delivery"
DEPLOY_TOKEN_FILE = "deploy-token"  # noqa: S105 - a file name
KEYS_FILE = "keys.json"


@dataclass(frozen=True)
class BootstrapOptions:
    """How to reach the server and what to make (defaults from the deploy research notes)."""

    addr: str
    out_dir: Path
    shares: int = 5
    threshold: int = 3
    token_file: Path | None = None
    pgp_keys: tuple[Path, ...] = ()
    unseal_wait: float = 600.0
    verify: bool | str = True
    timeout: float = 30.0
    max_versions: int = 20
    secret_id_ttl: str = "10m"  # noqa: S105 - a duration
    wrap_ttl: str = "60s"
    token_period: str = "1h"  # noqa: S105 - a duration
    deploy_token_period: str = "720h"  # noqa: S105 - a duration
    services: tuple[str, ...] = APPROLE_SERVICES

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= self.shares <= 10:
            raise VaultBootstrapError(
                f"shares={self.shares} threshold={self.threshold}: need 1 <= threshold <= "
                "shares <= 10", field="threshold", value=self.threshold)
        if self.pgp_keys and len(self.pgp_keys) != self.shares:
            raise VaultBootstrapError(f"pgp_keys: {len(self.pgp_keys)} key(s) for "
                                      f"{self.shares} shares: give one per share",
                                      field="pgp_keys", value=len(self.pgp_keys))
        unknown = sorted(set(self.services) - set(APPROLE_SERVICES))
        if unknown:
            raise VaultBootstrapError(f"services: {unknown[0]!r} is not a service with an "
                                      f"AppRole ({list(APPROLE_SERVICES)})", field="services",
                                      value=unknown[0])


@dataclass
class BootstrapReport:
    """What the run did. It holds no secret: only what changed, and file paths."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"changed: {c}" for c in self.changed]
        out += [f"unchanged: {u}" for u in self.unchanged]
        out += [f"issued: {i}" for i in self.issued]
        out += [f"wrote: {f}" for f in self.files]
        if not self.changed:
            out.append("nothing changed on the server: it was already bootstrapped "
                       "(new wrapped secret ids were issued)")
        return out


# -- the run --------------------------------------------------------------------------------


def bootstrap(options: BootstrapOptions, log: Callable[[str], None] = lambda _: None
              ) -> BootstrapReport:
    """Run the steps of the module docstring; ``log`` receives one line per step (no
    secret)."""
    out = private_dir(options.out_dir)
    report = BootstrapReport()
    client = hvac.Client(url=options.addr, verify=options.verify, timeout=options.timeout)
    try:
        with vault_step("init", addr=options.addr):
            initialized = bool(client.sys.is_initialized())
        root: str | None = None
        if not initialized:
            root = _init(client, options, out, report)
        _unseal(client, options, out, report, log)
        if root is None:
            client.token = _rerun_token(options, out)
            with vault_step("renew the deploy token"):
                client.auth.token.renew_self()
        else:
            client.token = root
        _kv(client, options, report)
        _policies(client, options, report)
        _approles(client, options, report)
        stored = _secrets(client, options, report)
        keys = out / KEYS_FILE
        write_atomic(keys, registry_of(stored).to_json())
        report.files.append(str(keys))
        _deliveries(client, options, out, report)
        if root is not None:
            _deploy_token(client, options, out, report)
            with vault_step("revoke the root token"):
                client.auth.token.revoke_self()
            report.changed.append("root token revoked")
    finally:
        client.adapter.close()
    for line in report.lines():
        log(line)
    return report


def _init(client: Any, options: BootstrapOptions, out: Path, report: BootstrapReport) -> str:
    pgp = [pgp_key_base64(p) for p in options.pgp_keys] or None
    with vault_step("init"):
        result = client.sys.initialize(secret_shares=options.shares,
                                       secret_threshold=options.threshold, pgp_keys=pgp)
    root = str(result["root_token"])
    shares = [str(k) for k in result["keys_base64"]]
    register_secrets([root, *shares, *(str(k) for k in result["keys"])])
    folder = private_dir(out / SHARE_DIR)
    for i, share in enumerate(shares, start=1):
        # encrypted: base64 of the OpenPGP message, as `bao operator init -pgp-keys` prints it
        path = folder / (f"share-{i}.pgp" if pgp else f"share-{i}")
        write_secret_file(path, share + "\n")
        report.files.append(str(path))
    names = ", ".join(p.name for p in options.pgp_keys)
    how = f"each encrypted to its operator's PGP key ({names})" if pgp else "each in plain text"
    report.changed.append(f"initialised: {options.shares} key shares, threshold "
                          f"{options.threshold}, {how}, one mode-0600 file each in {folder}")
    return root


def _read_shares(out: Path) -> list[str]:
    """The decrypted key shares found in ``OUT/unseal`` (``share-<n>``; not the ``.pgp``)."""
    shares = []
    for path in sorted((out / SHARE_DIR).glob("share-*")):
        if path.suffix == ".pgp":
            continue
        text = path.read_text(encoding="utf-8").strip()
        register_secret(text)
        shares.append(text)
    return shares


def _unseal(client: Any, options: BootstrapOptions, out: Path, report: BootstrapReport,
            log: Callable[[str], None]) -> None:
    """Unseal with the share files; with shares encrypted to the operators (none decrypted
    here), wait up to ``unseal_wait`` seconds for them to unseal it (``bao operator unseal``)
    while this run keeps what it holds - on a first run, the root token - in memory."""
    with vault_step("unseal"):
        sealed = bool(client.sys.is_sealed())
    if not sealed:
        report.unchanged.append("unsealed")
        return
    folder = out / SHARE_DIR
    with vault_step("unseal"):
        threshold = int(client.sys.read_seal_status()["t"])
        shares = _read_shares(out)
        encrypted = sorted(folder.glob("share-*.pgp"))
        if len(shares) >= threshold:
            status: dict[str, Any] = {}
            for share in shares[:threshold]:
                status = client.sys.submit_unseal_key(share)
            if status.get("sealed"):
                raise VaultBootstrapError("unseal: the key shares did not unseal the server "
                                          "(shares of another server?)", step="unseal")
            _wait_active(client)
            report.changed.append(f"unsealed with {threshold} key shares")
            return
        if not encrypted or options.unseal_wait <= 0:
            hint = ("; the shares are encrypted to the operators' PGP keys: each operator "
                    "decrypts theirs (base64 -d < share-N.pgp | gpg -d) and unseals with `bao "
                    "operator unseal`" if encrypted else "")
            raise VaultBootstrapError(f"unseal: the server is sealed and {folder} holds "
                                      f"{len(shares)} decrypted key share file(s); {threshold} "
                                      f"are needed{hint}", step="unseal", path=str(folder))
        log(f"sealed: waiting up to {options.unseal_wait:.0f} s for the operators to unseal "
            f"it ({threshold} of the shares in {folder}/share-N.pgp, each decrypted with "
            "base64 -d | gpg -d, then bao operator unseal)")
        deadline = time.monotonic() + options.unseal_wait
        while client.sys.is_sealed():
            if time.monotonic() >= deadline:
                raise VaultBootstrapError(
                    f"unseal: the operators did not unseal the server within "
                    f"{options.unseal_wait:.0f} s; run vault bootstrap again once it is "
                    "unsealed", step="unseal", reason="still_sealed")
            time.sleep(0.2)
        _wait_active(client)
    report.changed.append("unsealed by the operators")


def _wait_active(client: Any, timeout: float = 30.0) -> None:
    """An unsealed node with integrated storage becomes active a moment later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = client.sys.read_health_status(method="GET")
        if not isinstance(health, dict):
            health = health.json()
        if not health.get("sealed") and not health.get("standby"):
            return
        time.sleep(0.1)
    raise VaultBootstrapError(f"unseal: the server did not become active within {timeout:.0f}s",
                              step="unseal")


def _rerun_token(options: BootstrapOptions, out: Path) -> str:
    path = options.token_file or out / DEPLOY_TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise VaultBootstrapError(
            f"the server is already initialised and the deploy token file {path} cannot be "
            f"read ({type(exc).__name__}): give a token holding the {DEPLOY_POLICY} policy "
            "with --token-file", step="login", path=str(path)) from None
    register_secret(token)
    return token


def _kv(client: Any, options: BootstrapOptions, report: BootstrapReport) -> None:
    with vault_step("KV v2", path=f"{KV_MOUNT}/"):
        mounts = client.sys.list_mounted_secrets_engines()
        mounts = mounts.get("data", mounts)
        mount = mounts.get(f"{KV_MOUNT}/")
        if mount is None:
            client.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
            report.changed.append(f"KV v2 mounted at {KV_MOUNT}/")
        elif mount.get("type") != "kv" or str((mount.get("options") or {}).get("version")) != "2":
            raise VaultBootstrapError(f"KV v2: {KV_MOUNT}/ is mounted but is not KV version 2 "
                                      f"(type {mount.get('type')})", step="KV v2",
                                      path=f"{KV_MOUNT}/")
        else:
            report.unchanged.append(f"KV v2 at {KV_MOUNT}/")
        config = _kv_config(client)
        wanted = {"cas_required": True, "max_versions": options.max_versions}
        if config is None or any(config.get(k) != v for k, v in wanted.items()):
            _retry(lambda: client.secrets.kv.v2.configure(
                mount_point=KV_MOUNT, cas_required=True, max_versions=options.max_versions))
            report.changed.append(f"KV v2 config: cas_required, max_versions "
                                  f"{options.max_versions}")
        else:
            report.unchanged.append("KV v2 config")


def _kv_config(client: Any) -> dict[str, Any] | None:
    try:
        return dict(_retry(lambda: client.secrets.kv.v2.read_configuration(
            mount_point=KV_MOUNT))["data"])
    except hvac.exceptions.InvalidPath:
        return None


def _retry(call: Callable[[], Any], timeout: float = 15.0) -> Any:
    """A KV v2 mount upgrades itself for a moment after it is mounted and answers 'upgrading'
    (or 'no handler') until then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.UnsupportedOperation,
                hvac.exceptions.InternalServerError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _policies(client: Any, options: BootstrapOptions, report: BootstrapReport) -> None:
    wanted = {service_policy_name(s): service_policy(s) for s in options.services}
    wanted[DEPLOY_POLICY] = deploy_policy()
    for name, text in wanted.items():
        with vault_step("policy", policy=name):
            try:
                current = client.sys.read_acl_policy(name)["data"]["policy"]
            except hvac.exceptions.InvalidPath:
                current = None
            if current == text:
                report.unchanged.append(f"policy {name}")
                continue
            client.sys.create_or_update_acl_policy(name, text)
        report.changed.append(f"policy {name}")


def _approles(client: Any, options: BootstrapOptions, report: BootstrapReport) -> None:
    with vault_step("AppRole auth", path="auth/approle"):
        methods = client.sys.list_auth_methods()
        methods = methods.get("data", methods)
        if "approle/" not in methods:
            client.sys.enable_auth_method("approle")
            report.changed.append("AppRole auth enabled at approle/")
        else:
            report.unchanged.append("AppRole auth")
    for service in options.services:
        role = service_role_name(service)
        wanted = {"token_policies": [service_policy_name(service)], "bind_secret_id": True,
                  "secret_id_num_uses": 1, "secret_id_ttl": _seconds(options.secret_id_ttl),
                  "token_period": _seconds(options.token_period), "token_ttl": 0,
                  "token_max_ttl": 0}
        with vault_step("AppRole", role=role):
            try:
                current = client.auth.approle.read_role(role)["data"]
            except hvac.exceptions.InvalidPath:
                current = None
            if current is not None and all(current.get(k) == v for k, v in wanted.items()):
                report.unchanged.append(f"AppRole {role}")
                continue
            client.auth.approle.create_or_update_approle(
                role, token_policies=wanted["token_policies"], bind_secret_id=True,
                secret_id_num_uses=1, secret_id_ttl=options.secret_id_ttl,
                token_period=options.token_period, token_ttl=0, token_max_ttl=0)
        report.changed.append(f"AppRole {role}")


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return int(duration[:-1]) * units[duration[-1]]
    except (KeyError, ValueError, IndexError):
        raise VaultBootstrapError(f"{duration!r} is not a duration like 60s, 10m or 1h",
                                  field="duration", value=duration) from None


def _read_kv(client: Any, path: str) -> tuple[dict[str, Any] | None, int]:
    """``(data, version)`` at ``secret/<path>``, or ``(None, 0)`` when nothing is there."""
    try:
        answer = client.secrets.kv.v2.read_secret_version(
            path, mount_point=KV_MOUNT, raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        return None, 0
    data = dict(answer["data"]["data"] or {})
    _register_values(data)
    return data, int(answer["data"]["metadata"]["version"])


def _register_values(value: Any) -> None:
    if isinstance(value, str):
        register_secret(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _register_values(item)


def _write_kv(client: Any, path: str, wanted: dict[str, Any], report: BootstrapReport) -> None:
    """Check-and-set: create (cas 0) or add the missing keys (cas = the version read)."""
    current, version = _read_kv(client, path)
    merged = {**wanted, **(current or {})}
    if current is not None and merged == current:
        report.unchanged.append(f"{KV_MOUNT}/{path}")
        return
    client.secrets.kv.v2.create_or_update_secret(path, secret=merged, cas=version,
                                                 mount_point=KV_MOUNT)
    report.changed.append(f"{KV_MOUNT}/{path} ({'created' if current is None else 'completed'}"
                          f", version {version + 1})")


def _secrets(client: Any, options: BootstrapOptions, report: BootstrapReport
             ) -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    for service in BUS_SERVICES:
        path = f"mts1b/{service}"
        with vault_step("service secrets", path=f"{KV_MOUNT}/{path}"):
            current, _ = _read_kv(client, path)
            wanted = new_service_secrets(service) if current is None or any(
                k not in current for k in ("nats_user", "nats_password", "signing_key_file")
            ) else {}
            _write_kv(client, path, wanted, report)
            stored[service], _ = _read_kv(client, path)  # type: ignore[assignment]
    with vault_step("NATS users", path=f"{KV_MOUNT}/mts1b/nats"):
        current, version = _read_kv(client, "mts1b/nats")
        users = nats_users(stored)
        if current is not None and current.get("users") == users:
            report.unchanged.append(f"{KV_MOUNT}/mts1b/nats")
        else:
            client.secrets.kv.v2.create_or_update_secret(
                "mts1b/nats", secret={**(current or {}), "users": users}, cas=version,
                mount_point=KV_MOUNT)
            report.changed.append(f"{KV_MOUNT}/mts1b/nats (users of {len(users)} services)")
    return stored


def _deliveries(client: Any, options: BootstrapOptions, out: Path, report: BootstrapReport
                ) -> None:
    folder = private_dir(out / DELIVERY_DIR)
    for service in options.services:
        role = service_role_name(service)
        with vault_step("secret id", role=role):
            role_id = str(client.auth.approle.read_role_id(role)["data"]["role_id"])
            wrapped = client.auth.approle.generate_secret_id(role, wrap_ttl=options.wrap_ttl)
            token = str(wrapped["wrap_info"]["token"])
        register_secret(token)
        path = folder / f"{service}.json"
        write_secret_file(path, json.dumps({
            "vault_addr": options.addr, "role_id": role_id, "wrapped_secret_id": token,
            "wrap_ttl": options.wrap_ttl, "path": f"{KV_MOUNT}/mts1b/{service}"}) + "\n")
        report.files.append(str(path))
    report.issued.append(f"wrapped single-use secret ids for {len(options.services)} "
                         f"services (unwrap within {options.wrap_ttl})")


def _deploy_token(client: Any, options: BootstrapOptions, out: Path, report: BootstrapReport
                  ) -> None:
    with vault_step("deploy token"):
        answer = client.auth.token.create(policies=[DEPLOY_POLICY], no_parent=True,
                                          period=options.deploy_token_period,
                                          display_name="mts1b-deploy", renewable=True)
    token = str(answer["auth"]["client_token"])
    register_secret(token)
    path = out / DEPLOY_TOKEN_FILE
    write_secret_file(path, token + "\n")
    report.files.append(str(path))
    report.changed.append(f"deploy token (policy {DEPLOY_POLICY}, periodic "
                          f"{options.deploy_token_period}) for reruns")
