"""``mts mts1b-foundation ...``: the foundation library's commands.

Foundation depends on pydantic and numpy only, so it cannot carry a typer app itself; platform,
which owns the command line and already depends on foundation, provides its group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from mts1b_foundation.schema import export_schemas, load_snapshot
from mts1b_foundation.subjects import iter_subjects

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="The wire format: JSON Schemas and subjects.")


@app.command()
def schema(
    model: Annotated[str | None, typer.Option(help="only this model, e.g. Order")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="write to this file")] = None,
    check: Annotated[bool, typer.Option(
        help="exit 1 if the code's schemas differ from the committed snapshot")] = False,
) -> None:
    """Print the JSON Schema of every wire model (or of one)."""
    schemas = export_schemas()
    if check:
        committed = load_snapshot()
        changed = sorted(k for k in schemas.keys() | committed.keys()
                         if schemas.get(k) != committed.get(k))
        if changed:
            typer.echo(f"schemas differ from the snapshot: {', '.join(changed)}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{len(schemas)} schemas match the snapshot")
        return
    if model is not None:
        if model not in schemas:
            typer.echo(f"unknown model {model!r}; known: {', '.join(sorted(schemas))}", err=True)
            raise typer.Exit(2)
        schemas = {model: schemas[model]}
    text = json.dumps(schemas, indent=1, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(schemas)} schema(s) to {output}")


@app.command()
def subjects() -> None:
    """List every registered subject, its model, and whether a stream stores it."""
    for spec in iter_subjects():
        where = "stream" if spec.stored else "request/reply"
        typer.echo(f"{spec.pattern:40} {spec.model.__name__:20} {where}")
