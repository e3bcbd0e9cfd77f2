"""The store: partitioned Parquet on disk (or any fsspec URL), a JSON manifest, DuckDB queries.

Layout under ``root``::

    _manifest.json                        the one source of truth: which files are live
    bars/year=2013/part-<uuid>.parquet    current bars of 2013 (one file per year)
    history/year=2013/part-<uuid>.parquet superseded versions of restated 2013 bars
    events/part-<uuid>.parquet            current corporate-action events
    events_history/part-<uuid>.parquet    superseded events
    symbols/part-<uuid>.parquet           symbol metadata (asset class, sector, name, source)

Why a manifest: a reader first reads ``_manifest.json`` and then only the files it names. A writer
writes *new* files (each under a fresh name, through a temporary name and a rename, so no file is
ever visible half-written) and then swaps the manifest in one atomic replace. A crash at any
point before the swap leaves the previous manifest, hence the previous state, intact; the files
of the failed ingest are unreferenced and :meth:`Store.vacuum` removes them. Files replaced by
a commit are deleted one commit later, so a reader that loaded the previous manifest a moment
ago can still read them.

Versioning: each bar carries ``version`` (1 when first seen) and ``ingest`` (the ingest id).
Re-ingesting identical values adds nothing. A different value for an existing (symbol, date) is a
*restatement*: the new row gets ``version + 1``, the old row moves to ``history`` and the ingest
report lists it (symbol, date, field, old, new).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as _pc
import pyarrow.parquet as _pq
from mts1b_foundation import Bar, Quote
from mts1b_platform.logging import get_logger

from mts1b_datalake.errors import InvalidRangeError, StoreError, UnknownSymbolError
from mts1b_datalake.frames import (
    BAR_COLUMNS,
    Rejected,
    SourceData,
    empty_bars,
    empty_events,
    normalize_bars,
    normalize_events,
    normalize_symbols,
)
from mts1b_datalake.rows import (
    check_bars,
    check_events,
    check_ohlc_policy,
    empty_repairs,
    valid_symbols,
)

__all__ = [
    "ENV_ROOT",
    "IngestReport",
    "Store",
    "StoreMarketData",
    "default_root",
]

_log = get_logger(__name__)
pc: Any = _pc  # pyarrow.compute functions are generated at import: untyped
pq: Any = _pq

ENV_ROOT = "MTS_DATALAKE_ROOT"
MANIFEST = "_manifest.json"
FORMAT = "mts1b-datalake/1"
_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
_MAX_INGEST_LOG = 500

BAR_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("date", pa.date32()),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()),
    ("close", pa.float64()), ("volume", pa.float64()),
    ("version", pa.int32()), ("ingest", pa.string()),
])
HISTORY_SCHEMA = pa.schema([*BAR_SCHEMA, ("superseded_by", pa.string())])
EVENT_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("date", pa.date32()), ("kind", pa.string()),
    ("value", pa.float64()), ("version", pa.int32()), ("ingest", pa.string()),
])
EVENT_HISTORY_SCHEMA = pa.schema([*EVENT_SCHEMA, ("superseded_by", pa.string())])
SYMBOL_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("asset_class", pa.string()), ("sector", pa.string()),
    ("name", pa.string()), ("source", pa.string()), ("first_date", pa.date32()),
    ("last_date", pa.date32()),
])


def default_root() -> str:
    """``$MTS_DATALAKE_ROOT`` if set, else ``<user data dir>/mts1b/datalake`` (platformdirs)."""
    env = os.environ.get(ENV_ROOT)
    if env:
        return env
    import platformdirs

    return str(Path(platformdirs.user_data_dir("mts1b", appauthor=False)) / "datalake")


@dataclass
class IngestReport:
    """What one ingest did. ``restatements`` lists (symbol, date, field, old, new, version);
    ``rejected`` every refused row (file, line, reason, field, value); ``repairs`` every bar
    the OHLC rule repaired (:data:`mts1b_datalake.rows.REPAIR_COLUMNS`)."""

    ingest_id: str
    source: str
    files: list[str] = field(default_factory=list)
    rows_in: int = 0
    added: int = 0
    unchanged: int = 0
    restated: int = 0
    restatements: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["symbol", "date", "field", "old", "new", "version"]))
    events_added: int = 0
    events_unchanged: int = 0
    events_restated: int = 0
    symbols_added: int = 0
    symbols_updated: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    repairs: pd.DataFrame = field(default_factory=empty_repairs)
    qc: Any = None
    seconds: float = 0.0
    store_version: int = 0

    @property
    def repaired(self) -> int:
        """Bars whose high/low the OHLC rule widened (``repairs`` lists each, old and new)."""
        return len(self.repairs)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.restated or self.events_added or self.events_restated
                    or self.symbols_added or self.symbols_updated)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (restatements, rejections and repairs included, capped at 1,000
        each)."""
        rest = self.restatements.head(1000).copy()
        if len(rest):
            rest["date"] = pd.to_datetime(rest["date"]).dt.strftime("%Y-%m-%d")
        fixed = self.repairs.head(1000).copy()
        if len(fixed):
            fixed["date"] = pd.to_datetime(fixed["date"]).dt.strftime("%Y-%m-%d")
        return {
            "ingest_id": self.ingest_id, "source": self.source, "files": self.files,
            "rows_in": self.rows_in, "added": self.added, "unchanged": self.unchanged,
            "restated": self.restated, "events_added": self.events_added,
            "events_unchanged": self.events_unchanged, "events_restated": self.events_restated,
            "symbols_added": self.symbols_added, "symbols_updated": self.symbols_updated,
            "rejected": len(self.rejected),
            "rejected_rows": [r.as_dict() for r in self.rejected[:1000]],
            "repaired": self.repaired,
            "repaired_rows": fixed.to_dict(orient="records"),
            "restatements": rest.to_dict(orient="records"),
            "qc": self.qc.summary_dict() if self.qc is not None else None,
            "seconds": round(self.seconds, 3), "store_version": self.store_version,
        }

    def log_entry(self) -> dict[str, Any]:
        return {
            "ingest_id": self.ingest_id, "source": self.source, "files": self.files[:20],
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "rows_in": self.rows_in, "added": self.added, "unchanged": self.unchanged,
            "restated": self.restated, "events_added": self.events_added,
            "events_restated": self.events_restated, "rejected": len(self.rejected),
            "repaired": self.repaired,
        }


