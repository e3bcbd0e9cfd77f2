"""Hostile and broken input (issue #15, failure 8).

Each hostile value is refused per row with its file, line, field and value; open/close outside
high-low is repaired and reported (or refused by policy); a junk file gets one clear error; no
name reaches the filesystem outside the store; the Python API and the command line accept,
repair and refuse exactly the same rows.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mts1b_datalake import (
    IngestReport,
    ParquetProvider,
    ProviderError,
    SourceData,
    Store,
    StoreError,
    UnknownFieldError,
    UnreadableFileError,
    WideCsvProvider,
    YahooCsvProvider,
    YFinanceCsvProvider,
    open_source,
)
from typer.testing import CliRunner

LONG_300 = "A" * 300
HOSTILE_CSV = "\n".join([
    "date,open,high,low,close,volume,Name",
    "2021-03-01,10,11,9,10.5,100,AAA",                  # 2 kept
    "2021-03-02,inf,11,9,10.5,100,AAA",                 # 3 open inf
    "2021-03-03,10,11,9,-inf,100,AAA",                  # 4 close -inf
    "2021-03-04,10,11,9,1e999,100,AAA",                 # 5 close overflows to inf
    "2021-03-05,10,11,9,10.5,-10,AAA",                  # 6 volume -10
    "2021-03-08,10,11,9,10.5,100,../../etc/passwd",     # 7
    '2021-03-08,10,11,9,10.5,100,"X;DROP TABLE bars;--"',  # 8
    "2021-03-08,10,11,9,10.5,100,bar nl",               # 9
    f"2021-03-08,10,11,9,10.5,100,{LONG_300}",          # 10
    "2021-03-09,10,11,9,12,100,AAA",                    # 11 close above high: repaired
    "2021-03-10,,,,10.4,100,AAA",                       # 12 NaN open/high/low: kept as is
    "2021-03-11,10,11,9,nan,100,AAA",                   # 13 close "nan": missing
    "2021-03-12,1e20,1e20,9,10,100,AAA",                # 14 beyond the numeric domain
    "2021-03-12,10,11,9,10.5,100,BRK.B",                # 15 kept: a real symbol
    "2021-03-12,10,11,9,10.5,100,EURUSD=X",             # 16 kept
]) + "\n"

EXPECTED_REJECTIONS = {  # line -> (field, value, reason)
    3: ("open", "inf", "open 'inf' is not a finite number"),
    4: ("close", "-inf", "close '-inf' is not a finite number"),
    5: ("close", "1e999", "close '1e999' is not a finite number"),
    6: ("volume", "-10", "volume '-10' is negative"),
    7: ("symbol", "../../etc/passwd", "symbol '../../etc/passwd' is not a valid symbol: a "
        "symbol may hold only ASCII letters, digits and . - _ = ^ &; this one has '/'"),
    8: ("symbol", "X;DROP TABLE bars;--", "symbol 'X;DROP TABLE bars;--' is not a valid "
        "symbol: a symbol may hold only ASCII letters, digits and . - _ = ^ &; this one has "
        "' ', ';'"),
    9: ("symbol", "bar nl", "symbol 'bar nl' is not a valid symbol: a symbol may hold only "
        "ASCII letters, digits and . - _ = ^ &; this one has ' '"),
    10: ("symbol", "A" * 40 + "...", f"symbol '{'A' * 40}'... (300 characters) is not a valid "
         "symbol: a symbol has at most 64 characters, this one 300"),
    13: ("close", None, "close is missing"),
    14: ("open", "1e20", "open '1e20' is outside the numeric domain (magnitude 1E+15 or "
         "more)"),
}


@pytest.fixture
def hostile_csv(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.csv"
    path.write_text(HOSTILE_CSV)
    return path


def by_line(report_rows: list[dict[str, object]]) -> dict[int, tuple[object, object, object]]:
    return {int(r["line"]): (r["field"], r["value"], r["reason"])  # type: ignore[call-overload]
            for r in report_rows}


# -- per-row rules in the readers ----------------------------------------------------------

def test_long_csv_rejects_each_hostile_row_naming_file_line_field_and_value(
        hostile_csv: Path) -> None:
    data = open_source(hostile_csv).read()
    assert by_line([r.as_dict() for r in data.rejected]) == EXPECTED_REJECTIONS
    assert {r.file for r in data.rejected} == {str(hostile_csv)}
    # an invalid symbol is never carried as the rejection's symbol, a valid one is
    assert all(r.symbol is None for r in data.rejected if r.field == "symbol")
    assert {r.symbol for r in data.rejected if r.field != "symbol"} == {"AAA"}
    assert data.bars["line"].tolist() == [2, 11, 12, 15, 16]
    assert sorted(data.bars["symbol"].unique()) == ["AAA", "BRK.B", "EURUSD=X"]
    nan_row = data.bars[data.bars["line"] == 12].iloc[0]
    assert np.isnan([nan_row["open"], nan_row["high"], nan_row["low"]]).all()
    assert nan_row["close"] == 10.4  # NaN open/high/low next to a close is data, as before


def test_parquet_rejects_infinite_values_negative_volume_and_control_characters(
        tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "symbol": ["AAA", "AAA", "AAA", "bar\nnl", "X;DROP TABLE bars;--", "AAA"],
        "date": pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04",
                                "2021-03-04", "2021-03-05"]),
        "open": [10.0, np.inf, 10.0, 10.0, 10.0, 10.0], "high": [11.0] * 6, "low": [9.0] * 6,
        "close": [10.5, 10.5, 10.5, 10.5, 10.5, -np.inf],
        "volume": [100.0, 100.0, -10.0, 100.0, 100.0, 100.0]})
    path = tmp_path / "hostile.parquet"
    frame.to_parquet(path)
    data = ParquetProvider(path).read()
    got = {(r.line, r.field, r.value) for r in data.rejected}
    assert got == {(1, "open", "inf"), (2, "volume", "-10.0"), (3, "symbol", "bar\nnl"),
                   (4, "symbol", "X;DROP TABLE bars;--"), (5, "close", "-inf")}
    assert "'bar\\nnl'" in next(r.reason for r in data.rejected if r.line == 3)  # escaped
    assert data.bars["line"].tolist() == [0]


def test_per_symbol_files_check_the_symbol_from_the_name_and_every_value(
        tmp_path: Path) -> None:
    body = ("Date,Open,High,Low,Close,Adj Close,Volume\n"
            "2021-03-01,10,11,9,10.5,10.5,100\n"
            "2021-03-02,10,11,9,Infinity,10.5,100\n"
            "2021-03-03,10,11,9,10.5,10.5,-5\n")
    good = tmp_path / "brk.b.csv"
    good.write_text(body)
    data = YahooCsvProvider(good).read()
    assert data.bars["symbol"].unique().tolist() == ["BRK.B"]
    assert {(r.line, r.field, r.value) for r in data.rejected} == {
        (3, "close", "Infinity"), (4, "volume", "-5")}
    bad = tmp_path / "two words.csv"
    bad.write_text(body)
    data = YahooCsvProvider(bad).read()
    assert data.bars.empty and len(data.rejected) == 3
    assert all("'TWO WORDS' (from the file name; pass symbol=...) is not a valid symbol"
               in r.reason for r in data.rejected if r.line == 2)
    assert len(YahooCsvProvider(bad, symbol="TWO").read().bars) == 1
    with pytest.raises(ProviderError, match="is not a valid symbol") as info:
        YahooCsvProvider(good, symbol="../../etc/passwd")
    assert info.value.context == {"field": "symbol", "value": "../../etc/passwd"}

    yf = tmp_path / "ETH-USD.csv"
    yf.write_text("Date,Open,High,Low,Close,Volume,Dividends,Stock Splits\n"
                  "2021-03-01 00:00:00+00:00,10,11,9,10.5,100,0.0,0.0\n"
                  "2021-03-02 00:00:00+00:00,10,11,9,10.5,100,inf,0.0\n")
    data = YFinanceCsvProvider(yf).read()
    assert [(r.line, r.field, r.value) for r in data.rejected] == [(3, "dividend", "inf")]
    assert data.events.empty  # an infinite dividend never becomes an event


def test_wide_csv_refuses_a_column_that_is_no_symbol_and_non_finite_cells(
        tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("Date,AAA,../../etc/passwd\n2021-03-01,10,1\n2021-03-02,-inf,2\n")
    data = WideCsvProvider(path).read()
    assert data.bars["symbol"].tolist() == ["AAA"]
    assert {(r.line, r.field, r.value) for r in data.rejected} == {
        (3, "close", "-inf"), (2, "symbol", "../../etc/passwd"),
        (3, "symbol", "../../etc/passwd")}
    vol = tmp_path / "volumes.csv"
    vol.write_text("Date,AAA\n2021-03-01,10\n2021-03-02,-10\n")
    data = WideCsvProvider(vol, field="volume").read()
    assert [(r.line, r.reason) for r in data.rejected] == [(3, "volume '-10' is negative")]


# -- the store: one code path for Python and the command line ------------------------------

def cli(*args: str) -> object:
    from mts1b_platform.cli import app

    return CliRunner().invoke(app, ["mts1b-datalake", *args], catch_exceptions=False)


@pytest.mark.parametrize("policy", ["repair", "reject"])
def test_python_api_and_cli_refuse_and_repair_the_same_rows(hostile_csv: Path, tmp_path: Path,
                                                           policy: str) -> None:
    api_store = Store(tmp_path / "api")
    api = api_store.ingest(open_source(hostile_csv), ohlc_policy=policy).as_dict()
    out = tmp_path / "cli.json"
    result = cli("ingest", str(hostile_csv), "--store", str(tmp_path / "cli"), "--json",
                 str(out), "--ohlc-policy", policy)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    by_cli = json.loads(out.read_text())[0]
    assert by_cli["rejected_rows"] == api["rejected_rows"]
    assert by_cli["repaired_rows"] == api["repaired_rows"]
    assert by_cli["qc"] == api["qc"] and api["qc"] is not None  # QC runs in both by default
    pd.testing.assert_frame_equal(Store(tmp_path / "cli").read_bars(), api_store.read_bars())

    expected = dict(EXPECTED_REJECTIONS)
    if policy == "repair":
        assert api["repaired"] == 1
        fixed = api["repaired_rows"][0]
        assert (fixed["line"], fixed["old_high"], fixed["high"], fixed["low"]) == (11, 11, 12, 9)
        assert fixed["detail"] == "open 10 close 12 outside low 9 - high 11"
        assert "1 row(s) repaired" in result.output  # type: ignore[attr-defined]
        assert api_store.read_bars(["AAA"], "2021-03-09", "2021-03-09")["high"].tolist() == [12]
    else:
        assert api["repaired"] == 0
        expected[11] = ("close", "12", "open 10 close 12 outside low 9 - high 11 "
                                       "(ohlc_policy reject)")
        assert api_store.read_bars(["AAA"], "2021-03-09", "2021-03-09").empty
    assert by_line(api["rejected_rows"]) == expected
    assert sorted(api_store.symbols()) == ["AAA", "BRK.B", "EURUSD=X"]


def test_unknown_ohlc_policy_is_refused_by_name(hostile_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownFieldError, match="unknown ohlc_policy 'widen'") as info:
        Store(tmp_path / "a").ingest(open_source(hostile_csv), ohlc_policy="widen")
    assert info.value.context == {"field": "ohlc_policy", "value": "widen"}
    result = cli("ingest", str(hostile_csv), "--store", str(tmp_path / "b"), "--ohlc-policy",
                 "widen")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "unknown ohlc_policy 'widen'" in result.output  # type: ignore[attr-defined]


def hostile_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": ["AAA", "../../etc/passwd", "bar\nnl", LONG_300, "AAA", "AAA", "AAA"],
        "date": pd.to_datetime(["2021-03-01"] * 4 + ["2021-03-02", "2021-03-03",
                                                     "2021-03-04"]),
        "open": [10.0, 10.0, 10.0, 10.0, np.inf, 10.0, 10.0], "high": [11.0] * 7,
        "low": [9.0] * 7, "close": [10.5, 10.5, 10.5, 10.5, 10.5, 10.5, 8.0],
        "volume": [100.0, 100.0, 100.0, 100.0, 100.0, -10.0, 100.0]})


def test_frames_written_from_python_obey_the_same_rules(store: Store) -> None:
    """``Store.write`` and ``Store.ingest(SourceData)`` are gates too, not only the readers."""
    report = store.write(hostile_frame())
    assert report.added == 2 and report.repaired == 1
    assert sorted((r.field, r.value) for r in report.rejected) == [
        ("open", "inf"), ("symbol", "../../etc/passwd"), ("symbol", "A" * 40 + "..."),
        ("symbol", "bar\nnl"), ("volume", "-10")]
    assert store.symbols() == ["AAA"]
    stored = store.read_bars()
    assert stored["low"].tolist() == [9.0, 8.0]  # the close below low widened the low
    other = Store(Path(store.root).parent / "other")
    again = other.ingest(SourceData(hostile_frame()), qc=False)
    assert [r.as_dict() for r in again.rejected] == [r.as_dict() for r in report.rejected]
    pd.testing.assert_frame_equal(other.read_bars(), stored)
    events = pd.DataFrame({"symbol": ["AAA", "../x", "AAA"], "date": ["2021-03-01"] * 3,
                           "kind": ["dividend", "dividend", "split"],
                           "value": [0.5, 0.5, np.inf]})
    ev = store.write(hostile_frame().iloc[:1], events)
    assert ev.events_added == 1 and {r.field for r in ev.rejected} == {"symbol", "value"}


def test_ingest_runs_the_quality_checks_by_default(store: Store) -> None:
    frame = hostile_frame().iloc[:1].copy()
    frame = pd.concat([frame, frame.assign(date=pd.Timestamp("2021-03-02"), low=0.0)])
    report = store.ingest(SourceData(frame))
    assert report.qc is not None
    assert [r.reason for r in report.rejected] == ["qc non_positive"]
    assert store.ingest(SourceData(frame), qc=False).qc is None


# -- no name reaches the filesystem outside the store --------------------------------------

def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_nothing_is_written_outside_the_store_root(hostile_csv: Path, tmp_path: Path) -> None:
    before = tree(tmp_path)
    lake = tmp_path / "deep" / "lake"
    store = Store(lake)
    report = store.ingest(open_source(hostile_csv))
    assert report.added == 5
    created = tree(tmp_path) - before
    assert created and all(p == "deep" or p.startswith(("deep/lake",)) for p in created)
    for rel in store.files():  # every live file has the store's own layout
        assert rel.split("/")[0] in ("bars", "events", "symbols")
        assert ".." not in rel and "passwd" not in rel and "DROP" not in rel
    # symbols reach SQL only as values: the hostile one is not there, the table is intact
    assert store.query("SELECT count(*) AS n FROM bars")["n"].tolist() == [5]


def test_a_tampered_manifest_cannot_make_the_store_read_or_delete_outside_it(
        store: Store, tmp_path: Path) -> None:
    store.write(hostile_frame().iloc[:1])
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    manifest_path = Path(store.root) / "_manifest.json"
    good = json.loads(manifest_path.read_text())
    for tamper in ({"retired": ["../../victim.txt"]},
                   {"bars": {"2021": {"path": "../victim.txt", "rows": 1}}},
                   {"symbols": {"path": "/etc/passwd", "rows": 1}},
                   {"bars": {"../x": good["bars"]["2021"]}}):
        manifest_path.write_text(json.dumps({**good, **tamper}))
        with pytest.raises(StoreError, match="corrupt manifest"):
            store.write(hostile_frame().iloc[:1].assign(date=pd.Timestamp("2021-04-01")))
        with pytest.raises(StoreError, match="corrupt manifest"):
            store.read_bars()
        assert victim.read_text() == "keep me"
    with pytest.raises(StoreError, match="not inside the store"):
        store._abs("bars/../../victim.txt")


def test_calendar_names_never_shape_the_cache_path(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    from mts1b_datalake.calendar import _disk_cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MTS_DATALAKE_CALENDAR_CACHE", raising=False)
    lo, hi = np.datetime64("2020-01-01"), np.datetime64("2020-12-31")
    plain = _disk_cache_path("XNYS", lo, hi)
    hostile = _disk_cache_path("../../../etc/x", lo, hi)
    assert plain is not None and hostile is not None
    assert plain.name.startswith("XNYS-") and hostile.parent == plain.parent
    assert ".." not in hostile.name and "/" not in hostile.name
    assert _disk_cache_path("a-b", lo, hi) != _disk_cache_path("a_b", lo, hi)


# -- junk files: one clear error, after reading little -------------------------------------

def _junk(tmp_path: Path, kind: str) -> Path:
    rng = np.random.default_rng(15)
    noise = rng.bytes(5_000_000)
    good = b"date,open,high,low,close,volume,Name\n" + b"2021-03-01,10,11,9,10.5,100,AAA\n" * 3000
    header = "date,open,high,low,close,volume,Name\n2021-03-01,10,11,9,10.5,100,AAA\n"
    zipped = gzip.compress(good * 30)
    files: dict[str, tuple[str, bytes]] = {
        "random": ("random.csv", noise),
        "gzip_of_garbage": ("garbage.csv.gz", gzip.compress(noise[:200_000])),
        "not_gzip": ("fake.csv.gz", noise[:10_000]),
        "truncated_gzip": ("cut.csv.gz", zipped[: len(zipped) // 2]),
        "utf16": ("utf16.csv", header.encode("utf-16")),
        "utf16_no_bom": ("utf16le.csv", header.encode("utf-16-le")),
        "parquet_named_csv": ("data.csv", b"PAR1" + noise[:1000]),
        "empty": ("empty.csv", b""),
        "latin1": ("latin1.csv", (header + "2021-03-02,1,1,1,1,1,Soci\xe9t\xe9\n")
                   .encode("latin-1")),
        "junk_after_good_rows": ("tail.csv", good + noise[:100_000]),
        "junk_parquet": ("junk.parquet", noise[:10_000]),
    }
    name, content = files[kind]
    path = tmp_path / name
    path.write_bytes(content)
    return path


JUNK = {
    "random": ("binary", "is binary, not CSV text: it holds NUL bytes"),
    "gzip_of_garbage": ("binary", "is binary, not CSV text"),
    "not_gzip": ("decompress", "is not valid .gz data (it does not decompress: BadGzipFile)"),
    "truncated_gzip": ("decompress", "is truncated or corrupt further down"),
    "utf16": ("utf16", "is UTF-16 text (it starts with a byte-order mark); save it as UTF-8"),
    "utf16_no_bom": ("utf16", "looks like UTF-16 text without a byte-order mark"),
    "parquet_named_csv": ("signature", "is a Parquet file (read it with format='parquet')"),
    "empty": ("empty", "is empty"),
    "latin1": ("not_utf8", "is not UTF-8 text: the bytes at offset 94 are not valid UTF-8"),
    "junk_after_good_rows": ("not_utf8", "is not UTF-8 text: the bytes at offset"),
    "junk_parquet": ("parquet", "cannot be read as Parquet: Could not open Parquet input"),
}


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_a_junk_file_gets_one_clear_error(tmp_path: Path, kind: str,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    path = _junk(tmp_path, kind)
    reason, words = JUNK[kind]
    with pytest.raises(UnreadableFileError) as info:
        open_source(path).read()
    err = info.value
    assert err.code == "DATALAKE.UNREADABLE_FILE" and isinstance(err, ProviderError)
    assert err.context == {"field": "path", "value": str(path), "reason": reason}
    text = str(err)
    assert text.startswith(f"[DATALAKE.UNREADABLE_FILE] {path} ") and words in text
    assert text.isascii() and text.isprintable() and "\\x" not in text and "b'" not in text
    assert capfd.readouterr().err == ""  # nothing printed on the side (no "Exception ignored")


def test_a_big_junk_file_is_refused_after_reading_its_head(tmp_path: Path) -> None:
    """5 MB of random bytes without a line end: ``readline`` used to read all of it (200 MB in
    the report) before failing; now at most the 64 KiB head is read."""
    path = tmp_path / "big.csv"
    path.write_bytes(np.random.default_rng(1).bytes(5_000_000).replace(b"\n", b" ")
                     .replace(b"\r", b" "))
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableFileError):
            open_source(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    text = tmp_path / "text.csv"  # 5 MB of printable junk lines: the header decides
    rng = np.random.default_rng(2)
    text.write_bytes(b"\n".join(bytes(rng.integers(33, 127, 200, dtype=np.uint8))
                                for _ in range(25_000)))
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError, match="no column names a symbol") as info:
            open_source(text).read()  # sniffed as a wide CSV: no known column
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert len(str(info.value)) < 600 and str(info.value).isprintable()


def test_the_cli_prints_one_error_line_for_a_junk_file(tmp_path: Path) -> None:
    path = _junk(tmp_path, "random")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTS_LOG_")}
    done = subprocess.run([sys.executable, "-m", "mts1b_platform.cli", "mts1b-datalake",
                           "ingest", str(path), "--store", str(tmp_path / "lake")],
                          capture_output=True, text=True, timeout=300, check=False, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: [DATALAKE.UNREADABLE_FILE] {path} is binary")
    assert not (tmp_path / "lake" / "_manifest.json").exists()


# -- every well-formed row of the real files is still accepted -----------------------------

REAL_FILES: dict[str, tuple[int, dict[str, int], int]] = {
    # file: (rows read, {rejection reason: count}, rows repaired) with the default ingest
    # (row rules, OHLC repair, default QC). Every rejection is a defect the data README lists.
    "backtesting_py/BTCUSD.csv": (156, {}, 0),
    "backtesting_py/EURUSD.csv": (5000, {"qc duplicate": 4749}, 0),  # hourly bars, one per day
    "backtesting_py/GOOG.csv": (2148, {}, 0),
    "backtrader/2005-2006-day-001.txt": (512, {}, 0),
    "backtrader/2006-day-001.txt": (255, {}, 0),
    "backtrader/2006-day-002.txt": (129, {}, 0),
    "backtrader/2006-min-005.txt": (2142, {"qc duplicate": 2121}, 0),  # 5-minute bars
    "backtrader/2006-week-001.txt": (52, {}, 0),
    "backtrader/nvda-1999-2014.txt": (4012, {}, 0),
    "backtrader/nvda-2014.txt": (252, {}, 0),
    "backtrader/orcl-1995-2014.txt": (5036, {}, 0),
    "backtrader/orcl-2003-2005.txt": (756, {}, 0),
    "backtrader/orcl-2014.txt": (252, {}, 0),
    "backtrader/yhoo-1996-2014.txt": (4713, {}, 0),
    "backtrader/yhoo-1996-2015.txt": (4965, {}, 0),
    "backtrader/yhoo-2003-2005.txt": (756, {}, 0),
    "backtrader/yhoo-2014.txt": (252, {}, 0),
    "benchmark/GSPC.csv": (24114, {"qc non_positive": 5075}, 0),  # Open == 0, 1962-1982
    "benchmark/SPY_MAX.csv": (6827, {"close is missing": 3}, 0),  # three all-null holidays
    "crypto_fx_yf/BTC-USD.csv": (3735, {}, 0),
    "crypto_fx_yf/ETH-USD.csv": (2586, {}, 0),
    "crypto_fx_yf/EURUSD=X.csv": (5456, {}, 111),  # FX high/low missing open/close
    "crypto_fx_yf/GBPUSD=X.csv": (5469, {}, 92),
    "crypto_fx_yf/JPY=X.csv": (7290, {}, 249),
    "plotly/dash-stock-ticker-demo.csv": (3634, {}, 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("rel", sorted(REAL_FILES))
def test_every_well_formed_row_of_the_real_files_is_accepted(
        rel: str, data_file: Callable[[str], Path], tmp_path: Path) -> None:
    rows, rejections, repaired = REAL_FILES[rel]
    store = Store(tmp_path / "lake")
    report = store.ingest(open_source(data_file(rel)))
    got: dict[str, int] = {}
    for r in report.rejected:  # "qc duplicate: (EURUSD, 2017-04-19) ..." counts as "qc duplicate"
        reason = r.reason.split(":")[0]
        got[reason] = got.get(reason, 0) + 1
    assert got == rejections
    assert report.repaired == repaired
    assert len(store.read_bars()) == rows - sum(rejections.values())


def test_the_sp500_file_is_accepted_whole_with_its_12_ohlc_rows_repaired(
        sp500_ingest: tuple[Store, IngestReport]) -> None:
    _, report = sp500_ingest
    assert (report.added, len(report.rejected), report.repaired) == (619_040, 0, 12)
    assert (report.repairs["high"] >= report.repairs["old_high"]).all()
    assert (report.repairs["low"] <= report.repairs["old_low"]).all()
