"""Shared fixtures: the real S&P 500 file ingested once per session, a synthetic demo store.

Real data lives in ``../shared/data`` next to the repository (override with the
``MTS1B_SHARED_DATA`` environment variable); tests that need it are skipped, with the path in the
reason, when it is absent. Nothing here touches the user's default store: every store lives under
pytest's temporary directories, and ``MTS_DATALAKE_ROOT`` is pointed at one for each test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from mts1b_datalake import IngestReport, Store
from mts1b_datalake.synthetic import SyntheticMarket, generate_market

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MTS1B_SHARED_DATA", ROOT.parent / "shared" / "data"))
SP500 = DATA / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz"
PLOTLY = DATA / "plotly" / "dash-stock-ticker-demo.csv"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (set MTS1B_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def data_file() -> Callable[[str], Path]:
    """``data_file("plotly/dash-stock-ticker-demo.csv")``: the path, or skip the test."""
    return lambda rel: need(DATA / rel)


@pytest.fixture(autouse=True)
def _isolated_default_store(tmp_path_factory: pytest.TempPathFactory,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``Store.default()`` resolves to a fresh temporary folder in every test."""
    monkeypatch.setenv("MTS_DATALAKE_ROOT", str(tmp_path_factory.mktemp("default-store")))


@pytest.fixture(scope="session")
def sp500_ingest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, IngestReport]:
    """The real 29 MB S&P 500 file (505 symbols x 1,259 days), ingested once without QC (the
    row rules apply: its 12 open/close-outside-high-low rows are repaired), and the report."""
    from mts1b_datalake.providers import LongCsvProvider

    store = Store(tmp_path_factory.mktemp("sp500"))
    report = store.ingest(LongCsvProvider(need(SP500)), qc=False)
    return store, report


@pytest.fixture(scope="session")
def sp500_store(sp500_ingest: tuple[Store, IngestReport]) -> Store:
    return sp500_ingest[0]


@pytest.fixture(scope="session")
def market() -> SyntheticMarket:
    """The default demo market (300 names, 2012-2024)."""
    return generate_market()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory, market: SyntheticMarket) -> Store:
    store = Store(tmp_path_factory.mktemp("demo"))
    market.write(store)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "lake")
