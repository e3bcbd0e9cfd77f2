"""``mts mts1b-research ...``: strategies, the signal service, reports."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(name="mts1b-research", help="MTS1B research: strategies, signals, reports.",
                  no_args_is_help=True, add_completion=False)
strategies_app = typer.Typer(help="The strategy registry.", no_args_is_help=True,
                             add_completion=False)
app.add_typer(strategies_app, name="strategies")
