"""The ``mts`` command line: one root app, a command group per installed library.

A library adds its group through the ``mts.commands`` entry-point group: the entry's name is the
library's distribution name and its value points at a ``typer.Typer``::

    [project.entry-points."mts.commands"]
    mts1b-datalake = "mts1b_datalake.cli:app"

Groups are imported only when used (``mts mts1b-datalake ...``) or listed (``mts --help``), so
one library's slow or broken import never slows down or breaks another's commands: a group that
fails to load is reported on stderr and left out. Built in: ``mts versions`` and
``mts dev up | down | status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Annotated, Any, ClassVar

import typer
from typer.core import TyperGroup

__all__ = ["ENTRY_POINT_GROUP", "app", "installed_libraries", "main"]

ENTRY_POINT_GROUP = "mts.commands"


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


class _LibraryGroup(TyperGroup):
    """The root group: built-in commands plus lazily loaded library groups."""

    # ctx and the commands are click objects; typer vendors click in recent versions, so they
    # are typed loosely here rather than against one click.
    _failed: ClassVar[set[str]] = set()

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *sorted(_entry_points())]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        ep = _entry_points().get(cmd_name)
        if ep is None:
            return None
        try:
            loaded: Any = ep.load()
            if not isinstance(loaded, typer.Typer):
                raise TypeError(f"{ep.value} is a {type(loaded).__name__}, not a typer.Typer")
            # Always a group, so `mts <library> <command>` holds even for one-command apps.
            command = typer.main.get_group(loaded)
        except Exception as exc:
            if cmd_name not in self._failed:
                self._failed.add(cmd_name)
                typer.echo(f"mts: the commands of {cmd_name} failed to load "
                           f"({ep.value}): {type(exc).__name__}: {exc}", err=True)
            return None
        command.name = cmd_name
        return command


app = typer.Typer(
    name="mts",
    cls=_LibraryGroup,
    no_args_is_help=True,
    add_completion=False,
    help="MTS1B: every installed library's commands, plus `versions` and `dev`.",
)
dev_app = typer.Typer(no_args_is_help=True, help="Local NATS (JetStream) and PostgreSQL.")
app.add_typer(dev_app, name="dev")


def installed_libraries() -> list[tuple[str, str]]:
    """``(distribution, version)`` of every installed ``mts1b-*`` distribution, sorted."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().replace("_", "-").startswith("mts1b-"):
            found[name] = dist.version
    return sorted(found.items())


@app.command()
def versions() -> None:
    """List installed MTS1B libraries and their versions."""
    for name, version in installed_libraries():
        typer.echo(f"{name} {version}")


@dev_app.command("up")
def dev_up(
    export: Annotated[bool, typer.Option(
        "--export", help="print only MTS_NATS_URL=... and MTS_DATABASE_URL=... lines")] = False,
    nats: Annotated[bool, typer.Option(help="ensure NATS with JetStream")] = True,
    postgres: Annotated[bool, typer.Option(help="ensure PostgreSQL")] = True,
    local: Annotated[bool, typer.Option(
        "--local", help="always use servers started from the wheels, never the configured "
                        "ones (a new user's machine)")] = False,
) -> None:
    """Use the configured NATS/PostgreSQL when they answer, else start local ones."""
    from mts1b_platform import devservices

    try:
        services = devservices.ensure_up(nats=nats, postgres=postgres, local=local)
    except devservices.DevServiceError as exc:
        typer.echo(f"mts dev up: {exc.message}", err=True)
        raise typer.Exit(1) from None
    if export:
        for line in devservices.export_lines(services):
            typer.echo(line)
        for line in devservices.describe(services):
            typer.echo(line, err=True)
    else:
        for line in devservices.describe(services):
            typer.echo(line)


@dev_app.command("down")
def dev_down() -> None:
    """Stop what `mts dev up` started (never the configured servers)."""
    from mts1b_platform import devservices

    stopped = devservices.stop()
    typer.echo("\n".join(f"stopped {s}" for s in stopped) or "nothing was started by mts dev up")


@dev_app.command("status")
def dev_status() -> None:
    """Show where NATS and PostgreSQL are and whether they answer."""
    from mts1b_platform import devservices

    services = devservices.status()
    for line in devservices.describe(services):
        typer.echo(line)
    if not all(s.reachable for s in services):
        raise typer.Exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``mts`` console script."""
    app(args=list(argv) if argv is not None else None, prog_name="mts")


if __name__ == "__main__":  # python -m mts1b_platform.cli
    main()
