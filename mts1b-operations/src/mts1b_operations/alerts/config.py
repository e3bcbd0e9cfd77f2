"""The alert router's configuration: timings, grouping, inhibition and receivers.

Read from a YAML file (``--config``), with the secrets also taken from the environment so the
file can be committed without them: ``MTS_ALERTS_DATABASE_URL``, ``MTS_ALERTS_TELEGRAM_TOKEN``
(for a Telegram receiver whose file gives no ``bot_token``), ``MTS_ALERTS_SMTP_PASSWORD`` (for
an e-mail receiver with a ``username`` and no ``password``). Secrets are ``SecretStr``: they
print as ``**********``, and an invalid value is reported by its field, never echoed.

The defaults are Alertmanager's (group_wait 30 s, group_interval 5 min, repeat_interval 4 h,
resolve_timeout 5 min) and the Telegram Bot FAQ's limits (one message a second per chat, 20 a
minute per group, under 30 a second in all). The default inhibition rule is the issue's: a
fund's ``TradingHalted`` alert silences that fund's per-order alerts (any with an ``order_id``).

A receiver of kind ``plugin`` delivers through a sink another package provides: its ``sink``
names an entry point of the ``mts1b.alert_sinks`` group, built with the receiver's name and
its ``options`` (:mod:`mts1b_operations.alerts.plugins`). Its options may hold credentials:
like the other secrets they are never shown in an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from mts1b_platform.redaction import SENSITIVE_KEY
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from mts1b_operations.alerts.errors import AlertsInputError
from mts1b_operations.alerts.matchers import Matcher, parse_matchers

__all__ = ["AlertsConfig", "EmailReceiver", "InhibitRule", "PluginReceiver", "Receiver",
           "TelegramReceiver", "WebhookReceiver", "load_alerts_config"]

_SECRET_FIELDS = {"bot_token", "password", "database_url", "url", "headers", "options"}
_DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ReceiverBase(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    match: tuple[str, ...] = Field(default=(), description="matchers an alert must meet")
    send_resolved: bool = True
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("match")
    @classmethod
    def _matchers_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_matchers(value)
        return value

    @property
    def matchers(self) -> tuple[Matcher, ...]:
        return parse_matchers(self.match)


class TelegramReceiver(_ReceiverBase):
    kind: Literal["telegram"] = "telegram"
    bot_token: SecretStr | None = None
    chat_ids: tuple[int, ...] = Field(min_length=1)
    api_url: str = "https://api.telegram.org"
    per_chat_per_second: float = Field(default=1.0, gt=0, le=30)
    per_group_per_minute: float = Field(default=20.0, gt=0, le=600)
    global_per_second: float = Field(default=25.0, gt=0, le=1000)
    max_inline_wait: float = Field(default=60.0, ge=0, le=3600,
                                   description="a retry_after up to this is waited in place")


class EmailReceiver(_ReceiverBase):
    kind: Literal["email"] = "email"
    host: str = Field(min_length=1)
    port: int = Field(default=25, gt=0, lt=65536)
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")], ...] = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    per_second: float = Field(default=5.0, gt=0, le=100)


class WebhookReceiver(_ReceiverBase):
    kind: Literal["webhook"] = "webhook"
    url: SecretStr
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    per_second: float = Field(default=10.0, gt=0, le=1000)

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class PluginReceiver(_ReceiverBase):
    """A sink from a plugin: the ``mts1b.alert_sinks`` entry point named ``sink``, built as
    ``Factory(name=<this receiver's name>, **options)``."""

    kind: Literal["plugin"] = "plugin"
    sink: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    options: dict[str, Any] = Field(default_factory=dict)


Receiver = Annotated[TelegramReceiver | EmailReceiver | WebhookReceiver | PluginReceiver,
                     Field(discriminator="kind")]


class InhibitRule(_Strict):
    """While an alert matching ``source`` fires, alerts matching ``target`` that have the same
    values of the ``equal`` labels are muted (Alertmanager's ``inhibit_rules``)."""

    source: tuple[str, ...] = Field(min_length=1)
    target: tuple[str, ...] = Field(min_length=1)
    equal: tuple[str, ...] = ()

    @field_validator("source", "target")
    @classmethod
    def _matchers_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_matchers(value)
        return value


HALT_INHIBITS_ORDERS = (
    InhibitRule(source=("alertname=TradingHalted",), target=("order_id=~.+",), equal=("fund",)),
    InhibitRule(source=("alertname=TradingHalted", "scope=global"), target=("order_id=~.+",)),
)
"""A fund's halt mutes its per-order alerts; a global halt mutes every per-order alert."""


class AlertsConfig(_Strict):
    """Everything ``mts mts1b-operations serve alerts`` and the ``alerts`` commands read."""

    database_url: SecretStr = SecretStr(_DEFAULT_DSN)
    schema_name: str = Field(default="mts_alerts", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    group_by: tuple[str, ...] = ("alertname", "fund")
    group_wait: float = Field(default=30.0, ge=0)
    group_interval: float = Field(default=300.0, gt=0)
    repeat_interval: float = Field(default=14400.0, gt=0)
    resolve_timeout: float = Field(default=300.0, gt=0)
    flap_window: float = Field(default=600.0, gt=0)
    flap_threshold: int = Field(default=4, ge=2, description="status changes within "
                                                             "flap_window that make it flap")
    heartbeat_misses: float = Field(default=3.0, ge=1, description="intervals without a "
                                                                   "heartbeat before an alert")
    tick: float = Field(default=1.0, gt=0, le=60)
    outbox_retention: float = Field(default=7 * 86400.0, gt=0, description="seconds a "
                                    "delivered notification stays in the outbox")
    ack_wait: float = Field(default=30.0, gt=0, le=3600, description="seconds before the bus "
                            "sends again a message the router took and did not acknowledge "
                            "(it died): how long a crash delays an alert")
    inhibit: tuple[InhibitRule, ...] = HALT_INHIBITS_ORDERS
    receivers: tuple[Receiver, ...] = ()

    @field_validator("receivers")
    @classmethod
    def _unique_names(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        names = [r.name for r in value]
        if len(names) != len(set(names)):
            raise ValueError(f"receiver names must be unique, got {names}")
        return value


def _secret_named(name: str) -> bool:
    return name in _SECRET_FIELDS or SENSITIVE_KEY.match(name) is not None


def _shown(path: tuple[Any, ...], err: Mapping[str, Any]) -> Any:
    """What an error about ``path`` may show of the value it got: never a secret. For a
    missing field pydantic's input is the enclosing mapping (a receiver's ``bot_token`` with
    it), a misspelt key may be a secret's (``token:``), and a mapping or a list may hold one:
    those are described, not echoed."""
    value = err.get("input")
    if err.get("type") == "missing":
        return "<missing>"
    if any(_secret_named(str(part)) for part in path):
        return "<secret>"
    if err.get("type") == "extra_forbidden":
        return "<not shown>"
    if isinstance(value, Mapping):
        return f"<a mapping with keys {', '.join(str(k) for k in value)[:80]}>"
    if isinstance(value, list | tuple):
        return f"<a list of {len(value)}>"
    return value[:80] if isinstance(value, str) else value


def load_alerts_config(path: str | os.PathLike[str] | None = None, *,
                       environ: Mapping[str, str] | None = None,
                       overrides: Mapping[str, Any] | None = None) -> AlertsConfig:
    """The configuration from ``path`` (YAML; None: the defaults), the environment's secrets
    and ``overrides``; AlertsInputError names the first bad field (a secret's value is never
    shown)."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise AlertsInputError("config", str(path), f"cannot read it: "
                                                        f"{type(exc).__name__}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise AlertsInputError("config", str(path), "expected a mapping at the top")
        data = dict(loaded or {})
    if env.get("MTS_ALERTS_DATABASE_URL"):
        data["database_url"] = env["MTS_ALERTS_DATABASE_URL"]
    receivers = [dict(r) if isinstance(r, dict) else r for r in data.get("receivers") or []]
    for receiver in receivers:
        if not isinstance(receiver, dict):
            continue
        if receiver.get("kind") == "telegram" and not receiver.get("bot_token"):
            receiver["bot_token"] = env.get("MTS_ALERTS_TELEGRAM_TOKEN")
        if (receiver.get("kind") == "email" and receiver.get("username")
                and not receiver.get("password")):
            receiver["password"] = env.get("MTS_ALERTS_SMTP_PASSWORD")
    if receivers:
        data["receivers"] = receivers
    data.update(overrides or {})
    try:
        config = AlertsConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err.get("loc", ()))
        raise AlertsInputError(".".join(str(p) for p in loc) or "config",
                               _shown(loc, err), err.get("msg", "invalid")) from None
    for receiver in config.receivers:
        if isinstance(receiver, TelegramReceiver) and receiver.bot_token is None:
            raise AlertsInputError(f"receivers.{receiver.name}.bot_token", "<missing>",
                                   "put it in the file or set MTS_ALERTS_TELEGRAM_TOKEN",
                                   missing=True)
        # a username without a password would log in with an empty one: a typo or a missing
        # variable, found at start rather than at the first alert
        if (isinstance(receiver, EmailReceiver) and receiver.username
                and receiver.password is None):
            raise AlertsInputError(f"receivers.{receiver.name}.password", "<missing>",
                                   "a username is given: put the password in the file or set "
                                   "MTS_ALERTS_SMTP_PASSWORD", missing=True)
    return config
