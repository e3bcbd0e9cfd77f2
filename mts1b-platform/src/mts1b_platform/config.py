"""Typed service configuration from overrides, environment, a ``.env`` file and HashiCorp Vault.

``load_config(service, schema)`` merges four sources, highest first:

1. ``overrides`` passed by the caller (tests, CLI flags);
2. environment variables ``MTS_<SERVICE>_<KEY>`` (``service`` upper-cased, non-alphanumerics
   turned into ``_``; ``KEY`` is the field name upper-cased);
3. a ``.env`` file holding the same names - refused outright when ``MTS_ENV=production``;
4. Vault KV v2 at ``<mount>/mts1b/<service>`` (mount ``secret`` by default) through hvac, when
   ``VAULT_ADDR`` is set; keys are the field names.

and validates the result into ``schema`` (any pydantic model class). Every missing or invalid key
is reported in one :class:`ConfigError` that says where each was looked for; values of secret
fields are never echoed. Every ``SecretStr`` / ``SecretBytes`` in the result is registered with
:mod:`mts1b_platform.redaction`, so it cannot reach a log line.

Vault settings come from the usual variables: ``VAULT_ADDR``, ``VAULT_TOKEN`` (token auth) or
``VAULT_ROLE_ID`` + ``VAULT_SECRET_ID`` (AppRole, mount ``VAULT_APPROLE_MOUNT``, default
``approle``), ``VAULT_NAMESPACE``, ``VAULT_CACERT`` / ``VAULT_SKIP_VERIFY`` /
``VAULT_CLIENT_CERT`` + ``VAULT_CLIENT_KEY`` for TLS, ``MTS_VAULT_MOUNT`` (default ``secret``)
and ``MTS_VAULT_TIMEOUT`` (seconds, default 5). In production an unreachable or refusing Vault
fails fast with the address and path; elsewhere it is logged and the other sources are used.
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mts1b_foundation import MtsError
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from mts1b_platform.logging import get_logger
from mts1b_platform.redaction import register_secret

__all__ = [
    "ConfigError",
    "VaultSettings",
    "env_name",
    "is_production",
    "load_config",
    "read_vault_secrets",
]

S = TypeVar("S", bound=BaseModel)

_log = get_logger(__name__)


class ConfigError(MtsError, ValueError):
    """Configuration is missing, invalid, or a source refused to answer.

    ``context["errors"]`` lists ``{key, problem, looked_in}`` for every offending key.
    """

    code: ClassVar[str] = "PLATFORM.CONFIG"


def is_production(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``MTS_ENV`` says this process runs in production."""
    env = os.environ if environ is None else environ
    return env.get("MTS_ENV", "").strip().lower() in ("production", "prod")


def env_name(service: str, key: str) -> str:
    """The environment variable for ``key`` of ``service``: ``MTS_<SERVICE>_<KEY>``."""
    svc = re.sub(r"[^A-Za-z0-9]+", "_", service).strip("_").upper()
    return f"MTS_{svc}_{key.upper()}"


