"""``mts mts1b-treasury ...``: funds, allocations, the NAV strike, lots and gains, the service."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(name="mts1b-treasury", help="MTS1B treasury: funds, ledger, lots, NAV.",
                  no_args_is_help=True, add_completion=False)
