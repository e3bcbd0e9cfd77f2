"""mts1b-treasury: funds with their own capital, a double-entry ledger, tax lots, daily NAV."""

from __future__ import annotations

from mts1b_treasury.errors import LedgerError, TreasuryError, TreasuryInputError

__all__ = ["LedgerError", "TreasuryError", "TreasuryInputError"]
__version__ = "0.1.0"
