"""What makes two submissions under one idempotency key "the same order": the content hash.

Strict idempotency, as payment APIs do it: a repeat of a key must repeat the request. The OMS
compares an order's *content* - every field of the order as the OMS accepts it (the fund's
default broker and account filled in) except ``order_id`` and ``created_at`` (the OMS assigns
them) and ``tags`` (a client's labels, free to differ between retries) - and

- same key, same content: the original ``order_id``, ``duplicate=True``;
- same key, different content: ``IDEMPOTENCY_CONFLICT`` naming the fields that differ
  (:func:`differing_fields`) and the original order, which is left as it is.

The canonical form (:func:`canonical_content`), which :func:`content_hash` hashes with SHA-256:

- the fields as JSON objects with sorted keys, no whitespace, ASCII only; nested models
  (the instrument) the same way; ``schema_version`` left out at every level (a message read
  from an older version is upgraded first, so its content does not depend on it);
- enums as their values, timestamps as ISO 8601 UTC with microseconds;
- **decimals by value**: ``1``, ``1.0`` and ``1E+0`` are one quantity, written without
  exponent and without trailing zeros (``"1"``, ``"0.5"``, ``"100"``). A client that
  re-serialises its order (another JSON library, a retry from another language) writes the
  same number differently; it is still the same order to the venue, so it is not a conflict.
  Only a different number is.

The hash is stored with the order (column ``content_hash``, migration 0004) and written
``sha256:<hex>``, so that a different canonical form could one day be told apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from typing import Any

from mts1b_foundation import Order
from pydantic import BaseModel
from pydantic_core import to_json

__all__ = ["EXCLUDED", "canonical_content", "content_hash", "differing_fields"]

EXCLUDED = frozenset({"order_id", "created_at", "tags"})
"""Order fields that are not part of its content."""
_EXCLUDED_NO_SLEEVES = EXCLUDED | {"sleeves"}


def _canonical(value: Any) -> Any:
    """``value`` as a plain JSON value: the conversion its type takes (:func:`_converter`),
    looked up by the exact type and remembered. This runs for every field of every order
    submitted; a chain of ``isinstance`` tests per value cost more than the rest of the hash.
    The conversion depends on the type alone, so remembering it per type cannot change a
    result."""
    convert = _CONVERTERS.get(type(value))
    if convert is None:
        convert = _CONVERTERS[type(value)] = _converter(type(value))
    return convert(value)


def _converter(cls: type) -> Callable[[Any], Any]:
    """How :func:`_canonical` writes a value of type ``cls`` (the canonical form of the module
    docstring): text, ``None``, booleans and integers as they are (an enum of them, such as a
    StrEnum, as its value); decimals by value; other enums by their value; timestamps in UTC
    with microseconds; dates ISO; models (the instrument) as their fields; mappings with text
    keys; sequences as lists; anything else as it is."""
    if issubclass(cls, str | bool | int) or cls is type(None):
        return _enum_value if issubclass(cls, Enum) else _same
    if issubclass(cls, Decimal):
        return _decimal
    if issubclass(cls, Enum):
        return _enum_canonical
    if issubclass(cls, dt.datetime):
        return _timestamp
    if issubclass(cls, dt.date):
        return _date
    if issubclass(cls, BaseModel):  # the instrument: its fields, read directly
        return _model
    if issubclass(cls, dict):
        return _mapping
    if issubclass(cls, list | tuple):
        return _sequence
    return _same


def _same(value: Any) -> Any:
    return value


def _enum_value(value: Enum) -> Any:
    return value._value_  # what ``.value`` returns, without the property's Python call


def _enum_canonical(value: Enum) -> Any:
    return _canonical(value._value_)


def _decimal(value: Decimal) -> str:
    if value == 0:
        return "0"  # also -0 and 0E-12
    return format(value.normalize(), "f")


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _date(value: dt.date) -> str:
    return value.isoformat()


def _model(value: BaseModel) -> dict[str, Any]:
    return _fields(value, frozenset())


def _mapping(value: dict[Any, Any]) -> dict[str, Any]:
    out = {str(k): _canonical(v) for k, v in value.items()}
    return dict(sorted(out.items()))  # keys in the canonical order (see content_hash)


def _sequence(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [_canonical(v) for v in value]


_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def _fields(model: BaseModel, excluded: frozenset[str]) -> dict[str, Any]:
    """A validated model's fields as canonical values, without ``schema_version`` and
    ``excluded``, in sorted order. Read from the model itself rather than through
    ``model_dump``: this runs for every order submitted, and a dump costs several times more.
    The names to read are worked out once per model class."""
    names = _NAMES.get((type(model), excluded))
    if names is None:
        skip = {"schema_version", *excluded}
        names = _NAMES[(type(model), excluded)] = tuple(sorted(
            name for name in type(model).model_fields if name not in skip))
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(model, name)
        cls = type(value)
        if cls is str or value is None:  # most fields: as they are (what _same would give)
            out[name] = value
        else:
            convert = _CONVERTERS.get(cls)
            if convert is None:
                convert = _CONVERTERS[cls] = _converter(cls)
            out[name] = convert(value)
    return out


_NAMES: dict[tuple[type, frozenset[str]], tuple[str, ...]] = {}


def canonical_content(order: Order) -> dict[str, Any]:
    """The order's content as plain JSON values (see the module docstring). ``sleeves`` only
    when there are some: an order without sleeves hashes as it did before the field existed,
    so a retry that straddles the upgrade is still recognised as a repeat."""
    return _fields(order, EXCLUDED if order.sleeves else _EXCLUDED_NO_SLEEVES)


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode
"""``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=True)``, with the
encoder made once instead of for every order (``json.dumps`` builds a new one whenever an
option differs from its defaults); the same options, so the same text."""


def content_hash(order: Order) -> str:
    """``sha256:<hex>`` of the canonical JSON of the order's content.

    The canonical JSON is :data:`_ENCODE`'s. Every mapping of the canonical content is built
    with its keys already sorted, so a compact JSON writer that keeps insertion order writes
    the same text wherever the content is ASCII without DEL: ``pydantic_core.to_json``, five
    times faster than the standard library's encoder, and this runs for every order
    submitted. Text with other characters, which ``_ENCODE`` writes as ``\\u`` escapes, is
    written by ``_ENCODE``.
    """
    return "sha256:" + hashlib.sha256(_canonical_json(canonical_content(order))).hexdigest()


def _canonical_json(content: dict[str, Any]) -> bytes:
    """:data:`_ENCODE`'s text of canonical content (mappings in sorted key order), as bytes."""
    text = to_json(content)
    if text.isascii() and b"\x7f" not in text:  # _ENCODE escapes DEL, to_json does not
        return text
    return _ENCODE(content).encode("ascii")


def differing_fields(original: Order, repeat: Order) -> list[str]:
    """The content fields in which ``repeat`` differs from ``original``, sorted; a field of
    the instrument is named ``instrument.<field>`` (``instrument.lot_size``), a different
    kind of instrument ``instrument.asset_class``."""
    a, b = canonical_content(original), canonical_content(repeat)
    out: list[str] = []
    for name in sorted(set(a) | set(b)):
        left, right = a.get(name), b.get(name)
        if left == right:
            continue
        if isinstance(left, dict) and isinstance(right, dict):
            inner = sorted(k for k in set(left) | set(right) if left.get(k) != right.get(k))
            if "asset_class" in inner:
                inner = ["asset_class"]
            out += [f"{name}.{k}" for k in inner]
        else:
            out.append(name)
    return out