@dataclass(frozen=True)
class VaultSettings:
    """How to reach Vault. :meth:`from_env` reads the standard ``VAULT_*`` variables."""

    addr: str
    token: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    approle_mount: str = "approle"
    mount: str = "secret"
    namespace: str | None = None
    verify: bool | str = True
    client_cert: tuple[str, str] | None = None
    timeout: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VaultSettings | None:
        """Settings from ``VAULT_*`` variables, or None when ``VAULT_ADDR`` is unset."""
        env = os.environ if environ is None else environ
        addr = env.get("VAULT_ADDR", "").strip()
        if not addr:
            return None
        verify: bool | str = True
        if env.get("VAULT_CACERT"):
            verify = env["VAULT_CACERT"]
        if env.get("VAULT_SKIP_VERIFY", "").lower() in ("1", "true", "yes"):
            verify = False
        cert = None
        if env.get("VAULT_CLIENT_CERT") and env.get("VAULT_CLIENT_KEY"):
            cert = (env["VAULT_CLIENT_CERT"], env["VAULT_CLIENT_KEY"])
        return cls(
            addr=addr,
            token=env.get("VAULT_TOKEN") or None,
            role_id=env.get("VAULT_ROLE_ID") or None,
            secret_id=env.get("VAULT_SECRET_ID") or None,
            approle_mount=env.get("VAULT_APPROLE_MOUNT", "approle"),
            mount=env.get("MTS_VAULT_MOUNT", "secret"),
            namespace=env.get("VAULT_NAMESPACE") or None,
            verify=verify,
            client_cert=cert,
            timeout=float(env.get("MTS_VAULT_TIMEOUT", "5")),
        )

    def path_for(self, service: str) -> str:
        return f"mts1b/{service}"

    def where(self, service: str) -> str:
        """Human-readable location, e.g. ``https://vault:8200 secret/mts1b/oms``."""
        return f"{self.addr} {self.mount}/{self.path_for(service)}"


def read_vault_secrets(service: str, vault: VaultSettings) -> dict[str, Any]:
    """The KV v2 data at ``<mount>/mts1b/<service>`` (empty when the path does not exist).

    Authenticates with AppRole when ``role_id``/``secret_id`` are set, else with the token.
    Raises :class:`ConfigError` naming the address and path on any other failure.
    """
    import hvac
    from hvac import exceptions as hvac_errors
    from requests import exceptions as http_errors

    where = vault.where(service)
    for value in (vault.token, vault.secret_id):
        register_secret(value)
    client = hvac.Client(url=vault.addr, token=vault.token, verify=vault.verify,
                         cert=vault.client_cert, timeout=vault.timeout,
                         namespace=vault.namespace)
    try:
        if vault.role_id and vault.secret_id:
            auth = client.auth.approle.login(role_id=vault.role_id, secret_id=vault.secret_id,
                                             mount_point=vault.approle_mount)
            register_secret(auth["auth"]["client_token"])
        elif not vault.token:
            raise ConfigError(f"Vault at {vault.addr} has no credentials: set VAULT_TOKEN or "
                              "VAULT_ROLE_ID and VAULT_SECRET_ID", vault=where)
        response = client.secrets.kv.v2.read_secret_version(
            path=vault.path_for(service), mount_point=vault.mount,
            raise_on_deleted_version=True)
    except hvac_errors.InvalidPath:
        return {}
    except hvac_errors.VaultError as exc:
        raise ConfigError(f"Vault refused the request for {where}: "
                          f"{type(exc).__name__}: {exc}", vault=where) from None
    except http_errors.RequestException as exc:
        raise ConfigError(f"Vault unreachable at {vault.addr} (reading {where}): "
                          f"{type(exc).__name__}", vault=where) from None
    data = response.get("data", {}).get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Vault returned no KV v2 data object for {where}", vault=where)
    return dict(data)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``; other annotations unchanged."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


def _is_secret(annotation: Any) -> bool:
    a = _unwrap(annotation)
    return isinstance(a, type) and issubclass(a, SecretStr | SecretBytes)


def _coerce(annotation: Any, raw: str) -> Any:
    """Text from the environment or .env: JSON for structured fields, the string otherwise."""
    a = _unwrap(annotation)
    structured = typing.get_origin(a) in (list, dict, tuple, set, frozenset) or (
        isinstance(a, type) and issubclass(a, BaseModel | list | dict | tuple | set))
    if structured and raw.strip()[:1] in ("[", "{"):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # validation reports it with the source
    return raw