def _new_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality where NaN equals NaN (and tiny float noise is ignored)."""
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= 1e-12 * np.maximum(np.abs(a), np.abs(b)) + 1e-15
    out: np.ndarray = both_nan | close
    return out


@dataclass(frozen=True)
class _Merge:
    """What merging incoming rows into a versioned table (a bar partition, the events) found."""

    counts: tuple[int, int, int]  # (added, unchanged, restated)
    rows: pd.DataFrame  # the table after the merge; ``existing`` itself when nothing changed
    superseded: pd.DataFrame  # existing rows that restatements replace, with ``superseded_by``
    restated: pd.DataFrame  # incoming rows that restate: new values and the ``<col>_old`` ones
    new_versions: np.ndarray  # the version each restated row gets

    @property
    def changed(self) -> bool:
        return bool(self.counts[0] or self.counts[2])


def _merge_versions(existing: pd.DataFrame, incoming: pd.DataFrame, keys: Sequence[str],
                    values: Sequence[str], ingest_id: str) -> _Merge:
    """Merge ``incoming`` into the versioned ``existing`` rows, matching on ``keys``.

    The one versioning rule of the store, for bars and for events alike: a new key gets version
    1; a key whose ``values`` differ (NaN equals NaN) gets the old version + 1 and its old row
    is superseded by this ingest; an equal row changes nothing. Both tables carry ``version``
    and ``ingest`` columns.
    """
    cols = [*keys, *values]
    joined = incoming[cols].merge(existing, on=list(keys), how="left", suffixes=("", "_old"),
                                  indicator=True)
    is_new = (joined["_merge"] == "left_only").to_numpy()
    differs = np.zeros(len(joined), dtype=bool)
    for col in values:
        differs |= ~is_new & ~_same(joined[col].to_numpy(dtype=np.float64),
                                    joined[f"{col}_old"].to_numpy(dtype=np.float64))
    counts = (int(is_new.sum()), int((~is_new & ~differs).sum()), int(differs.sum()))
    restated = joined.loc[differs]
    new_versions = (restated["version"].to_numpy(dtype=np.int64) + 1).astype(np.int32)
    if not (counts[0] or counts[2]):
        return _Merge(counts, existing, existing.iloc[:0], restated, new_versions)
    new_rows = joined.loc[is_new, cols].assign(version=np.int32(1), ingest=ingest_id)
    rest_rows = restated[cols].assign(version=new_versions, ingest=ingest_id)
    superseded = pd.MultiIndex.from_frame(existing[list(keys)]).isin(
        pd.MultiIndex.from_frame(restated[list(keys)]))
    merged = pd.concat([existing.loc[~superseded], rest_rows, new_rows], ignore_index=True)
    return _Merge(counts, merged, existing.loc[superseded].assign(superseded_by=ingest_id),
                  restated, new_versions)


class Store:
    """Partitioned Parquet + DuckDB market-data store with atomic, versioned ingests.

    >>> store = Store("/tmp/lake")                     # or Store.default(), or "s3://bucket/lake"
    >>> report = store.ingest(LongCsvProvider("all_stocks_5yr.csv.gz"), qc=True)
    >>> store.read_bars(["AAPL"], "2017-01-01", "2017-12-31")
    """

    def __init__(self, root: str | Path, *, storage_options: Mapping[str, Any] | None = None,
                 create: bool = True) -> None:
        self.root = str(root)
        self.storage_options = dict(storage_options or {})
        self._fs, self._path = fsspec.core.url_to_fs(self.root, **self.storage_options)
        self._local = "file" in (self._fs.protocol if isinstance(self._fs.protocol, tuple)
                                 else (self._fs.protocol,))
        if self._local:
            self._path = os.path.abspath(self._path)
        if create:
            self._fs.makedirs(self._path, exist_ok=True)
        elif not self._fs.exists(self._path):
            raise StoreError(f"no store at {self.root}", field="root", value=self.root)
        self._manifest_cache: tuple[tuple[int, int], Mapping[str, Any]] | None = None

    @classmethod
    def default(cls) -> Store:
        """The store at ``$MTS_DATALAKE_ROOT``, else under the user's data directory."""
        return cls(default_root())

    def __repr__(self) -> str:
        return f"Store({self.root!r}, version={self.version})"

    # -- paths and files ---------------------------------------------------------------------
    def _abs(self, rel: str) -> str:
        """The full path of ``rel``, a path inside the store; StoreError for anything that
        could leave it (absolute, ``..``, a backslash, a NUL). Every file the store touches goes
        through here, so no name, from the code or from a tampered manifest, escapes the root."""
        if (not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel
                or ".." in rel.split("/")):
            raise StoreError(f"refusing a path that is not inside the store: {rel[:80]!r}",
                             field="path", value=rel[:200])
        return f"{self._path}/{rel}" if not self._local else os.path.join(self._path, rel)

    def _write_parquet(self, table: pa.Table, rel_dir: str) -> str:
        """Write ``table`` under a fresh name via a temporary file; return the relative path."""
        name = f"part-{uuid.uuid4().hex}.parquet"
        rel = f"{rel_dir}/{name}"
        final = self._abs(rel)
        tmp = self._abs(f"{rel_dir}/.tmp-{name}")
        self._fs.makedirs(self._abs(rel_dir), exist_ok=True)
        if self._local:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, final)
        else:
            with self._fs.open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd")
            self._fs.mv(tmp, final)
        return rel

    def _read_parquet(self, rel: str, columns: Sequence[str] | None = None,
                      filters: Any = None) -> pa.Table:
        path = self._abs(rel)
        try:
            if self._local:
                return pq.read_table(path, columns=list(columns) if columns else None,
                                     filters=filters, partitioning=None)
            return pq.read_table(path, columns=list(columns) if columns else None,
                                 filters=filters, filesystem=self._fs, partitioning=None)
        except FileNotFoundError as exc:
            raise StoreError(f"store file missing: {rel} (run vacuum or re-ingest)",
                             field="path", value=rel) from exc

    def _read_frame(self, rel: str) -> pd.DataFrame:
        """A bars/events/history file as a DataFrame, ``date`` in the canonical
        ``datetime64[s]`` (Arrow's date32 would otherwise come back as ``[ms]``)."""
        frame = self._read_parquet(rel).to_pandas(date_as_object=False)
        frame["date"] = frame["date"].astype("datetime64[s]")
        return frame

    def _append_history(self, entry: dict[str, Any] | None, rows: pd.DataFrame,
                        schema: pa.Schema, rel_dir: str, replaced: list[str]) -> dict[str, Any]:
        """Write the history file ``entry`` plus the superseded ``rows`` as a new file.

        Returns the new manifest entry; the old file is retired through ``replaced``.
        """
        if entry is not None:
            rows = pd.concat([self._read_frame(entry["path"]), rows], ignore_index=True)
            replaced.append(entry["path"])
        table = pa.Table.from_pandas(rows[list(schema.names)], schema=schema,
                                     preserve_index=False)
        return {"path": self._write_parquet(table, rel_dir), "rows": table.num_rows}

    # -- manifest ----------------------------------------------------------------------------
    @staticmethod
    def _empty_manifest() -> Mapping[str, Any]:
        empty: Mapping[str, Any] = _frozen({
            "format": FORMAT, "version": 0, "updated": None, "bars": {}, "history": {},
            "events": None, "events_history": None, "symbols": None, "retired": [],
            "ingests": [], "meta": {}})
        return empty

    def manifest(self) -> Mapping[str, Any]:
        """The current manifest, read-only: mappings cannot be assigned to and lists are tuples.

        Every call returns the same object until the file changes (a local store re-reads it
        when its mtime or size moves), so readers share it without copying and none of them
        can alter what the next one sees. A writer works on its own copy
        (:meth:`_manifest_for_write`).
        """
        path = self._abs(MANIFEST)
        try:
            if self._local:
                stat = os.stat(path)
                key = (stat.st_mtime_ns, stat.st_size)
                if self._manifest_cache and self._manifest_cache[0] == key:
                    return self._manifest_cache[1]
                with open(path, encoding="utf-8") as fh:
                    data: Mapping[str, Any] = _frozen(_checked_manifest(json.load(fh), path))
                self._manifest_cache = (key, data)
                return data
            with self._fs.open(path, "r", encoding="utf-8") as fh:
                loaded: Mapping[str, Any] = _frozen(_checked_manifest(json.load(fh), path))
                return loaded
        except FileNotFoundError:
            return self._empty_manifest()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"corrupt manifest at {path}: {type(exc).__name__} at "
                             f"position {getattr(exc, 'pos', getattr(exc, 'start', '?'))}",
                             field="manifest", value=path) from None

    def _manifest_for_write(self) -> dict[str, Any]:
        """A mutable copy of the manifest for a commit (copied here, on write, only)."""
        copy: dict[str, Any] = _thawed(self.manifest())
        return copy

    def _commit_manifest(self, manifest: dict[str, Any]) -> None:
        """Atomically replace the manifest (the commit point of every write)."""
        data = json.dumps(manifest, indent=1, sort_keys=True, default=str).encode()
        path = self._abs(MANIFEST)
        if self._local:
            tmp = self._abs(f".manifest-{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        else:
            self._fs.pipe_file(path, data)

    @property
    def version(self) -> int:
        """Number of commits so far (0 for an empty store)."""
        return int(self.manifest()["version"])

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form metadata kept in the manifest (e.g. which demo market is installed)."""
        meta: dict[str, Any] = _thawed(self.manifest().get("meta", {}))
        return meta

    def set_meta(self, **values: Any) -> None:
        """Merge ``values`` into :attr:`meta` in one atomic commit."""
        with self._lock():
            manifest = self._manifest_for_write()
            manifest.setdefault("meta", {}).update(values)
            self._finish_commit(manifest, [])

    def ingests(self) -> list[dict[str, Any]]:
        """Log of past ingests (newest last, the last 500 kept)."""
        log: list[dict[str, Any]] = _thawed(self.manifest().get("ingests", ()))
        return log

    @contextlib.contextmanager
    def _lock(self, timeout: float = 60.0) -> Iterator[None]:
        """One writer at a time (a lock file; local stores only)."""
        if not self._local:
            yield
            return
        path = self._abs(".lock")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                break
            except FileExistsError:
                if self._stale_lock(path):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                    continue
                if time.monotonic() > deadline:
                    raise StoreError(f"store {self.root} is locked by another writer "
                                     f"({path})", field="lock", value=path) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    @staticmethod
    def _stale_lock(path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as fh:
                pid = int(fh.read().strip() or "0")
        except (OSError, ValueError):
            return True
        if pid <= 0:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _finish_commit(self, manifest: dict[str, Any], replaced: list[str]) -> None:
        previous_retired = list(manifest.get("retired", []))
        manifest["retired"] = replaced
        manifest["version"] = int(manifest.get("version", 0)) + 1
        manifest["updated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        manifest["format"] = FORMAT
        self._commit_manifest(manifest)
        for rel in previous_retired:  # retired one commit ago: no reader can still need them
            with contextlib.suppress(FileNotFoundError, OSError):
                self._fs.rm(self._abs(rel))

    # -- writing -----------------------------------------------------------------------------
    def ingest(self, source: Any, *, qc: Any = True, ohlc_policy: str = "repair",
               source_name: str | None = None, calendar: str = "XNYS") -> IngestReport:
        """Read ``source`` (a provider, or :class:`SourceData`), check it, and commit it.

        The one ingest path: ``mts mts1b-datalake ingest`` calls this, with the same defaults,
        so Python and the command line accept, repair and refuse exactly the same rows. In
        order:

        1. the provider's per-row rejections (unparseable rows, invalid symbols, infinite or
           out-of-domain values, negative volume);
        2. the row rules of :mod:`mts1b_datalake.rows` again, for sources that did not apply
           them (a ``SourceData`` built in Python, a plugin), and the OHLC rule:
           ``ohlc_policy="repair"`` (default) widens high/low to contain open and close and
           lists each repair in ``report.repairs``, ``"reject"`` refuses such rows;
        3. the quality checks: ``qc=True`` (default, as on the command line) runs the default
           :class:`mts1b_datalake.qc.QCPolicy`, a ``QCPolicy`` runs that one, ``False`` or
           ``None`` runs none. Rows a ``reject`` policy refuses are reported as rejected,
           ``repair`` policies change values before they are stored;
        4. :meth:`write`, one atomic commit.
        """
        started = time.monotonic()
        policy_name = check_ohlc_policy(ohlc_policy)
        data: SourceData = source.read() if hasattr(source, "read") else source
        name = source_name or getattr(source, "source", None) or type(source).__name__
        rejected = list(data.rejected)
        checked = check_bars(data.bars, ohlc_policy=policy_name)
        rejected += checked.rejected
        bars, events = checked.bars, data.events
        qc_report = None
        if qc is not None and qc is not False:
            from mts1b_datalake.qc import QCPolicy, run_qc

            policy = QCPolicy() if qc is True else qc
            result = run_qc(bars, policy=policy, calendar=calendar)
            qc_report = result.report
            bars = result.bars
            rejected += result.rejected
            if len(result.events):
                events = pd.concat([events, result.events], ignore_index=True)
        report = self.write(bars, events, data.symbols, source=str(name), files=data.files,
                            rejected=rejected, ohlc_policy=policy_name)
        if len(checked.repairs):
            report.repairs = pd.concat([checked.repairs, report.repairs], ignore_index=True) \
                if len(report.repairs) else checked.repairs
        report.qc = qc_report
        report.seconds = time.monotonic() - started
        return report

    def write(self, bars: pd.DataFrame, events: pd.DataFrame | None = None,
              symbols: pd.DataFrame | None = None, *, source: str = "api",
              files: Sequence[str] = (), rejected: Sequence[Rejected] = (),
              meta: Mapping[str, Any] | None = None, ohlc_policy: str = "repair") -> (
        IngestReport
    ):
        """Merge canonical tables into the store in one atomic commit.

        The row rules of :mod:`mts1b_datalake.rows` hold for everything written, whoever calls:
        a bar with an invalid symbol, an infinite or out-of-domain value or a negative volume
        is reported as rejected, open/close outside high-low is handled by ``ohlc_policy``, an
        event with an invalid symbol or an infinite value is reported as rejected, and symbol
        metadata for an invalid symbol is dropped (no bar can carry it). Duplicate
        (symbol, date) rows inside ``bars`` keep the last one; the others are reported as
        rejected rows.
        """
        started = time.monotonic()
        ingest_id = _new_id()
        report = IngestReport(ingest_id=ingest_id, source=source, files=list(files),
                              rejected=list(rejected))
        bars = normalize_bars(bars) if len(bars) else empty_bars()
        report.rows_in = len(bars)
        checked = check_bars(bars, ohlc_policy=ohlc_policy)
        bars, report.repairs = checked.bars, checked.repairs
        report.rejected += checked.rejected
        bars = self._drop_duplicates(bars, report)
        events_in = normalize_events(events) if events is not None and len(events) else \
            empty_events()
        events_in, bad_events = check_events(events_in, source=source)
        report.rejected += bad_events
        events_in = events_in.drop_duplicates(["symbol", "date", "kind"], keep="last")
        symbols_in = normalize_symbols(symbols, bars)
        symbols_in = symbols_in[symbols_in["symbol"].isin(valid_symbols(
            symbols_in["symbol"].tolist()))].reset_index(drop=True)
        if len(bars):
            extent = bars.groupby("symbol")["date"].agg(["min", "max"])
            symbols_in["first_date"] = symbols_in["symbol"].map(extent["min"])
            symbols_in["last_date"] = symbols_in["symbol"].map(extent["max"])

        with self._lock():
            manifest = self._manifest_for_write()
            replaced: list[str] = []
            if len(bars):
                self._merge_bars(manifest, bars, ingest_id, report, replaced)
            if len(events_in):
                self._merge_events(manifest, events_in, ingest_id, report, replaced)
            if len(symbols_in):
                self._merge_symbols(manifest, symbols_in, report, replaced)
            report.store_version = int(manifest.get("version", 0)) + 1
            report.seconds = time.monotonic() - started
            if meta:
                manifest.setdefault("meta", {}).update(meta)
            if report.changed or meta:
                log = manifest.setdefault("ingests", [])
                log.append(report.log_entry())
                del log[:-_MAX_INGEST_LOG]
                self._finish_commit(manifest, replaced)
            else:
                report.store_version = int(manifest.get("version", 0))
        _log.info("ingest committed" if report.changed else "ingest changed nothing",
                  store=self.root, ingest_id=ingest_id, source=source, added=report.added,
                  unchanged=report.unchanged, restated=report.restated,
                  rejected=len(report.rejected), repaired=report.repaired)
        return report

    @staticmethod
    def _drop_duplicates(bars: pd.DataFrame, report: IngestReport) -> pd.DataFrame:
        dup = bars.duplicated(["symbol", "date"], keep="last").to_numpy()
        if not dup.any():
            return bars
        kept_line: dict[tuple[str, Any], Any] = {}
        if "line" in bars.columns:
            last = bars[~dup]
            kept_line = dict(zip(zip(last["symbol"], last["date"], strict=True), last["line"],
                                 strict=True))
        for row in bars[dup].itertuples(index=False):
            line = int(getattr(row, "line", -1)) if "line" in bars.columns else -1
            kept = kept_line.get((row.symbol, row.date))
            report.rejected.append(Rejected(
                str(getattr(row, "file", "<input>")), line,
                f"duplicate ({row.symbol}, {pd.Timestamp(row.date).date()})"
                + (f"; line {int(kept)} kept" if kept is not None else "; last row kept"),
                row.symbol))
        return bars[~dup].reset_index(drop=True)

    def _merge_bars(self, manifest: dict[str, Any], bars: pd.DataFrame, ingest_id: str,
                    report: IngestReport, replaced: list[str]) -> None:
        years = bars["date"].dt.year.to_numpy()
        restatements: list[pd.DataFrame] = []
        for year in np.unique(years):
            key = str(int(year))
            incoming = bars.loc[years == year, list(BAR_COLUMNS)].reset_index(drop=True)
            entry = manifest["bars"].get(key)
            if entry is None:
                merged = incoming.assign(version=np.int32(1), ingest=ingest_id)
                report.added += len(merged)
                history_rows = None
            else:
                existing = self._read_frame(entry["path"])
                merged, history_rows, counts, rest = self._merge_partition(
                    existing, incoming, ingest_id)
                report.added += counts[0]
                report.unchanged += counts[1]
                report.restated += counts[2]
                if rest is not None:
                    restatements.append(rest)
                if counts[0] == 0 and counts[2] == 0:
                    continue
            merged = merged.sort_values(["symbol", "date"], kind="stable")
            table = pa.Table.from_pandas(merged[list(BAR_SCHEMA.names)], schema=BAR_SCHEMA,
                                         preserve_index=False)
            rel = self._write_parquet(table, f"bars/year={key}")
            if entry is not None:
                replaced.append(entry["path"])
            manifest["bars"][key] = {"path": rel, "rows": table.num_rows}
            if history_rows is not None and len(history_rows):
                manifest["history"][key] = self._append_history(
                    manifest["history"].get(key), history_rows, HISTORY_SCHEMA,
                    f"history/year={key}", replaced)
        if restatements:
            report.restatements = pd.concat(restatements, ignore_index=True)

    @staticmethod
    def _merge_partition(existing: pd.DataFrame, incoming: pd.DataFrame, ingest_id: str) -> (
        tuple[pd.DataFrame, pd.DataFrame | None, tuple[int, int, int], pd.DataFrame | None]
    ):
        """Merge one partition. Returns (rows, superseded rows, (added, same, restated), diff)."""
        m = _merge_versions(existing, incoming, ("symbol", "date"), _VALUE_COLUMNS, ingest_id)
        if not m.changed:
            return existing, None, m.counts, None
        restated = m.restated
        diff_parts = []
        for col in _VALUE_COLUMNS:
            a = restated[f"{col}_old"].to_numpy(dtype=np.float64)
            b = restated[col].to_numpy(dtype=np.float64)
            changed = ~_same(a, b)
            if changed.any():
                diff_parts.append(pd.DataFrame({
                    "symbol": restated["symbol"].to_numpy()[changed],
                    "date": restated["date"].to_numpy()[changed], "field": col,
                    "old": a[changed], "new": b[changed],
                    "version": m.new_versions[changed]}))
        diff = pd.concat(diff_parts, ignore_index=True) if diff_parts else None
        return m.rows, m.superseded, m.counts, diff

    def _merge_events(self, manifest: dict[str, Any], events: pd.DataFrame, ingest_id: str,
                      report: IngestReport, replaced: list[str]) -> None:
        entry = manifest.get("events")
        if entry is None:
            existing = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in (
                ("symbol", object), ("date", "datetime64[s]"), ("kind", object),
                ("value", np.float64), ("version", np.int32), ("ingest", object))})
        else:
            existing = self._read_frame(entry["path"])
        m = _merge_versions(existing, events, ("symbol", "date", "kind"), ("value",), ingest_id)
        report.events_added += m.counts[0]
        report.events_unchanged += m.counts[1]
        report.events_restated += m.counts[2]
        if not m.changed:
            return
        merged = m.rows.sort_values(["symbol", "date", "kind"], kind="stable")
        table = pa.Table.from_pandas(merged[list(EVENT_SCHEMA.names)], schema=EVENT_SCHEMA,
                                     preserve_index=False)
        if entry is not None:
            replaced.append(entry["path"])
        manifest["events"] = {"path": self._write_parquet(table, "events"),
                              "rows": table.num_rows}
        if len(m.superseded):
            manifest["events_history"] = self._append_history(
                manifest.get("events_history"), m.superseded, EVENT_HISTORY_SCHEMA,
                "events_history", replaced)

    def _merge_symbols(self, manifest: dict[str, Any], symbols: pd.DataFrame,
                       report: IngestReport, replaced: list[str]) -> None:
        entry = manifest.get("symbols")
        if entry is None:
            existing = pd.DataFrame({c: pd.Series([], dtype=object) for c in
                                     SYMBOL_SCHEMA.names})
        else:
            existing = self._read_parquet(entry["path"]).to_pandas()
        current = existing.set_index("symbol")
        incoming = symbols.set_index("symbol")
        index = current.index.union(incoming.index)
        before = current.reindex(index).astype(object)
        after = before.copy()
        for col in ("asset_class", "sector", "name", "source"):
            # Known values win over missing ones: a file without sectors must not erase them.
            newer = incoming[col].reindex(index) if col in incoming else pd.Series(
                None, index=index, dtype=object)
            after[col] = newer.where(newer.notna(), before[col])
        for col, pick in (("first_date", min), ("last_date", max)):
            newer = incoming[col].reindex(index) if col in incoming else pd.Series(
                None, index=index, dtype=object)
            values = []
            for old_v, new_v in zip(before[col], newer, strict=True):
                cands = [pd.Timestamp(x).date() for x in (old_v, new_v) if x is not None
                         and not pd.isna(x)]
                values.append(pick(cands) if cands else None)
            after[col] = pd.Series(values, index=index, dtype=object)
        after["asset_class"] = after["asset_class"].where(after["asset_class"].notna(), "equity")
        added = incoming.index.difference(current.index)
        changed_rows = ~(after.map(_text) == before.map(_text)).all(axis=1)
        if not changed_rows.any():
            return
        report.symbols_added += len(added)
        report.symbols_updated += int(changed_rows.sum()) - len(added)
        out = after.reset_index().rename(columns={"index": "symbol"})[list(SYMBOL_SCHEMA.names)]
        table = pa.Table.from_pandas(out.astype(object).where(out.notna(), None),
                                     schema=SYMBOL_SCHEMA, preserve_index=False)
        if entry is not None:
            replaced.append(entry["path"])
        manifest["symbols"] = {"path": self._write_parquet(table, "symbols"),
                               "rows": table.num_rows}

    # -- reading -----------------------------------------------------------------------------
    def _bar_paths(self, start: dt.date | None, end: dt.date | None,
                   manifest: Mapping[str, Any] | None = None) -> list[str]:
        parts = (manifest or self.manifest())["bars"]
        out = []
        for key, entry in sorted(parts.items()):
            year = int(key)
            if start is not None and year < start.year:
                continue
            if end is not None and year > end.year:
                continue
            out.append(entry["path"])
        return out

    def read_bars_arrow(self, symbols: Sequence[str] | None = None,
                        start: dt.date | str | None = None, end: dt.date | str | None = None,
                        columns: Sequence[str] | None = None) -> pa.Table:
        """Current bars as an Arrow table (the fast path for panels)."""
        lo, hi = _as_date(start), _as_date(end)
        if lo is not None and hi is not None and lo > hi:
            raise InvalidRangeError(f"start {lo} is after end {hi}", field="start",
                                    value=str(lo))
        wanted = list(columns) if columns else list(BAR_SCHEMA.names)
        for col in ("symbol", "date"):
            if col not in wanted:
                wanted.insert(0, col)
        paths = self._bar_paths(lo, hi)
        if not paths:
            return BAR_SCHEMA.empty_table().select(wanted)
        tables = [self._read_parquet(p, columns=wanted) for p in paths]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        mask = None
        if lo is not None:
            mask = pc.greater_equal(table["date"], pa.scalar(lo, pa.date32()))
        if hi is not None:
            m = pc.less_equal(table["date"], pa.scalar(hi, pa.date32()))
            mask = m if mask is None else pc.and_(mask, m)
        if symbols is not None:
            m = pc.is_in(table["symbol"], value_set=pa.array(list(symbols), pa.string()))
            mask = m if mask is None else pc.and_(mask, m)
        return table.filter(mask) if mask is not None else table

    def read_bars(self, symbols: Sequence[str] | None = None, start: dt.date | str | None = None,
                  end: dt.date | str | None = None, *, with_version: bool = False) -> (
        pd.DataFrame
    ):
        """Current bars as a canonical DataFrame sorted by (symbol, date)."""
        table = self.read_bars_arrow(symbols, start, end)
        frame = table.to_pandas(date_as_object=False)
        frame["date"] = frame["date"].astype("datetime64[s]")
        if not with_version:
            frame = frame[list(BAR_COLUMNS)]
        return frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)

    def events(self, symbols: Sequence[str] | None = None, start: dt.date | str | None = None,
               end: dt.date | str | None = None, kinds: Sequence[str] | None = None) -> (
        pd.DataFrame
    ):
        """Current corporate-action events (symbol, date, kind, value, version, ingest)."""
        entry = self.manifest().get("events")
        if entry is None:
            return empty_events().assign(version=pd.Series([], dtype=np.int32),
                                         ingest=pd.Series([], dtype=object))
        frame = self._read_frame(entry["path"])
        keep = np.ones(len(frame), dtype=bool)
        if symbols is not None:
            keep &= frame["symbol"].isin(list(symbols)).to_numpy()
        lo, hi = _as_date(start), _as_date(end)
        if lo is not None:
            keep &= (frame["date"] >= pd.Timestamp(lo)).to_numpy()
        if hi is not None:
            keep &= (frame["date"] <= pd.Timestamp(hi)).to_numpy()
        if kinds is not None:
            keep &= frame["kind"].isin(list(kinds)).to_numpy()
        return frame[keep].reset_index(drop=True)

    def symbol_table(self) -> pd.DataFrame:
        """One row per symbol: asset_class, sector, name, source, first_date, last_date."""
        entry = self.manifest().get("symbols")
        if entry is None:
            return SYMBOL_SCHEMA.empty_table().to_pandas()
        return self._read_parquet(entry["path"]).to_pandas()

    def symbols(self, asset_class: str | Sequence[str] | None = None) -> list[str]:
        """Symbols with bars in the store, optionally of one or more asset classes."""
        table = self.symbol_table()
        if asset_class is not None:
            classes = [asset_class] if isinstance(asset_class, str) else list(asset_class)
            table = table[table["asset_class"].isin(classes)]
        return sorted(table["symbol"].tolist())

    def require_symbols(self, symbols: Sequence[str]) -> None:
        """UnknownSymbolError naming every symbol of ``symbols`` that the store lacks."""
        known = set(self.symbol_table()["symbol"])
        missing = [s for s in symbols if s not in known]
        if missing:
            raise UnknownSymbolError(
                f"unknown symbol(s) {missing} (not in store {self.root})", field="symbol",
                value=missing if len(missing) > 1 else missing[0])

    def history(self, symbols: Sequence[str] | None = None) -> pd.DataFrame:
        """Superseded bar versions (restatements), with the ingest that superseded each."""
        parts = [self._read_parquet(e["path"]) for _, e in
                 sorted(self.manifest()["history"].items())]
        if not parts:
            return HISTORY_SCHEMA.empty_table().to_pandas()
        frame = pa.concat_tables(parts).to_pandas(date_as_object=False)
        frame["date"] = frame["date"].astype("datetime64[s]")
        if symbols is not None:
            frame = frame[frame["symbol"].isin(list(symbols))]
        return frame.sort_values(["symbol", "date", "version"]).reset_index(drop=True)

    def versions(self, symbol: str, date: dt.date | str) -> pd.DataFrame:
        """Every stored version of one bar, oldest first (history plus current)."""
        day = pd.Timestamp(_as_date(date))
        hist = self.history([symbol])
        hist = hist[hist["date"] == day].drop(columns=["superseded_by"])
        cur = self.read_bars([symbol], day.date(), day.date(), with_version=True)
        return pd.concat([hist, cur], ignore_index=True).sort_values("version").reset_index(
            drop=True)

    def connect(self) -> Any:
        """A DuckDB connection with views ``bars``, ``history``, ``events``, ``symbols``."""
        import duckdb

        con = duckdb.connect()
        manifest = self.manifest()

        def view(name: str, paths: list[str], schema: pa.Schema) -> None:
            if not paths:
                con.register(f"{name}_empty", schema.empty_table())
                # names are the fixed view names of this method, never user input
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_empty")  # noqa: S608
                return
            if self._local:
                files = ", ".join("'" + self._abs(p).replace("'", "''") + "'" for p in paths)
                con.execute(  # quoted file paths of the manifest, not user input
                    f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{files}])")  # noqa: S608
            else:
                con.register(name, pa.concat_tables([self._read_parquet(p) for p in paths]))

        view("bars", [e["path"] for _, e in sorted(manifest["bars"].items())], BAR_SCHEMA)
        view("history", [e["path"] for _, e in sorted(manifest["history"].items())],
             HISTORY_SCHEMA)
        view("events", [manifest["events"]["path"]] if manifest.get("events") else [],
             EVENT_SCHEMA)
        view("symbols", [manifest["symbols"]["path"]] if manifest.get("symbols") else [],
             SYMBOL_SCHEMA)
        return con

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run SQL over the views of :meth:`connect` and return a DataFrame."""
        con = self.connect()
        try:
            return con.execute(sql, list(params or [])).df()
        finally:
            con.close()

    def coverage(self) -> pd.DataFrame:
        """Per symbol: first and last date, number of bars, asset class (DuckDB)."""
        return self.query(
            "SELECT b.symbol, min(b.date) AS first_date, max(b.date) AS last_date, "
            "count(*) AS bars, any_value(s.asset_class) AS asset_class "
            "FROM bars b LEFT JOIN symbols s USING (symbol) GROUP BY b.symbol ORDER BY b.symbol")

    def summary(self) -> dict[str, Any]:
        """Counts for a quick look (``mts mts1b-datalake panel info`` prints it)."""
        m = self.manifest()
        rows = sum(int(e["rows"]) for e in m["bars"].values())
        years = sorted(m["bars"])
        return {"root": self.root, "version": int(m["version"]), "bars": rows,
                "symbols": int(m["symbols"]["rows"]) if m.get("symbols") else 0,
                "events": int(m["events"]["rows"]) if m.get("events") else 0,
                "restated_versions": sum(int(e["rows"]) for e in m["history"].values()),
                "years": f"{years[0]}..{years[-1]}" if years else "",
                "ingests": len(m.get("ingests", []))}

    def vacuum(self) -> list[str]:
        """Delete files no manifest references (leftovers of crashed ingests); return them."""
        m = self.manifest()
        live = {e["path"] for e in m["bars"].values()} | {e["path"] for e in
                                                         m["history"].values()}
        for key in ("events", "events_history", "symbols"):
            if m.get(key):
                live.add(m[key]["path"])
        live |= set(m.get("retired", []))
        removed: list[str] = []
        for sub in ("bars", "history", "events", "events_history", "symbols"):
            base = self._abs(sub)
            if not self._fs.exists(base):
                continue
            for path in self._fs.find(base):
                rel = os.path.relpath(path, self._path) if self._local else \
                    path[len(self._path.rstrip("/")) + 1:]
                rel = rel.replace(os.sep, "/")
                if rel not in live:
                    self._fs.rm(path)
                    removed.append(rel)
        for path in self._fs.glob(self._abs(".manifest-*.tmp")):
            self._fs.rm(path)
            removed.append(os.path.basename(path))
        return removed

    def files(self) -> list[str]:
        """Relative paths of every live file (for tests and tooling)."""
        m = self.manifest()
        out = [e["path"] for e in m["bars"].values()] + [e["path"] for e in
                                                         m["history"].values()]
        out += [m[k]["path"] for k in ("events", "events_history", "symbols") if m.get(k)]
        return sorted(out)


