"""The OMS's instrument registry: what each tradable symbol *is*, from configuration.

Why the OMS keeps its own: an order carries an ``instrument`` object, and the client fills it
in. Tick size, lot size and minimum quantity read from there are whatever the client says
(issue #15 reproduced 1E-40 shares passing because the order's own instrument allowed it).
The gates read these values from this registry instead, never from the order; an order for a
symbol the registry lacks is denied ``INSTRUMENT_NOT_FOUND``, and one whose instrument differs
from the registered one is denied ``INSTRUMENT_MISMATCH`` naming the fields that differ (the
client's view of the contract is not ours, so nothing it computed can be trusted).

Formats (:meth:`InstrumentRegistry.load` picks by the file's suffix):

``.json`` - ``{"instruments": [...]}`` or a bare list; each entry is a foundation
``Instrument`` as JSON (``asset_class`` chooses the kind: ``equity``, ``etf``, ``option``,
``future``, ``fx``, ``crypto``, ``sports``, ``prediction``; decimals as strings) plus an
optional ``max_quantity``::

    {"instruments": [
      {"asset_class": "equity", "symbol": "AAPL", "tick_size": "0.01", "lot_size": "1",
       "min_quantity": "1", "max_quantity": "50000"},
      {"asset_class": "crypto", "symbol": "BTC-USD", "base": "BTC", "quote": "USD",
       "tick_size": "0.01", "lot_size": "0.0001", "min_quantity": "0.0001"}]}

``.csv`` - one row per symbol with a header, e.g. the datalake's symbol table exported from
its DuckDB view (``COPY symbols TO 'symbols.csv' (HEADER)``): ``symbol`` and ``asset_class``
are required; ``currency``, ``venue``, ``tick_size``, ``lot_size``, ``min_quantity``,
``max_quantity`` and each kind's own fields (``multiplier``, ``base``, ``quote``, ...) are
taken when present and not empty, every other column (the datalake's ``sector``, ``name``,
``source``, ``first_date``, ``last_date``) is ignored, and an empty cell means the
instrument kind's default (equity: tick 0.01, lot 1, minimum 1). For ``fx`` and ``crypto``
rows without ``base``/``quote`` they are read from Yahoo-style symbols (``BTC-USD``,
``EURUSD=X``). The OMS reads such an export as a plain file: it never imports the datalake
(a library of the same layer).

Several files may be given; within one file a symbol appears once, and a later file's entry
replaces an earlier one's (list the datalake export first, your own settings after it).
``max_quantity`` absent means no cap beyond the fund's ``max_order_quantity``.

Numbers are wire decimals (:mod:`mts1b_foundation.wire`): a registry can no more hold
``1E-40`` than an order can.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from mts1b_foundation import MtsError, instrument_adapter
from mts1b_foundation.instruments import Instrument
from mts1b_foundation.wire import PositiveDecimal
from pydantic import TypeAdapter, ValidationError

__all__ = ["InstrumentRegistry", "RegisteredInstrument", "RegistryError", "is_multiple"]

_NOT_COMPARED = frozenset({"schema_version", "sector"})
"""Fields of an instrument that do not define the contract (a free-text classification)."""
_COMPARED_WHEN_SET = frozenset({"isin"})
"""Compared only when the order gives one: clients rarely send it; when they do, it must
agree."""
_CSV_IGNORED = frozenset({"sector", "name", "source", "first_date", "last_date"})
_POSITIVE: TypeAdapter[Decimal] = TypeAdapter(PositiveDecimal)
_EXACT = Context(prec=80)  # remainders of domain values (<= 27 digits) never round here
_YAHOO_FX = re.compile(r"^([A-Z]{3})([A-Z]{3})=X$")
_PAIR = re.compile(r"^([A-Z0-9]{2,10})-([A-Z0-9]{2,10})$")


class RegistryError(MtsError):
    """An instrument registry file that cannot be used: ``context`` names the file, the entry
    and the field."""

    code = "OMS.INSTRUMENTS"


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """Whether ``value`` lies on the grid of ``step`` (exactly: Decimal arithmetic at 80
    digits, so ``100.005`` is off a 0.01 tick and ``1E-12`` is off a lot of 1)."""
    return _EXACT.remainder(value, step) == 0


@dataclass(frozen=True, slots=True)
class RegisteredInstrument:
    """One registered symbol: the instrument as the OMS trades it, and an optional cap on one
    order's quantity (``None``: only the fund's ``max_order_quantity`` applies)."""

    instrument: Instrument
    max_quantity: Decimal | None = None

    def mismatch(self, given: Instrument) -> list[str]:
        """The fields in which ``given`` (an order's instrument) differs from this one, in
        field order; empty when they agree. A different kind is ``["asset_class"]``.
        Decimals compare by value (``0.010`` equals ``0.01``)."""
        mine = self.instrument
        # the usual case, one dict comparison (what pydantic's == ends with for two instances
        # of one class without private or extra fields); fields below only otherwise
        if (type(given) is type(mine) and given.__dict__ == mine.__dict__) or given == mine:
            return []
        if type(given) is not type(mine):
            return ["asset_class"]
        differ = []
        for name in type(mine).model_fields:
            if name in _NOT_COMPARED:
                continue
            theirs = getattr(given, name)
            if name in _COMPARED_WHEN_SET and theirs is None:
                continue
            if theirs != getattr(mine, name):
                differ.append(name)
        return differ


class InstrumentRegistry(Mapping[str, RegisteredInstrument]):
    """Symbol -> :class:`RegisteredInstrument`; read-only once built. See the module
    docstring for the file formats."""

    def __init__(self, entries: Iterable[Instrument | RegisteredInstrument] = ()) -> None:
        self._entries: dict[str, RegisteredInstrument] = {}
        for entry in entries:
            reg = entry if isinstance(entry, RegisteredInstrument) else RegisteredInstrument(entry)
            if reg.instrument.symbol in self._entries:
                raise RegistryError(f"{reg.instrument.symbol!r} is registered twice",
                                    symbol=reg.instrument.symbol)
            self._entries[reg.instrument.symbol] = reg

    # --- Mapping -----------------------------------------------------------------------------

    def __getitem__(self, symbol: str) -> RegisteredInstrument:
        return self._entries[symbol]

    def get(self, symbol: str, default: Any = None) -> Any:
        """``Mapping.get`` read from the dict itself: the gates ask for every order, several
        times, and the mixin goes through ``__getitem__`` and an exception for a miss."""
        return self._entries.get(symbol, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"InstrumentRegistry({len(self)} instruments)"

    def instruments(self) -> dict[str, Instrument]:
        """Symbol -> registered instrument: what ``rebalance(instruments=...)`` takes, so the
        orders it makes carry the registered instruments (and pass ``INSTRUMENT_MISMATCH``)."""
        return {symbol: reg.instrument for symbol, reg in self._entries.items()}

    def to_json(self) -> str:
        """The registry in the JSON format :meth:`from_json` reads (``{"instruments": [...]}``)."""
        entries = []
        for reg in self._entries.values():
            item = reg.instrument.model_dump(mode="json", exclude={"schema_version"})
            if reg.max_quantity is not None:
                item["max_quantity"] = str(reg.max_quantity)
            entries.append(item)
        return json.dumps({"instruments": entries}, indent=1)

    # --- building ----------------------------------------------------------------------------

    def updated(self, other: InstrumentRegistry) -> InstrumentRegistry:
        """This registry with ``other``'s entries added, ``other`` winning on a symbol both
        hold (a hand-written file refining a datalake export)."""
        merged = InstrumentRegistry()
        merged._entries = {**self._entries, **other._entries}
        return merged

    @classmethod
    def load(cls, paths: str | Path | Sequence[str | Path]) -> InstrumentRegistry:
        """The registry of one or more files (``.json`` or ``.csv``), later ones replacing
        earlier ones' entries for the same symbol. :class:`RegistryError` names what is
        wrong."""
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        registry = cls()
        for item in items:
            path = Path(item)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RegistryError(f"cannot read instrument registry {path}: "
                                    f"{type(exc).__name__}", file=str(path)) from None
            if path.suffix.lower() == ".csv":
                registry = registry.updated(cls.from_csv(text, source=str(path)))
            else:
                registry = registry.updated(cls.from_json(text, source=str(path)))
        return registry

    @classmethod
    def from_json(cls, data: str | bytes | Sequence[Any] | Mapping[str, Any], *,
                  source: str = "<json>") -> InstrumentRegistry:
        """From the JSON format (text, or the decoded list / ``{"instruments": [...]}``)."""
        decoded: Any = data
        if isinstance(decoded, str | bytes):
            try:
                decoded = json.loads(decoded)
            except ValueError as exc:
                raise RegistryError(f"{source} is not JSON: {exc}", file=source) from None
        if isinstance(decoded, Mapping):
            decoded = decoded.get("instruments")
        if not isinstance(decoded, list):
            raise RegistryError(f"{source}: expected a list of instruments or "
                                '{"instruments": [...]}', file=source)
        return cls(_entry(item, source, i) for i, item in enumerate(decoded))

    @classmethod
    def from_csv(cls, text: str, *, source: str = "<csv>") -> InstrumentRegistry:
        """From the CSV format (see the module docstring)."""
        reader = csv.DictReader(io.StringIO(text))
        fields = set(reader.fieldnames or ())
        missing = {"symbol", "asset_class"} - fields
        if missing:
            raise RegistryError(f"{source}: the header lacks {', '.join(sorted(missing))}",
                                file=source)
        entries = []
        for i, row in enumerate(reader):
            item: dict[str, Any] = {k: v.strip() for k, v in row.items()
                                    if k and k not in _CSV_IGNORED and isinstance(v, str)
                                    and v.strip()}
            _pair_from_symbol(item)
            entries.append(_entry(item, source, i + 2))  # line numbers: the header is 1
        return cls(entries)


def _pair_from_symbol(item: dict[str, Any]) -> None:
    """Fill ``base``/``quote`` of an fx or crypto row from a Yahoo-style symbol
    (``EURUSD=X``, ``BTC-USD``) when the row has neither; fx also takes ``currency``."""
    kind, symbol = item.get("asset_class"), item.get("symbol", "")
    if kind not in {"fx", "crypto"} or "base" in item or "quote" in item:
        return
    found = _YAHOO_FX.match(symbol) if kind == "fx" else None
    found = found or _PAIR.match(symbol)
    if found:
        item["base"], item["quote"] = found.group(1), found.group(2)
        if kind == "fx":
            item.setdefault("currency", found.group(2))


def _entry(item: object, source: str, where: int) -> RegisteredInstrument:
    if not isinstance(item, Mapping):
        raise RegistryError(f"{source} entry {where}: expected an object",
                            file=source, entry=where)
    data = dict(item)
    symbol = str(data.get("symbol", "?"))[:64]
    cap = data.pop("max_quantity", None)
    try:
        instrument = instrument_adapter.validate_python(data)
    except ValidationError as exc:
        raise _invalid(exc, source, where, symbol) from None
    try:
        max_quantity = None if cap is None else _POSITIVE.validate_python(cap)
    except ValidationError as exc:
        raise _invalid(exc, source, where, symbol, "max_quantity") from None
    return RegisteredInstrument(instrument, max_quantity)


def _invalid(exc: ValidationError, source: str, where: int, symbol: str,
             field: str | None = None) -> RegistryError:
    first = exc.errors(include_url=False)[0]
    field = field or ".".join(str(p) for p in first.get("loc", ())) or "<entry>"
    return RegistryError(f"{source} entry {where} ({symbol}): {field}: {first.get('msg')}",
                         file=source, entry=where, symbol=symbol, field=field)
