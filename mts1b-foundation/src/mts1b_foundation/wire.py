"""The base of every wire model, the field types they share, and the one parsing entry point.

Why a common base: every message that crosses a process boundary must be immutable (a consumer
cannot mutate what a producer logged), must reject unknown fields (a typo in a producer is a bug,
not a silently ignored key), and must carry ``schema_version`` so consumers can tell what they
read. Putting that in one class makes it impossible to forget.

Why :func:`parse_message`: pydantic raises its own ``ValidationError``, JSON decoding raises
``ValueError`` and odd inputs raise ``TypeError``. Consumers (the bus, the OMS command handler)
need exactly one exception type with the failing fields and values in a stable shape, so they can
dead-letter the message with a reason and carry on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from mts1b_foundation.errors import ValidationFailed

__all__ = [
    "Identifier",
    "Money",
    "NonNegativeDecimal",
    "PositiveDecimal",
    "ScopeId",
    "UtcDatetime",
    "WireModel",
    "describe_errors",
    "parse_message",
]

M = TypeVar("M", bound="WireModel")


def _require_utc(value: dt.datetime) -> dt.datetime:
    """Refuse naive datetimes; normalise aware ones to UTC so equal instants compare equal."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (naive datetimes are ambiguous)")
    return value.astimezone(dt.UTC)


def _finite_decimal(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("decimal must be finite (no NaN or Infinity in money paths)")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


UtcDatetime = Annotated[dt.datetime, AfterValidator(_require_utc)]
"""A timezone-aware datetime, stored in UTC. Naive input is rejected."""

# Decimals serialise as strings in JSON: a float would lose digits (0.1 + 0.2 != 0.3).
_as_str = PlainSerializer(lambda d: str(d), return_type=str, when_used="json")
Money = Annotated[Decimal, AfterValidator(_finite_decimal), _as_str]
"""Any finite Decimal (prices, cash, PnL, signed quantities)."""
PositiveDecimal = Annotated[
    Decimal, AfterValidator(_finite_decimal), AfterValidator(_positive), _as_str
]
NonNegativeDecimal = Annotated[
    Decimal, AfterValidator(_finite_decimal), AfterValidator(_non_negative), _as_str
]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/@=+-]+$")]
"""Ids and codes: non-empty, no whitespace, safe inside NATS subjects and log lines."""
ScopeId = Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_.:/@=+-]{1,128})$")]
"""The target of a trading-state change: ``*`` for everything, else a fund or strategy id."""


class WireModel(BaseModel):
    """Frozen, strict-about-extras base of every message on the wire.

    Subclasses set ``SCHEMA_VERSION`` when their JSON shape changes; the instance field
    ``schema_version`` must equal it, so an old consumer refuses a newer message loudly instead
    of misreading it.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_default=True,
        ser_json_inf_nan="strings",
    )

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = Field(default=1, description="Version of this model's JSON shape.")

    @model_validator(mode="before")
    @classmethod
    def _default_schema_version(cls, data: Any) -> Any:
        # The field default is the base's 1; a subclass at version N fills N when it is omitted.
        if isinstance(data, dict) and "schema_version" not in data:
            return {**data, "schema_version": cls.SCHEMA_VERSION}
        return data

    @field_validator("schema_version")
    @classmethod
    def _known_schema_version(cls, value: int) -> int:
        if value != cls.SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is not supported by {cls.__name__} "
                f"(expects {cls.SCHEMA_VERSION})"
            )
        return value

    def to_json(self) -> bytes:
        """Canonical JSON bytes (what goes on the bus)."""
        return self.model_dump_json().encode()


def describe_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Turn pydantic's errors into ``[{field, value, reason}]`` with printable values."""
    described: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err.get("loc", ())) or "<root>"
        value = "<missing>" if err.get("type") == "missing" else err.get("input")
        shown = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if isinstance(shown, str) and len(shown) > 200:
            shown = shown[:200] + "..."
        described.append({"field": field, "value": shown, "reason": err.get("msg", "invalid")})
    return described


def _message(model_name: str, errors: list[dict[str, Any]]) -> str:
    parts = [f"{e['field']}={e['value']!r}: {e['reason']}" for e in errors[:10]]
    more = f" (+{len(errors) - 10} more)" if len(errors) > 10 else ""
    return f"invalid {model_name}: " + "; ".join(parts) + more


def parse_message(model: type[M], data: bytes | bytearray | str | Mapping[str, Any]) -> M:
    """Validate ``data`` (JSON bytes/str, or a mapping) into ``model``.

    Raises :class:`ValidationFailed` for *any* bad input (undecodable bytes, invalid JSON, wrong
    types, unknown fields, unsupported ``schema_version``), with ``context["errors"]`` listing
    ``{field, value, reason}``. Nothing else escapes.
    """
    try:
        if isinstance(data, bytes | bytearray):
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                errors = [{"field": "<root>", "value": repr(bytes(data[:60])),
                           "reason": f"not UTF-8: {exc.reason}"}]
                raise ValidationFailed(_message(model.__name__, errors), model=model.__name__,
                                       errors=errors) from None
            return model.model_validate_json(text)
        if isinstance(data, str):
            return model.model_validate_json(data)
        if isinstance(data, Mapping):
            return model.model_validate(dict(data))
        errors = [{"field": "<root>", "value": repr(data)[:200],
                   "reason": f"expected JSON bytes, str or a mapping, got {type(data).__name__}"}]
        raise ValidationFailed(_message(model.__name__, errors), model=model.__name__,
                               errors=errors)
    except ValidationError as exc:
        errors = describe_errors(exc)
        raise ValidationFailed(_message(model.__name__, errors), model=model.__name__,
                               errors=errors) from None
    except (ValueError, TypeError, RecursionError) as exc:
        if isinstance(exc, ValidationFailed):
            raise
        errors = [{"field": "<root>", "value": "<unparsed>",
                   "reason": f"{type(exc).__name__}: {exc}"}]
        raise ValidationFailed(_message(model.__name__, errors), model=model.__name__,
                               errors=errors) from None