def _read_env_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _iter_secrets(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, SecretBytes):
        yield value.get_secret_value().decode("utf-8", "replace")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _iter_secrets(getattr(value, name))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _iter_secrets(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _iter_secrets(v)


def load_config(
    service: str,
    schema: type[S],
    *,
    overrides: Mapping[str, Any] | None = None,
    env_file: str | os.PathLike[str] | None = ".env",
    environ: Mapping[str, str] | None = None,
    vault: VaultSettings | None = None,
) -> S:
    """Load and validate ``service``'s configuration into ``schema``.

    Sources, highest first: ``overrides``, ``MTS_<SERVICE>_<KEY>`` environment variables, the
    ``env_file`` (``None`` to skip; refused when ``MTS_ENV=production``), Vault KV v2 at
    ``secret/mts1b/<service>`` (``vault`` or :meth:`VaultSettings.from_env`). Raises
    :class:`ConfigError` listing every missing or invalid key and where it was looked for.

    >>> class OmsConfig(BaseModel):
    ...     database_url: SecretStr
    ...     max_orders_per_minute: int = 600
    >>> cfg = load_config("oms", OmsConfig)   # reads MTS_OMS_DATABASE_URL, ...
    """
    env = os.environ if environ is None else environ
    production = is_production(env)
    fields = schema.model_fields
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}

    vault_cfg = vault if vault is not None else VaultSettings.from_env(env)
    vault_where = None
    if vault_cfg is not None:
        vault_where = vault_cfg.where(service)
        try:
            secrets = read_vault_secrets(service, vault_cfg)
        except ConfigError as exc:
            if production:
                raise
            _log.warning("Vault not used: %s", exc.message, service=service)
            secrets = {}
        for key, value in secrets.items():
            if key in fields:
                values[key], origin[key] = value, f"Vault {vault_where} (key {key!r})"

    env_path: Path | None = Path(env_file) if env_file is not None else None
    if env_path is not None and env_path.is_file():
        if production:
            raise ConfigError(
                f"refusing to read {env_path.resolve()}: a .env file is not allowed when "
                "MTS_ENV=production (use environment variables or Vault)",
                env_file=str(env_path.resolve()))
        file_values = _read_env_file(env_path)
        for key, info in fields.items():
            name = env_name(service, key)
            if name in file_values:
                values[key] = _coerce(info.annotation, file_values[name])
                origin[key] = f".env file {env_path} ({name})"

    for key, info in fields.items():
        name = env_name(service, key)
        if name in env:
            values[key] = _coerce(info.annotation, env[name])
            origin[key] = f"environment variable {name}"

    for key, value in (overrides or {}).items():
        values[key], origin[key] = value, "overrides"

    try:
        result = schema.model_validate(values)
    except ValidationError as exc:
        raise _config_error(service, schema, exc, origin, env_path, vault_where) from None
    for secret in _iter_secrets(result):
        register_secret(secret)
    return result


def _config_error(service: str, schema: type[BaseModel], exc: ValidationError,
                  origin: Mapping[str, str], env_path: Path | None,
                  vault_where: str | None) -> ConfigError:
    fields = schema.model_fields
    problems: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        key = loc[0] if loc else "<root>"
        info = fields.get(key)
        if err.get("type") == "missing" and len(loc) == 1:
            places = ["overrides", f"environment variable {env_name(service, key)}"]
            if env_path is not None:
                places.append(f".env file {env_path}")
            places.append(f"Vault {vault_where} (key {key!r})" if vault_where
                          else "Vault (not configured: VAULT_ADDR unset)")
            problems.append({"key": key, "problem": "missing", "looked_in": ", ".join(places)})
            continue
        shown = "<hidden>" if info is not None and _is_secret(info.annotation) else (
            repr(err.get("input"))[:80])
        problems.append({"key": ".".join(loc), "problem": f"invalid ({err.get('msg')}): {shown}",
                         "looked_in": origin.get(key, "defaults")})
    lines = [f"  - {p['key']}: {p['problem']}; "
             f"{'looked in' if p['problem'] == 'missing' else 'from'} {p['looked_in']}"
             for p in problems]
    return ConfigError(f"configuration of {service!r} ({schema.__name__}) has "
                       f"{len(problems)} problem(s):\n" + "\n".join(lines),
                       service=service, errors=problems)