_DATA_FILE = re.compile(r"(?:(?:bars|history)/year=\d{1,5}|events|events_history|symbols)"
                        r"/part-[0-9a-f]{32}\.parquet")
"""Every file a manifest may name: what :meth:`Store._write_parquet` writes, nothing else."""


def _checked_manifest(data: Any, path: str) -> Any:
    """``data`` if it is a manifest whose every file path has the store's own layout.

    Why: the manifest decides which files are read, deleted (``retired``) and kept by
    ``vacuum``. A hand-edited or hostile manifest naming ``../../home/x`` must not make the
    store read or delete outside its root, so a path that :meth:`Store._write_parquet` could
    not have written makes the whole manifest corrupt (StoreError), before any file is touched.
    """
    if not isinstance(data, dict):
        raise StoreError(f"corrupt manifest at {path}: not a JSON object", field="manifest",
                         value=path)
    named: list[Any] = []
    for key in ("bars", "history"):
        parts = data.get(key) or {}
        if not isinstance(parts, dict):
            raise StoreError(f"corrupt manifest at {path}: {key!r} is not an object",
                             field="manifest", value=path)
        for year, entry in parts.items():
            if not re.fullmatch(r"\d{1,5}", str(year)):
                raise StoreError(f"corrupt manifest at {path}: partition {str(year)[:40]!r} of "
                                 f"{key!r} is not a year", field="manifest", value=path)
            named.append(entry.get("path") if isinstance(entry, dict) else entry)
    for key in ("events", "events_history", "symbols"):
        entry = data.get(key)
        if entry is not None:
            named.append(entry.get("path") if isinstance(entry, dict) else entry)
    named += list(data.get("retired") or [])
    for rel in named:
        if not isinstance(rel, str) or not _DATA_FILE.fullmatch(rel):
            raise StoreError(f"corrupt manifest at {path}: {str(rel)[:80]!r} is not a file of "
                             "the store's layout", field="manifest", value=path)
    return data


