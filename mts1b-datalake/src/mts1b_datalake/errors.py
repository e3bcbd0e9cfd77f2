"""Errors raised by mts1b-datalake, each with a stable ``code``.

Every error subclasses :class:`DatalakeError` (itself a :class:`mts1b_foundation.MtsError`), and
carries the offending field and value in ``context`` so a caller can show *what* was wrong
without parsing the message.
"""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import MtsError

__all__ = [
    "DatalakeError",
    "EmptyRangeError",
    "IngestError",
    "InvalidRangeError",
    "MixedAssetClassError",
    "ProviderError",
    "StoreError",
    "UnknownFieldError",
    "UnknownSymbolError",
    "UnknownUniverseError",
    "UnreadableFileError",
]


class DatalakeError(MtsError):
    """Base of every datalake error.

    Subclasses that are also ``KeyError`` need no ``__str__`` of their own: ``MtsError`` comes
    before ``KeyError`` in their method order, so its ``[code] message`` wins over KeyError's
    quoting.
    """

    code: ClassVar[str] = "DATALAKE.ERROR"


class UnknownUniverseError(DatalakeError, KeyError):
    """No universe is registered under the given name."""

    code: ClassVar[str] = "DATALAKE.UNKNOWN_UNIVERSE"


class UnknownSymbolError(DatalakeError, KeyError):
    """One or more symbols are not in the store (or not in the source)."""

    code: ClassVar[str] = "DATALAKE.UNKNOWN_SYMBOL"


class UnknownFieldError(DatalakeError, ValueError):
    """A panel field or a column mapping names a field that does not exist."""

    code: ClassVar[str] = "DATALAKE.UNKNOWN_FIELD"


class InvalidRangeError(DatalakeError, ValueError):
    """``start`` is after ``end`` (or a date could not be parsed)."""

    code: ClassVar[str] = "DATALAKE.INVALID_RANGE"


class MixedAssetClassError(DatalakeError, ValueError):
    """A panel was asked for without a calendar, and its instruments' asset classes trade on
    different calendars (crypto every day, FX on weekdays, equities on exchange sessions), or
    on none the datalake knows. ``context["value"]`` lists the classes found."""

    code: ClassVar[str] = "DATALAKE.MIXED_ASSET_CLASSES"


class EmptyRangeError(DatalakeError, ValueError):
    """The requested range holds no trading session, or no data for the universe."""

    code: ClassVar[str] = "DATALAKE.EMPTY_RANGE"


class ProviderError(DatalakeError, ValueError):
    """A source file could not be read at all (missing, unknown layout, missing columns)."""

    code: ClassVar[str] = "DATALAKE.PROVIDER"


class UnreadableFileError(ProviderError):
    """A source file is not what a reader can parse at all: binary data, a compressed stream
    that does not decompress, UTF-16 text, no line breaks.

    Raised once for the file, after reading at most its first 64 KiB, with the path in
    ``context["value"]`` and the finding in ``context["reason"]`` (``binary``, ``not_utf8``,
    ``utf16``, ``signature``, ``decompress``, ``no_lines``, ``empty``, ``open``, ``csv``,
    ``parquet``); the message never quotes the file's bytes. A ``ProviderError``, so code that
    catches those catches it too.
    """

    code: ClassVar[str] = "DATALAKE.UNREADABLE_FILE"


class IngestError(DatalakeError, ValueError):
    """An ingest was refused (for example: every row rejected)."""

    code: ClassVar[str] = "DATALAKE.INGEST"


class StoreError(DatalakeError):
    """The store's files are missing or inconsistent."""

    code: ClassVar[str] = "DATALAKE.STORE"
