"""mts1b-datalake: market data in, research panels out.

* providers read long/wide/Yahoo/yfinance CSV and Parquet, reporting every rejected row;
* :class:`Store` keeps bars, events and symbols as partitioned Parquet with atomic, versioned
  ingests, queried with DuckDB;
* :mod:`mts1b_datalake.qc` finds bad ticks, unadjusted splits, spin-offs, OHLC errors, gaps...;
* corporate actions become back-adjustment factors;
* :func:`build_panel` returns a :class:`mts1b_foundation.UniversePanel` for a point-in-time
  universe (``"us-large-cap"``, a list of symbols, or your own);
* :mod:`mts1b_datalake.synthetic` generates a market for demos and tests;
* :mod:`mts1b_datalake.replay` publishes historical bars on the bus.

>>> from mts1b_datalake import build_panel
>>> from mts1b_datalake.synthetic import install_demo_market
>>> store = install_demo_market()
>>> panel = build_panel("us-large-cap", "2014-01-01", "2024-01-01", store=store)

The names below are imported lazily, on first attribute access (as ``mts1b_platform`` does):
``import mts1b_datalake``, or importing one light submodule such as ``mts1b_datalake.errors``,
does not load pandas, pyarrow, fsspec or DuckDB; the modules that read and write data import
them, and they load when one of their names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mts1b_datalake.corporate_actions import adjustment_factors, back_adjust
    from mts1b_datalake.errors import (
        DatalakeError,
        EmptyRangeError,
        IngestError,
        InvalidRangeError,
        MixedAssetClassError,
        ProviderError,
        StoreError,
        UnknownFieldError,
        UnknownSymbolError,
        UnknownUniverseError,
        UnreadableFileError,
    )
    from mts1b_datalake.frames import Rejected, SourceData
    from mts1b_datalake.panel import EXTRA_FIELDS, build_panel, panel_info
    from mts1b_datalake.providers import (
        LongCsvProvider,
        ParquetProvider,
        WideCsvProvider,
        YahooCsvProvider,
        YFinanceCsvProvider,
        available_providers,
        get_provider,
        open_source,
    )
    from mts1b_datalake.qc import Action, QCPolicy, QCReport, run_qc
    from mts1b_datalake.store import IngestReport, Store, StoreMarketData
    from mts1b_datalake.universes import (
        Membership,
        StaticUniverse,
        TopLiquidityUniverse,
        Universe,
        register_universe,
        registered_universes,
        universe,
    )

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "adjustment_factors": "corporate_actions",
    "back_adjust": "corporate_actions",
    "DatalakeError": "errors",
    "EmptyRangeError": "errors",
    "IngestError": "errors",
    "InvalidRangeError": "errors",
    "MixedAssetClassError": "errors",
    "ProviderError": "errors",
    "StoreError": "errors",
    "UnknownFieldError": "errors",
    "UnknownSymbolError": "errors",
    "UnknownUniverseError": "errors",
    "UnreadableFileError": "errors",
    "Rejected": "frames",
    "SourceData": "frames",
    "EXTRA_FIELDS": "panel",
    "build_panel": "panel",
    "panel_info": "panel",
    "LongCsvProvider": "providers",
    "ParquetProvider": "providers",
    "WideCsvProvider": "providers",
    "YahooCsvProvider": "providers",
    "YFinanceCsvProvider": "providers",
    "available_providers": "providers",
    "get_provider": "providers",
    "open_source": "providers",
    "Action": "qc",
    "QCPolicy": "qc",
    "QCReport": "qc",
    "run_qc": "qc",
    "IngestReport": "store",
    "Store": "store",
    "StoreMarketData": "store",
    "Membership": "universes",
    "StaticUniverse": "universes",
    "TopLiquidityUniverse": "universes",
    "Universe": "universes",
    "register_universe": "universes",
    "registered_universes": "universes",
    "universe": "universes",
}

__all__ = [
    "EXTRA_FIELDS",
    "Action",
    "DatalakeError",
    "EmptyRangeError",
    "IngestError",
    "IngestReport",
    "InvalidRangeError",
    "LongCsvProvider",
    "Membership",
    "MixedAssetClassError",
    "ParquetProvider",
    "ProviderError",
    "QCPolicy",
    "QCReport",
    "Rejected",
    "SourceData",
    "StaticUniverse",
    "Store",
    "StoreError",
    "StoreMarketData",
    "TopLiquidityUniverse",
    "Universe",
    "UnknownFieldError",
    "UnknownSymbolError",
    "UnknownUniverseError",
    "UnreadableFileError",
    "WideCsvProvider",
    "YFinanceCsvProvider",
    "YahooCsvProvider",
    "__version__",
    "adjustment_factors",
    "available_providers",
    "back_adjust",
    "build_panel",
    "get_provider",
    "open_source",
    "panel_info",
    "register_universe",
    "registered_universes",
    "run_qc",
    "universe",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mts1b_datalake' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mts1b_datalake.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
