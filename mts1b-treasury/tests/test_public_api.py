"""The public surface: the names the docs and the README import."""

from __future__ import annotations

import re
from pathlib import Path

import mts1b_treasury

SURFACE = {
    "Disposal", "FillEffect", "FillPosting", "FundRecord", "FundRegistry", "GainRow", "Ledger",
    "LedgerError", "LimitsNeedRiskRole", "NavFill", "NavInputs", "NavStore", "OpenLot",
    "PostOutcome", "PostStatus", "ReconcileResult", "Split", "StoredStrike", "TaxLot",
    "TaxTrade", "TaxView", "TreasuryDb", "TreasuryError", "TreasuryInputError", "__version__",
    "apply_fill", "apply_split", "gains_rows", "loosened_limits", "reconcile", "strike_fund",
    "strike_nav", "tax_view", "write_form8949_csv",
}


def test_public_surface_is_pinned() -> None:
    assert set(mts1b_treasury.__all__) == SURFACE
    for name in SURFACE:
        assert getattr(mts1b_treasury, name) is not None, name


def test_readme_usage_runs() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    code = re.search(r"In Python, the pure parts:\n\n```python\n(.*?)```",
                     readme.read_text(encoding="utf-8"), re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    view = namespace["view"]
    assert view.gains[0].adjustment_code == "W"  # type: ignore[attr-defined]
