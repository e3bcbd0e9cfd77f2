"""``mts mts1b-operations ...``: the commands of the audit chain and the alerts.

Why a registration hook: each part (``audit``, ``alerts``) keeps its commands in its own
``<part>/cli.py``, which exposes ``register(app, serve)``: it adds its command groups to
``app`` and its service to ``serve`` (``mts mts1b-operations serve <part>``). A part without a
``cli`` module has no commands yet and adds none.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["PARTS", "app", "serve_app"]

PARTS = ("audit", "alerts", "report")

app = typer.Typer(name="mts1b-operations", help="MTS1B operations: the audit chain and alerts.",
                  no_args_is_help=True, add_completion=False)
serve_app = typer.Typer(help="Run an operations service.", no_args_is_help=True,
                        add_completion=False)
app.add_typer(serve_app, name="serve")


def _register_parts() -> None:
    for part in PARTS:
        name = f"mts1b_operations.{part}.cli"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app, serve_app)


_register_parts()


if __name__ == "__main__":  # python -m mts1b_operations.cli (tests spawn the services so)
    app()