def _frozen(value: Any) -> Any:
    """Decoded JSON made read-only: dicts behind ``MappingProxyType``, lists as tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    """The inverse of :func:`_frozen`: plain dicts and lists, a deep copy a writer may change."""
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


def _text(value: Any) -> str:
    """Comparable text of a metadata cell (None/NaN/NaT -> "", dates as ISO)."""
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.date().isoformat()
    return str(value)


def _as_date(value: dt.date | str | pd.Timestamp | None) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        day: dt.date = value.date()
        return day
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise InvalidRangeError(f"not a date: {value!r}", field="date", value=str(value)) \
            from exc


class StoreMarketData:
    """:class:`mts1b_foundation.MarketDataProtocol` over a :class:`Store` (raw prices)."""

    name = "store"

    def __init__(self, store: Store | str | None = None, *, calendar: str = "XNYS") -> None:
        self.store = store if isinstance(store, Store) else (
            Store(store) if store else Store.default())
        self.calendar = calendar
        self.skipped_bars = 0

    def symbols(self) -> Sequence[str]:
        return self.store.symbols()

    def bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> Iterator[Bar]:
        from mts1b_datalake.bars import row_to_bar

        frame = self.store.read_bars(list(symbols), start, end).sort_values(
            ["date", "symbol"], kind="stable")
        for row in frame.itertuples(index=False):
            bar = row_to_bar(row.symbol, row.date.date(), row.open, row.high, row.low, row.close,
                             row.volume, calendar=self.calendar)
            if bar is None:
                self.skipped_bars += 1
                continue
            yield bar

    def latest_quote(self, symbol: str) -> Quote | None:
        return None


ProgressCallback = Callable[[str, int, int], None]
