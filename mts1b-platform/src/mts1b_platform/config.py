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

Vault settings come from the usual variables: ``VAULT_ADDR``, ``VAULT_TOKEN`` or a file holding
the token, ``MTS_VAULT_TOKEN_FILE`` (token auth; the file is what a Vault agent's token sink or
``mts dev up --vault`` writes, so the token itself never has to sit in the environment or be
printed), or ``VAULT_ROLE_ID`` + ``VAULT_SECRET_ID`` (AppRole, mount ``VAULT_APPROLE_MOUNT``,
default ``approle``), ``VAULT_NAMESPACE``, ``VAULT_CACERT`` / ``VAULT_SKIP_VERIFY`` /
``VAULT_CLIENT_CERT`` + ``VAULT_CLIENT_KEY`` for TLS, ``MTS_VAULT_MOUNT`` (default ``secret``)
and ``MTS_VAULT_TIMEOUT`` (seconds, default 5). Login and reading go through
:class:`mts1b_platform.vault.VaultSession`, which long-running services also use directly to keep
their token renewed. In production a Vault that is unreachable, sealed or refuses the credentials
or the path fails fast with the address and path; elsewhere it is logged and the other sources are
used. A path with nothing stored is not an error anywhere (a service may keep nothing in Vault);
a key then missing says so.
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mts1b_foundation import MtsError
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from mts1b_platform.logging import get_logger
from mts1b_platform.redaction import register_secret

__all__ = [
    "VAULT_TOKEN_FILE_ENV",
    "ConfigError",
    "VaultSettings",
    "env_name",
    "is_production",
    "load_config",
    "read_token_file",
    "read_vault_secrets",
]

S = TypeVar("S", bound=BaseModel)

_log = get_logger(__name__)


class ConfigError(MtsError, ValueError):
    """Configuration is missing, invalid, or a source refused to answer.

    ``context["errors"]`` lists ``{key, problem, looked_in}`` for every offending key. A Vault
    problem carries ``context["reason"]``, one stable word a caller can branch on:
    ``unreachable``, ``tls``, ``sealed``, ``no_credentials``, ``token_file``, ``token_rejected``,
    ``login_failed``, ``denied``, ``no_mount``, ``not_found``, ``bad_data``, ``not_renewable``,
    ``expired``, ``no_client`` (hvac missing), ``refused`` (anything else Vault answered),
    ``bad_setting``; ``context["vault"]`` is the address and path.
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


VAULT_TOKEN_FILE_ENV = "MTS_VAULT_TOKEN_FILE"  # noqa: S105 - a variable name
"""The variable naming a file that holds the Vault token (a Vault agent sink, ``mts dev up``)."""


def read_token_file(path: str, variable: str = VAULT_TOKEN_FILE_ENV) -> str:
    """The token in the file at ``path``, registered with the log redactor.

    Read again on every login, so a token that an agent rewrites in place is picked up. A
    missing, unreadable or empty file is a :class:`ConfigError` naming ``variable`` and the
    path - never what the file holds.
    """
    where = f"{variable}={path}"
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{where}: the Vault token file does not exist",
                          variable=variable, file=path, reason="token_file") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{where}: the Vault token file cannot be read ({why})",
                          variable=variable, file=path, reason="token_file") from None
    if not token:
        raise ConfigError(f"{where}: the Vault token file is empty", variable=variable,
                          file=path, reason="token_file")
    register_secret(token)
    return token


@dataclass(frozen=True)
class VaultSettings:
    """How to reach Vault. :meth:`from_env` reads the standard ``VAULT_*`` variables.

    The credentials are left out of ``repr()``: settings end up in tracebacks and debug lines.
    ``token_file``, when set, is read again at every login (see :func:`read_token_file`), and
    ``token`` is only its first reading.
    """

    addr: str
    token: str | None = field(default=None, repr=False)
    role_id: str | None = field(default=None, repr=False)
    secret_id: str | None = field(default=None, repr=False)
    approle_mount: str = "approle"
    mount: str = "secret"
    namespace: str | None = None
    verify: bool | str = True
    client_cert: tuple[str, str] | None = None
    timeout: float = 5.0
    token_file: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VaultSettings | None:
        """Settings from ``VAULT_*`` variables, or None when ``VAULT_ADDR`` is unset.

        ``VAULT_TOKEN`` wins over ``MTS_VAULT_TOKEN_FILE`` (as the Vault CLI prefers the variable
        to its token helper); a token file that is missing, unreadable or empty raises
        :class:`ConfigError` naming the variable and the path.
        """
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
        token = env.get("VAULT_TOKEN") or None
        token_file = None
        if token is None and env.get(VAULT_TOKEN_FILE_ENV):
            token_file = env[VAULT_TOKEN_FILE_ENV]
            token = read_token_file(token_file)
        raw_timeout = env.get("MTS_VAULT_TIMEOUT", "5")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError(f"MTS_VAULT_TIMEOUT={raw_timeout!r} is not a number of seconds",
                              variable="MTS_VAULT_TIMEOUT", value=raw_timeout,
                              reason="bad_setting") from None
        return cls(
            addr=addr,
            token=token,
            role_id=env.get("VAULT_ROLE_ID") or None,
            secret_id=env.get("VAULT_SECRET_ID") or None,
            approle_mount=env.get("VAULT_APPROLE_MOUNT", "approle"),
            mount=env.get("MTS_VAULT_MOUNT", "secret"),
            namespace=env.get("VAULT_NAMESPACE") or None,
            verify=verify,
            client_cert=cert,
            timeout=timeout,
            token_file=token_file,
        )

    def path_for(self, service: str) -> str:
        return f"mts1b/{service}"

    def where(self, service: str) -> str:
        """Human-readable location, e.g. ``https://vault:8200 secret/mts1b/oms``."""
        return f"{self.addr} {self.mount}/{self.path_for(service)}"


