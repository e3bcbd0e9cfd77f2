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
from collections.abc import Iterable
from decimal import Decimal
from enum import Enum
from typing import Any

from mts1b_foundation import Order
from pydantic import BaseModel

__all__ = ["EXCLUDED", "canonical_content", "content_hash", "differing_fields"]

EXCLUDED = frozenset({"order_id", "created_at", "tags"})
"""Order fields that are not part of its content."""
_EXCLUDED_NO_SLEEVES = EXCLUDED | {"sleeves"}


def _canonical(value: Any) -> Any:
    if isinstance(value, str) or value is None or isinstance(value, bool | int):
        return value.value if isinstance(value, Enum) else value  # a StrEnum is a str
    if isinstance(value, Decimal):
        if value == 0:
            return "0"  # also -0 and 0E-12
        return format(value.normalize(), "f")
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, BaseModel):  # the instrument: its fields, read directly
        return _fields(value, ())
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _fields(model: BaseModel, excluded: Iterable[str]) -> dict[str, Any]:
    """A validated model's fields as canonical values, without ``schema_version`` and
    ``excluded``. Read from the model itself rather than through ``model_dump``: this runs
    for every order submitted, and a dump costs several times more."""
    skip = {"schema_version", *excluded}
    return {name: _canonical(getattr(model, name)) for name in type(model).model_fields
            if name not in skip}


def canonical_content(order: Order) -> dict[str, Any]:
    """The order's content as plain JSON values (see the module docstring). ``sleeves`` only
    when there are some: an order without sleeves hashes as it did before the field existed,
    so a retry that straddles the upgrade is still recognised as a repeat."""
    return _fields(order, EXCLUDED if order.sleeves else _EXCLUDED_NO_SLEEVES)


def content_hash(order: Order) -> str:
    """``sha256:<hex>`` of the canonical JSON of the order's content."""
    text = json.dumps(canonical_content(order), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


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
