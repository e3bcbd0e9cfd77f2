"""The base of every wire model, the field types they share, and the one parsing entry point.

Why a common base: every message that crosses a process boundary must be immutable (a consumer
cannot mutate what a producer logged), must reject unknown fields (a typo in a producer is a bug,
not a silently ignored key), and must carry ``schema_version`` so consumers can tell what they
read. Putting that in one class makes it impossible to forget.

Why :func:`parse_message`: pydantic raises its own ``ValidationError``, JSON decoding raises
``ValueError`` and odd inputs raise ``TypeError``. Consumers (the bus, the OMS command handler)
need exactly one exception type with the failing fields and values in a stable shape, so they can
dead-letter the message with a reason and carry on.

The numeric domain (:data:`Money`, :data:`PositiveDecimal`, :data:`NonNegativeDecimal`): every
price, quantity, amount and limit on the wire is a decimal with

- ``|x| < 10**15`` (:data:`MAX_MAGNITUDE`): a thousand trillion of any currency or unit;
- at most 20 significant digits (:data:`MAX_SIGNIFICANT_DIGITS`), counted as written;
- at most 12 digits after the decimal point (:data:`MAX_SCALE`);
- given as a Decimal, an int, or text of ASCII digits with an optional sign, point and exponent
  (``"187.25"``, ``"-3"``, ``"1E-7"``; at most 64 characters). Binary floats (and so JSON numbers
  with a fraction or an exponent) are refused: the JSON parser has already rounded them. So are
  NaN and Infinity, booleans, non-ASCII digits (``"١٢٣"``), blanks and ``_`` separators.

Why these bounds: 15 integer digits and 12 fraction digits make 27 digits, so the sum or the
difference of any two wire values is exact in Python's default 28-digit decimal context, and a
fill that completes an order compares equal to it (a 29-digit quantity used to be rounded and
then refused as an overfill). ``10**15`` stays far inside PostgreSQL's ``numeric`` and every
venue's order size; 12 places cover satoshis and sub-micro prices. Values computed by the stack
(an average cost, a float from a vendor file) go through :func:`fit_to_domain` first.
"""

from __future__ import annotations

import datetime as dt
import json
import weakref
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mts1b_foundation.errors import ValidationFailed

__all__ = [
    "DECIMAL_PATTERN",
    "MAX_MAGNITUDE",
    "MAX_SCALE",
    "MAX_SIGNIFICANT_DIGITS",
    "MAX_TAGS",
    "Context",
    "ContextValue",
    "Identifier",
    "Money",
    "NonNegativeDecimal",
    "PositiveDecimal",
    "ScopeId",
    "Tags",
    "UtcDatetime",
    "VenueCode",
    "VenueMessage",
    "WireModel",
    "check_wire_decimal",
    "describe_errors",
    "fit_to_domain",
    "parse_message",
]

M = TypeVar("M", bound="WireModel")

# --- timestamps ------------------------------------------------------------------------------

_EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _require_utc(value: dt.datetime) -> dt.datetime:
    """Refuse naive datetimes and instants no market has seen; normalise to UTC.

    The window (1900-01-01 up to 2200-01-01, exclusive) holds every bar the stack keeps (the
    S&P 500 index starts in 1927) and every expiry it trades, and keeps year-1 or year-9999
    stamps from reaching code that adds a timedelta to them or hands them to the database.
    """
    if value.tzinfo is dt.UTC:  # the usual case (every stamp the stack makes): no conversion
        utc = value
    elif value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (naive datetimes are ambiguous)")
    else:
        utc = value.astimezone(dt.UTC)
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError(f"datetime {utc.isoformat()} lies outside 1900-01-01 .. 2200-01-01")
    return utc


UtcDatetime = Annotated[dt.datetime, AfterValidator(_require_utc)]
"""A timezone-aware datetime from 1900 up to 2200, stored in UTC. Naive input is rejected."""

# --- the numeric domain ----------------------------------------------------------------------

MAX_MAGNITUDE = Decimal(10) ** 15
"""Every wire decimal has an absolute value below this."""
MAX_SIGNIFICANT_DIGITS = 20
"""Digits of a wire decimal's coefficient as written (``"100.50"`` has 5)."""
MAX_SCALE = 12
"""Digits after the decimal point as written."""
_MAX_TEXT = 64
_INT_LIMIT = 10**15
DECIMAL_PATTERN = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
"""The grammar of decimal text on the wire (stated in the JSON Schema)."""


