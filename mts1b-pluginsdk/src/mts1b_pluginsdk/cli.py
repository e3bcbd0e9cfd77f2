"""``mts1b-pluginsdk ...`` (also ``mts mts1b-pluginsdk ...``): new plugin projects, their
template updates, and the list of installed plugins.

What a command reports for people is printed on stdout; an error is one line on stderr and exit
status 1 (an ``MtsError`` shows its code and message, anything else only its type).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from mts1b_foundation.errors import MtsError

__all__ = ["app", "main"]

app = typer.Typer(help="Plugins: generate a plugin project, update it from the template, list "
                       "the installed plugins.", no_args_is_help=True)
new_app = typer.Typer(help="Generate a plugin project from the template.", no_args_is_help=True)
app.add_typer(new_app, name="new")

_Dest = Annotated[Path | None, typer.Option(
    "--dest", help="the project's folder (default ./mts1b-NAME-<kind>); must not exist or be "
                   "empty")]
_NoGit = Annotated[bool, typer.Option("--no-git", help="do not make the project a git "
                                                       "repository (update needs one)")]


def _new(kind: str, name: str, dest: Path | None, no_git: bool) -> None:
    from mts1b_pluginsdk.scaffold import new_project

    project = new_project(kind, name, dest, git=not no_git)
    typer.echo(f"created {project} ({kind} plugin {name!r}); next: cd {project} && "
               "MTS1B_WHEELS=/path/to/mts1b/dist ./ci.sh")


@new_app.command("broker")
def new_broker(name: Annotated[str, typer.Argument(help="the broker's name, e.g. acme")],
               dest: _Dest = None, no_git: _NoGit = False) -> None:
    """A broker adapter (mts1b.brokers) with a toy venue, a conformance harness and tests."""
    _new("broker", name, dest, no_git)


@new_app.command("provider")
def new_provider(name: Annotated[str, typer.Argument(help="the provider's name")],
                 dest: _Dest = None, no_git: _NoGit = False) -> None:
    """A market-data provider (mts1b.market_data) reading a CSV file, with tests."""
    _new("provider", name, dest, no_git)


@new_app.command("factor-pack")
def new_factor_pack(name: Annotated[str, typer.Argument(help="the pack's name")],
                    dest: _Dest = None, no_git: _NoGit = False) -> None:
    """A pack of factors (mts1b.factors), each registered by name, with tests."""
    _new("factor-pack", name, dest, no_git)


@app.command("update")
def update(project: Annotated[Path, typer.Argument(help="the generated project")] = Path(".")
           ) -> None:
    """Merge the installed template's changes into a generated project (copier update)."""
    from mts1b_pluginsdk.scaffold import update_project

    update_project(project)
    typer.echo(f"updated {project}; review with git diff (conflicts are marked <<<<<<<)")


@app.command("list")
def list_plugins(
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="only this extension point (repeatable)")] = None,
    no_load: Annotated[bool, typer.Option(
        "--no-load", help="read metadata only: import nothing")] = False,
) -> None:
    """Every installed plugin: kind, name, distribution, and whether it loads."""
    from mts1b_pluginsdk.inventory import installed_plugins

    for p in installed_plugins(load=not no_load, kinds=kind):
        status = "not loaded" if no_load else (f"FAILED ({p.error_type})" if p.error_type
                                               else "ok")
        legacy = f"  [legacy group {p.group}]" if p.legacy_group else ""
        caps = ""
        if p.capabilities is not None:
            c = p.capabilities
            caps = (f"  orders={','.join(sorted(c.order_types))} "
                    f"tif={','.join(sorted(c.time_in_force))} "
                    f"assets={','.join(sorted(c.asset_classes))}"
                    f"{' streaming' if c.streaming else ''}"
                    f"{' replace' if c.supports_replace else ''}")
        typer.echo(f"{p.kind:<12} {p.name:<24} {p.distribution} {p.version}  {status}"
                   f"{legacy}{caps}")


def main(argv: Sequence[str] | None = None) -> None:
    """The ``mts1b-pluginsdk`` console script: an error is one line, not a traceback."""
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name="mts1b-pluginsdk")
    except MtsError as exc:
        sys.stderr.write(f"mts1b-pluginsdk: {exc}\n")
        sys.exit(1)
    except Exception as exc:
        sys.stderr.write(f"mts1b-pluginsdk: the command failed unexpectedly "
                         f"({type(exc).__name__})\n")
        sys.exit(1)


if __name__ == "__main__":  # python -m mts1b_pluginsdk.cli
    main()
