"""The store: atomic commits, idempotent re-ingest, restatements as versions, DuckDB views."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mts1b_datalake import SourceData, Store, StoreError, StoreMarketData, UnknownSymbolError
from mts1b_datalake.store import default_root
from mts1b_foundation import MarketDataProtocol


def bars(symbols: tuple[str, ...] = ("AAA", "BBB"), days: int = 5, start: str = "2020-01-02",
         price: float = 10.0) -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=days)
    rows = []
    for k, s in enumerate(symbols):
        for i, d in enumerate(dates):
            p = price + k + i * 0.1
            rows.append({"symbol": s, "date": d, "open": p, "high": p + 0.5, "low": p - 0.5,
                         "close": p + 0.2, "volume": 1000.0 + i})
    return pd.DataFrame(rows)


def test_ingest_then_reingest_adds_nothing(store: Store) -> None:
    first = store.write(bars())
    assert (first.added, first.unchanged, first.restated) == (10, 0, 0)
    assert store.version == 1
    again = store.write(bars())
    assert (again.added, again.unchanged, again.restated) == (0, 10, 0)
    assert not again.changed
    assert store.version == 1  # nothing committed
    assert len(store.read_bars()) == 10


def test_restated_values_become_new_versions_and_are_reported(store: Store) -> None:
    store.write(bars())
    changed = bars()
    changed.loc[3, "close"] = 10.75  # inside its low-high range (10.3 +- 0.5)
    changed.loc[7, "volume"] = 5.0
    report = store.write(changed, source="vendor-b")
    assert (report.added, report.unchanged, report.restated) == (0, 8, 2)
    diff = report.restatements.sort_values("field").reset_index(drop=True)
    assert diff[["symbol", "field", "new", "version"]].values.tolist() == [
        ["AAA", "close", 10.75, 2], ["BBB", "volume", 5.0, 2]]
    current = store.read_bars(["AAA"], with_version=True)
    assert current.loc[3, "close"] == 10.75 and current.loc[3, "version"] == 2
    versions = store.versions("AAA", current.loc[3, "date"].date())
    assert versions["version"].tolist() == [1, 2]
    assert versions["close"].tolist() == [pytest.approx(10.5), 10.75]
    assert len(store.history()) == 2
    assert store.ingests()[-1]["restated"] == 2


def test_duplicates_inside_one_ingest_keep_the_last_row(store: Store) -> None:
    frame = pd.concat([bars(("AAA",), 2), bars(("AAA",), 1, price=20.0)], ignore_index=True)
    frame["line"] = [2, 3, 4]
    frame["file"] = "x.csv"
    report = store.write(frame)
    assert report.added == 2
    assert [(r.line, r.reason) for r in report.rejected] == [
        (2, "duplicate (AAA, 2020-01-02); line 4 kept")]
    assert store.read_bars()["close"].iloc[0] == pytest.approx(20.2)


def test_a_crash_before_the_commit_leaves_the_previous_state(store: Store,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    store.write(bars())
    before = store.read_bars()
    files_before = set(store.files())

    def crash(manifest: dict[str, object]) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(store, "_commit_manifest", crash)
    more = bars(("AAA", "CCC"), 5, start="2021-06-01")
    with pytest.raises(RuntimeError, match="power cut"):
        store.write(more)
    monkeypatch.undo()
    # readers see exactly the old state, and no file is half-written or visible
    pd.testing.assert_frame_equal(store.read_bars(), before)
    assert set(store.files()) == files_before
    assert store.version == 1
    assert not any(".tmp" in p for p in store.files())
    assert not (Path(store.root) / ".lock").exists()
    orphans = store.vacuum()
    assert orphans and all(p.startswith(("bars/", "symbols/")) for p in orphans)
    # the retry works
    report = store.write(more)
    assert report.added == 10 and store.version == 2


def test_replaced_files_are_deleted_one_commit_later(store: Store) -> None:
    store.write(bars())
    old = set(store.files())
    store.write(bars(("CCC",)))
    middle = set(store.files())
    assert all((Path(store.root) / p).exists() for p in old)  # still readable one commit on
    store.write(bars(("DDD",)))
    gone = old - middle - set(store.files())
    assert gone and not any((Path(store.root) / p).exists() for p in gone)


def test_symbol_metadata_merges_without_erasing(store: Store) -> None:
    meta = pd.DataFrame({"symbol": ["AAA"], "asset_class": ["etf"], "sector": ["Energy"],
                         "name": ["Triple A"], "source": ["x"]})
    store.write(bars(("AAA",)), symbols=meta)
    store.write(bars(("AAA",), start="2020-02-03"))  # no metadata this time
    table = store.symbol_table().set_index("symbol")
    assert table.loc["AAA", "sector"] == "Energy" and table.loc["AAA", "asset_class"] == "etf"
    assert table.loc["AAA", "first_date"] == dt.date(2020, 1, 2)
    assert table.loc["AAA", "last_date"] == dt.date(2020, 2, 7)
    assert store.symbols(asset_class="etf") == ["AAA"]
    assert store.symbols(asset_class="equity") == []


def test_events_are_versioned_too(store: Store) -> None:
    ev = pd.DataFrame({"symbol": ["AAA"], "date": ["2020-01-06"], "kind": ["dividend"],
                       "value": [0.25]})
    r1 = store.write(bars(), ev)
    assert r1.events_added == 1
    assert store.write(bars(), ev).events_unchanged == 1
    r3 = store.write(bars(), ev.assign(value=0.30))
    assert r3.events_restated == 1
    current = store.events(["AAA"])
    assert current["value"].tolist() == [0.30] and current["version"].tolist() == [2]
    # the superseded event is kept, like a superseded bar
    assert store.manifest()["events_history"]["rows"] == 1
    old = store._read_frame(store.manifest()["events_history"]["path"])
    assert old[["value", "version", "superseded_by"]].values.tolist() == [
        [0.25, 1, r3.ingest_id]]


def test_reads_filter_by_symbol_and_range(store: Store) -> None:
    store.write(bars(days=10))
    part = store.read_bars(["BBB"], "2020-01-06", "2020-01-08")
    assert part["symbol"].unique().tolist() == ["BBB"]
    assert part["date"].dt.strftime("%Y-%m-%d").tolist() == ["2020-01-06", "2020-01-07",
                                                               "2020-01-08"]
    with pytest.raises(UnknownSymbolError, match="ZZZ") as info:
        store.require_symbols(["AAA", "ZZZ"])
    assert info.value.context == {"field": "symbol", "value": "ZZZ"}


def test_duckdb_views(store: Store) -> None:
    store.write(bars(days=10))
    out = store.query("SELECT symbol, count(*) AS n, max(close) AS hi FROM bars "
                      "GROUP BY symbol ORDER BY symbol")
    assert out["n"].tolist() == [10, 10]
    cov = store.coverage()
    assert cov["bars"].tolist() == [10, 10] and cov["asset_class"].tolist() == ["equity"] * 2
    empty = Store(Path(store.root).parent / "empty")
    assert empty.query("SELECT count(*) AS n FROM bars")["n"].tolist() == [0]


def test_default_root_honours_the_environment(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTS_DATALAKE_ROOT", str(tmp_path / "here"))
    assert default_root() == str(tmp_path / "here")
    assert Store.default().root == str(tmp_path / "here")
    monkeypatch.delenv("MTS_DATALAKE_ROOT")
    assert default_root().endswith(os.path.join("mts1b", "datalake"))


def test_fsspec_memory_filesystem() -> None:
    lake = Store("memory://lake-test")
    lake.write(bars())
    assert len(lake.read_bars()) == 10
    assert lake.write(bars()).added == 0
    assert lake.query("SELECT count(*) AS n FROM bars")["n"].tolist() == [10]


def test_missing_store_and_corrupt_manifest(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store"):
        Store(tmp_path / "nope", create=False)
    lake = Store(tmp_path / "lake")
    (tmp_path / "lake" / "_manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt manifest"):
        lake.read_bars()


def test_store_market_data_protocol(store: Store) -> None:
    store.write(bars())
    md = StoreMarketData(store)
    assert isinstance(md, MarketDataProtocol)
    got = list(md.bars(["AAA"], dt.date(2020, 1, 1), dt.date(2020, 1, 31)))
    assert len(got) == 5 and got[0].symbol == "AAA"


def test_source_data_ingest_with_qc(store: Store) -> None:
    frame = bars(("AAA",), 30)
    frame.loc[10, ["open", "high", "low", "close"]] = [-1.0, -1.0, -1.0, -1.0]
    report = store.ingest(SourceData(frame), qc=True)
    assert report.added == 29
    assert any("non_positive" in r.reason for r in report.rejected)
    assert report.qc is not None and len(report.qc.for_check("non_positive")) == 1
    assert np.isfinite(store.read_bars()["close"]).all()


def test_the_manifest_is_shared_read_only_and_never_corrupted(store: Store) -> None:
    store.write(bars())
    first = store.manifest()
    assert store.manifest() is first  # no copy per call while the file is unchanged
    with pytest.raises(TypeError):
        first["version"] = 99  # type: ignore[index]
    with pytest.raises(TypeError):
        first["bars"]["2020"] = {"path": "elsewhere.parquet", "rows": 0}  # type: ignore[index]
    with pytest.raises(AttributeError):
        first["ingests"].append({})  # lists come back as tuples
    # what callers get from the public accessors is theirs to change
    store.meta.update(demo="x")
    store.ingests().clear()
    assert store.meta == {} and len(store.ingests()) == 1
    # a commit replaces the manifest; a reader holding the old one keeps a consistent snapshot
    store.set_meta(demo="y")
    assert store.manifest() is not first and store.version == 2
    assert first["version"] == 1 and store.meta == {"demo": "y"}
    assert store.manifest()["bars"] == first["bars"]