def check_wire_decimal(value: Decimal) -> Decimal:
    """``value`` if it lies in the numeric domain, else ``ValueError`` naming the rule broken."""
    if not value.is_finite():
        raise ValueError("NaN and Infinity are not numbers on the wire")
    # _check_shape's rules, in its order, written out: this runs for every decimal of every
    # message validated, and the call and the repeated adjusted() were a third of its cost
    exponent = int(value.as_tuple().exponent)
    adjusted = value.adjusted()
    if value and adjusted >= 15:
        raise ValueError("the magnitude must be below 1E+15")
    if exponent < -MAX_SCALE:
        raise ValueError(f"at most {MAX_SCALE} digits after the decimal point")
    if adjusted - exponent + 1 > MAX_SIGNIFICANT_DIGITS:
        raise ValueError(f"at most {MAX_SIGNIFICANT_DIGITS} significant digits")
    return value


def _check_shape(value: Decimal, exponent: int, digits: int) -> None:
    if value and value.adjusted() >= 15:
        raise ValueError("the magnitude must be below 1E+15")
    if exponent < -MAX_SCALE:
        raise ValueError(f"at most {MAX_SCALE} digits after the decimal point")
    if digits > MAX_SIGNIFICANT_DIGITS:
        raise ValueError(f"at most {MAX_SIGNIFICANT_DIGITS} significant digits")


def _decimal_text(value: str) -> Decimal:
    """Read ASCII decimal text (the grammar of ``DECIMAL_PATTERN``) into the domain.

    ``Decimal()`` itself also takes blanks around the number, ``_`` between digits, other
    scripts' digits, NaN and Infinity: those are refused first. The regular expression is the
    documented grammar; string tests do the same job several times faster on the hot path
    (every price and quantity the OMS reads).
    """
    if len(value) > _MAX_TEXT:
        raise ValueError(f"decimal text is limited to {_MAX_TEXT} characters")
    if not value.isascii() or "_" in value or value.strip() != value or not value:
        raise ValueError("not a decimal number: ASCII digits with an optional sign, point and "
                         "exponent")
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ValueError("not a decimal number: ASCII digits with an optional sign, point and "
                         "exponent") from None
    if not number.is_finite():
        raise ValueError("NaN and Infinity are not numbers on the wire")
    if "e" in value or "E" in value:
        return check_wire_decimal(number)
    # plain text: its written scale and digits are visible without taking the Decimal apart
    whole, _, fraction = value.lstrip("+-").partition(".")
    digits = len((whole + fraction).lstrip("0")) or 1
    _check_shape(number, -len(fraction), digits)
    return number


def _wire_decimal(value: object) -> Decimal:
    """Read a wire decimal from a Decimal, an int or ASCII decimal text; nothing else."""
    if isinstance(value, str):
        return _decimal_text(value)
    if isinstance(value, Decimal):
        return check_wire_decimal(value)
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise ValueError("the magnitude must be below 1E+15")
        return Decimal(value)
    if isinstance(value, float):
        raise ValueError("a binary float is not a wire decimal (its digits are already "
                         "rounded): send the number as a string such as \"0.1\"")
    raise ValueError(f"expected a decimal string or an integer, got {type(value).__name__}")


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _domain_schema(description: str) -> WithJsonSchema:
    return WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": _MAX_TEXT},
            {"type": "integer", "minimum": 1 - _INT_LIMIT, "maximum": _INT_LIMIT - 1},
        ],
        "description": description + "; |x| < 1E+15, at most 20 significant digits and 12 "
                                     "after the point; ASCII decimal text or an integer",
    })


# Decimals serialise as strings in JSON: a float would lose digits (0.1 + 0.2 != 0.3).
_as_str = PlainSerializer(lambda d: str(d), return_type=str, when_used="json")
Money = Annotated[Decimal, PlainValidator(_wire_decimal), _as_str,
                  _domain_schema("A signed decimal")]
"""Any decimal of the numeric domain (prices, cash, PnL, signed quantities)."""
PositiveDecimal = Annotated[Decimal, PlainValidator(_wire_decimal), AfterValidator(_positive),
                            _as_str, _domain_schema("A decimal > 0")]
