"""The public surface of mts1b_datalake is deliberate: this test pins it."""

from __future__ import annotations

import mts1b_datalake

EXPECTED = {
    "EXTRA_FIELDS", "Action", "DatalakeError", "EmptyRangeError", "IngestError", "IngestReport",
    "InvalidRangeError", "LongCsvProvider", "Membership", "MixedAssetClassError",
    "ParquetProvider", "ProviderError",
    "QCPolicy", "QCReport", "Rejected", "SourceData", "StaticUniverse", "Store", "StoreError",
    "StoreMarketData", "TopLiquidityUniverse", "Universe", "UnknownFieldError",
    "UnknownSymbolError", "UnknownUniverseError", "UnreadableFileError", "WideCsvProvider",
    "YFinanceCsvProvider", "YahooCsvProvider", "__version__", "adjustment_factors",
    "available_providers", "back_adjust", "build_panel", "get_provider", "open_source",
    "panel_info", "register_universe", "registered_universes", "run_qc", "universe",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(mts1b_datalake.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(mts1b_datalake, name), name


def test_errors_are_mts_errors_with_stable_codes() -> None:
    from mts1b_foundation import MtsError

    codes = set()
    for name in ("DatalakeError", "EmptyRangeError", "IngestError", "InvalidRangeError",
                 "MixedAssetClassError", "ProviderError", "StoreError", "UnknownFieldError",
                 "UnknownSymbolError", "UnknownUniverseError", "UnreadableFileError"):
        cls = getattr(mts1b_datalake, name)
        assert issubclass(cls, MtsError)
        assert cls.code.startswith("DATALAKE.")
        codes.add(cls.code)
    assert len(codes) == 11


def test_cli_is_registered_for_the_mts_root() -> None:
    from importlib.metadata import entry_points

    import typer

    eps = {ep.name: ep for ep in entry_points(group="mts1b.commands")}
    assert eps["mts1b-datalake"].value == "mts1b_datalake.cli:app"
    assert isinstance(eps["mts1b-datalake"].load(), typer.Typer)


def test_key_errors_print_code_and_message_not_a_quoted_key() -> None:
    """The KeyError subclasses print like every MtsError (KeyError alone would quote it)."""
    for cls in (mts1b_datalake.UnknownUniverseError, mts1b_datalake.UnknownSymbolError):
        exc = cls("no such name: X", field="name", value="X")
        assert isinstance(exc, KeyError)
        assert str(exc) == f"[{cls.code}] no such name: X"
