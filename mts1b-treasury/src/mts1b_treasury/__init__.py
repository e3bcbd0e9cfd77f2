"""mts1b-treasury: funds with their own capital, a double-entry ledger, tax lots with the US
wash-sale rule, and a reproducible daily NAV.

The pure parts (lots, the tax view, Form 8949 rows, the NAV strike, reconciliation) need no
server; the fund registry, the ledger, the strike store and the service need PostgreSQL (and
the service NATS JetStream).
"""

from __future__ import annotations

from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import LedgerError, TreasuryError, TreasuryInputError
from mts1b_treasury.form8949 import gains_rows, write_form8949_csv
from mts1b_treasury.funds import FundRecord, FundRegistry, LimitsNeedRiskRole
from mts1b_treasury.ledger import FillPosting, Ledger, PostOutcome, PostStatus
from mts1b_treasury.limits import loosened_limits
from mts1b_treasury.lots import Disposal, FillEffect, OpenLot, apply_fill, apply_split
from mts1b_treasury.nav import NavFill, NavInputs, strike_nav
from mts1b_treasury.navstore import NavStore, StoredStrike
from mts1b_treasury.reconcile import ReconcileResult, reconcile
from mts1b_treasury.strike import strike_fund
from mts1b_treasury.washsale import GainRow, Split, TaxLot, TaxTrade, TaxView, tax_view

__all__ = [
    "Disposal", "FillEffect", "FillPosting", "FundRecord", "FundRegistry", "GainRow", "Ledger",
    "LedgerError", "LimitsNeedRiskRole", "NavFill", "NavInputs", "NavStore", "OpenLot",
    "PostOutcome", "PostStatus", "ReconcileResult", "Split", "StoredStrike", "TaxLot",
    "TaxTrade", "TaxView", "TreasuryDb", "TreasuryError", "TreasuryInputError", "__version__",
    "apply_fill", "apply_split", "gains_rows", "loosened_limits", "reconcile", "strike_fund",
    "strike_nav", "tax_view", "write_form8949_csv",
]
__version__ = "0.1.0"