NonNegativeDecimal = Annotated[Decimal, PlainValidator(_wire_decimal),
                               AfterValidator(_non_negative), _as_str,
                               _domain_schema("A decimal >= 0")]


def fit_to_domain(value: Decimal | float | int) -> Decimal:
    """``value`` rounded half-even into the numeric domain, for values the stack computes.

    A value already in the domain comes back unchanged. Otherwise it is rounded to at most
    :data:`MAX_SCALE` places and :data:`MAX_SIGNIFICANT_DIGITS` digits (an average cost of
    ``100/3`` becomes ``33.333333333333``). A float is first written as its shortest repr
    (``0.1`` -> ``Decimal("0.1")``). ``ValueError`` for NaN, Infinity, and magnitudes of 1E+15
    and above: those have no wire value, and rounding must not invent one.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    try:
        return check_wire_decimal(number)
    except ValueError:
        pass
    if number and number.adjusted() >= 15:
        raise ValueError(f"{value!r}: the magnitude must be below 1E+15")
    quantum = max(-MAX_SCALE, number.adjusted() - MAX_SIGNIFICANT_DIGITS + 1)
    rounded = number.quantize(Decimal(1).scaleb(quantum), rounding=ROUND_HALF_EVEN)
    if len(rounded.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:  # 9.99...95 carried to 10.00...0
        rounded = rounded.quantize(Decimal(1).scaleb(quantum + 1), rounding=ROUND_HALF_EVEN)
    return check_wire_decimal(rounded)


# --- ids, tags and context -------------------------------------------------------------------

_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127}$"
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=_ID_PATTERN)]
"""Ids and codes: 1-128 of ``A-Z a-z 0-9 _ . : @ = + -``, starting with a letter, digit or
``_``. No ``/``, ``\\``, whitespace or quote, and never ``.`` or ``..``: an id can never name
a path, break a log line or a subject."""
ScopeId = Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127})$")]
"""The target of a trading-state change: ``*`` for everything, else a fund or strategy id."""

ContextValue = str | int | float | bool | None
"""JSON scalars allowed in context maps (denial context, alert context, metadata, tags)."""

_KEY = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")]
_Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]

MAX_TAGS = 32
"""Entries of an order's ``tags``; keys 1-64 characters, text values 256, 4 KiB in all."""
_TAGS_BYTES = 4096
_CONTEXT_BYTES = 16384


def _json_size(limit: int, what: str) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        if value:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            if size > limit:
                raise ValueError(f"{what} take {size} bytes as JSON; at most {limit}")
        return value
    return AfterValidator(check)


Tags = Annotated[
    dict[_KEY, Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
         | StrictBool | _Int64 | None],
    Field(max_length=MAX_TAGS),
    _json_size(_TAGS_BYTES, "tags"),
]
"""A client's labels on an order: at most 32 entries, keys of ``A-Z a-z 0-9 _ . : -`` (1-64,
starting with a letter, digit or ``_``), values text (at most 256 characters, no control
characters), integers within int64, booleans or null, and at most 4 KiB as JSON. No floats: a
label is exact, and an integer too large for int64 must not quietly become one."""

Context = Annotated[
    dict[_KEY, Annotated[str, Field(max_length=2000)] | StrictBool | _Int64 | _Finite | None],
    Field(max_length=64),
    _json_size(_CONTEXT_BYTES, "context entries"),
]
"""Structured detail the stack attaches to a denial, reply, alert or signal: at most 64
entries with keys like :data:`Tags`, text values of at most 2,000 characters, 16 KiB in all."""

VenueCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
"""A venue's own code for what happened (IB's ``201``, FIX ``OrdRejReason``, the paper venue's
``TICK_SIZE``): printable ASCII, no blanks, at most 64 characters."""
VenueMessage = Annotated[str, Field(min_length=1, max_length=2000)]
"""A venue's own words, as it sent them, at most 2,000 characters."""


# --- the base model --------------------------------------------------------------------------


def _version_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """State in the JSON Schema which ``schema_version`` values a model reads, and its own."""
    version = schema.get("properties", {}).get("schema_version")
    if isinstance(version, dict) and issubclass(model, WireModel):
        version["default"] = model.SCHEMA_VERSION
        version["enum"] = sorted({model.SCHEMA_VERSION, *model.READABLE_VERSIONS})


