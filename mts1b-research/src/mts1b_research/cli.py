"""``mts mts1b-research ...``: strategies, the signal service, reports."""

from __future__ import annotations

import typer

from mts1b_research.paper_cli import paper_app
from mts1b_research.registry_cli import install as install_strategy_commands
from mts1b_research.service_cli import install as install_service_commands

__all__ = ["app"]

app = typer.Typer(name="mts1b-research", help="MTS1B research: strategies, signals, reports.",
                  no_args_is_help=True, add_completion=False)
strategies_app = typer.Typer(help="The strategy registry.", no_args_is_help=True,
                             add_completion=False)
app.add_typer(strategies_app, name="strategies")
install_strategy_commands(strategies_app)  # list, show, register, ... (registry_cli)
install_service_commands(app)  # serve, signal, report (service_cli)
app.add_typer(paper_app, name="paper")  # up, status, down (paper_cli)