def read_vault_secrets(service: str, vault: VaultSettings) -> dict[str, Any]:
    """The KV v2 data at ``<mount>/mts1b/<service>`` (empty when nothing is stored there).

    A one-shot :class:`~mts1b_platform.vault.VaultSession`: it logs in (AppRole when
    ``role_id``/``secret_id`` are set, else the token), reads, and revokes a token it obtained.
    Raises :class:`ConfigError` naming the address and path on any other failure.
    """
    from mts1b_platform.vault import VaultSession

    with VaultSession(vault) as session:
        return session.read(service, missing_ok=True)


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

    secrets, vault_where, vault_note = _vault_source(service, vault, env, production)
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
        raise _config_error(service, schema, exc, origin, env_path, vault_where,
                            vault_note) from None
    for secret in _iter_secrets(result):
        register_secret(secret)
    return result


def _vault_source(service: str, vault: VaultSettings | None, env: Mapping[str, str],
                  production: bool) -> tuple[dict[str, Any], str | None, str | None]:
    """Vault's values for ``service``, where they were looked for, and a note for missing keys.

    ``where`` is None when Vault is not configured. The note is None when the read worked, else
    it says why Vault supplied nothing (nothing stored there, or - outside production - the
    reason it could not be used), so that a key then reported missing says why.
    """
    from mts1b_platform.vault import VaultSession

    where = ""
    try:
        settings = vault if vault is not None else VaultSettings.from_env(env)
        if settings is None:
            return {}, None, None
        where = settings.where(service)
        with VaultSession(settings) as session:
            return session.read(service), where, None
    except ConfigError as exc:
        reason = str(exc.context.get("reason", "error"))
        where = where or env.get("VAULT_ADDR", "").strip()  # from_env failed: no path yet
        if reason == "not_found":
            _log.info("%s", exc.message, service=service)
            return {}, where, "nothing stored at this path"
        if production:
            raise
        _log.warning("Vault not used: %s", exc.message, service=service)
        return {}, where, f"not used: {reason}"


def _config_error(service: str, schema: type[BaseModel], exc: ValidationError,
                  origin: Mapping[str, str], env_path: Path | None,
                  vault_where: str | None, vault_note: str | None) -> ConfigError:
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
            places.append(
                "Vault (not configured: VAULT_ADDR unset)" if vault_where is None
                else f"Vault {vault_where} ({vault_note or f'key {key!r}'})")
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