class WireModel(BaseModel):
    """Frozen, strict-about-extras base of every message on the wire.

    Versions: ``SCHEMA_VERSION`` is the version a model writes; bump it whenever the model's
    JSON Schema changes. ``READABLE_VERSIONS`` lists the older versions it still reads - the
    previous one, for one release - and :meth:`upgrade` maps such a message to the current
    shape before it is validated (by the current rules: an old message gets no laxer checks).
    Any other ``schema_version``, and one that is not a JSON integer, is refused, so an old
    consumer refuses a newer message loudly instead of misreading it.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_default=True,
        ser_json_inf_nan="strings",
        json_schema_extra=_version_schema,
    )

    SCHEMA_VERSION: ClassVar[int] = 1
    READABLE_VERSIONS: ClassVar[frozenset[int]] = frozenset()
    schema_version: int = Field(default=1, description="Version of this model's JSON shape.")

    @model_validator(mode="before")
    @classmethod
    def _versioned(cls, data: Any) -> Any:
        # The field default is the base's 1; a subclass at version N fills N when it is omitted.
        if not isinstance(data, dict):
            return data
        if "schema_version" not in data:
            return {**data, "schema_version": cls.SCHEMA_VERSION}
        version = data["schema_version"]
        if type(version) is int and version in cls.READABLE_VERSIONS:
            return {**cls.upgrade(version, dict(data)), "schema_version": cls.SCHEMA_VERSION}
        return data

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Map a message of readable older ``version`` to this version's shape.

        The default keeps it as it is: right when a version only tightened the rules. A model
        whose fields were renamed or re-coded overrides this.
        """
        return data

    @field_validator("schema_version", mode="before")
    @classmethod
    def _integer_schema_version(cls, value: Any) -> Any:
        # strict by hand: Field(strict=True) would also type the constructor's argument for
        # mypy, and "1", 1.0 and true are what a sloppy producer sends
        if type(value) is not int:
            raise ValueError(f"schema_version must be a JSON integer, not {type(value).__name__}")
        return value

    @field_validator("schema_version")
    @classmethod
    def _known_schema_version(cls, value: int) -> int:
        if value != cls.SCHEMA_VERSION:
            older = ", ".join(str(v) for v in sorted(cls.READABLE_VERSIONS))
            reads = f"{cls.SCHEMA_VERSION}" + (f", and reads {older}" if older else "")
            raise ValueError(
                f"schema_version {value} is not supported by {cls.__name__} "
                f"(writes {reads})"
            )
        return value

    def to_json(self) -> bytes:
        """Canonical JSON bytes (what goes on the bus)."""
        return self.model_dump_json().encode()


class _KeyedRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference that carries its registry key: one object per entry (a ``partial``
    callback would make two more, each for the garbage collector to walk)."""

    __slots__ = ("key",)
    key: int


class ValidatedInstances:
    """Objects known to have passed validation, by identity and weakly: the proof a fast path
    asks for before it skips validating an object again (``Order.assigned``). A copy
    (``model_copy``, ``copy.copy``) or an instance built without validation
    (``model_construct``) is another object and is not in it; an entry goes when its object
    does. A plain dict of weak references rather than a ``WeakValueDictionary``, whose
    Python-level methods cost more than the rest of the check."""

    def __init__(self) -> None:
        self._refs: dict[int, _KeyedRef] = {}
        self._callback = self._drop  # bound once, shared by every reference

    def add(self, obj: object) -> None:
        ref = _KeyedRef(obj, self._callback)
        ref.key = key = id(obj)
        self._refs[key] = ref

    def __contains__(self, obj: object) -> bool:
        ref = self._refs.get(id(obj))
        return ref is not None and ref() is obj

    def __len__(self) -> int:
        return len(self._refs)

    def _drop(self, ref: _KeyedRef) -> None:
        if self._refs.get(ref.key) is ref:  # not a later object's entry under a reused id
            del self._refs[ref.key]


def describe_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Turn pydantic's errors into ``[{field, value, reason}]`` with printable values."""
    described: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err.get("loc", ())) or "<root>"
        value = "<missing>" if err.get("type") == "missing" else err.get("input")
        shown = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if isinstance(shown, str) and len(shown) > 200:
            shown = shown[:200] + "..."
        reason = err.get("msg", "invalid")
        if len(reason) > 300:  # a closed enum lists every member
            reason = reason[:300] + "..."
        described.append({"field": field, "value": shown, "reason": reason})
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
