"""``mts mts1b-operations alerts list|silence|unsilence|ack`` and ``serve alerts``.

The commands act on the router's PostgreSQL state directly, so they work whether or not the
router runs; a silence or an acknowledgement takes effect at the group's next evaluation. The
configuration (``--config``, or ``$MTS_ALERTS_CONFIG``) is read for the database and the
router's rules; its secrets are never printed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mts1b_operations.alerts.config import AlertsConfig, load_alerts_config
from mts1b_operations.alerts.errors import AlertsInputError
from mts1b_operations.alerts.router import AlertView, Router
from mts1b_operations.alerts.store import AlertsDb

__all__ = ["alerts_app", "parse_duration", "register"]

T = TypeVar("T")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

alerts_app = typer.Typer(help="Alerts: what fires, silences and acknowledgements.",
                         no_args_is_help=True, add_completion=False)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", envvar="MTS_ALERTS_CONFIG", help="the router's YAML configuration")]


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``2h``, ``1d`` as a timedelta; AlertsInputError otherwise."""
    found = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if found is None or float(found.group(1)) <= 0:
        raise AlertsInputError("--for", text, "a positive duration such as 90s, 30m, 2h or 1d")
    return dt.timedelta(seconds=float(found.group(1)) * _UNIT[found.group(2)])


def _with_router(config_path: Path | None, work: Callable[[Router], Awaitable[T]]) -> T:
    config = load_alerts_config(config_path)

    async def run() -> T:
        db = await AlertsDb.open(config.database_url.get_secret_value(),
                                 schema=config.schema_name)
        try:
            return await work(Router(db, config))
        finally:
            await db.close()

    return asyncio.run(run())


@alerts_app.command("list")
def list_alerts(
    config: ConfigOption = None,
    all_: Annotated[bool, typer.Option("--all", help="resolved ones too")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="one JSON array of objects ([] when there are none)")] = False,
) -> None:
    """The alerts the router holds: firing ones (``--all``: resolved too), newest first, with
    whether they were notified, silenced, inhibited, flapping or acknowledged. ``--json`` is
    one JSON document whatever the count, so a script parses ``[]`` rather than prose."""
    views = _with_router(config, lambda r: r.list_alerts(include_resolved=all_))
    if as_json:
        typer.echo(json.dumps([{"fingerprint": v.alert.fingerprint, "status": v.status,
                                "notified": v.notified, "muted": _muted(v),
                                "alert": json.loads(v.alert.model_dump_json())}
                               for v in views]))
        return
    if not views:
        typer.echo("no alerts")
        return
    for v in views:
        muted = _muted(v)
        labels = " ".join(f"{k}={val}" for k, val in sorted(v.alert.labels.items())
                          if k != "alertname")
        typer.echo(f"{v.alert.fingerprint}  {v.status:<8} {v.alert.severity.value:<8} "
                   f"{v.alert.alertname}  {labels}  since {v.alert.starts_at:%Y-%m-%d %H:%M}Z"
                   + (f"  [{'; '.join(muted)}]" if muted else ""))
        typer.echo(f"    {v.alert.text.splitlines()[0][:200] if v.alert.text else ''}")


def _muted(v: AlertView) -> list[str]:
    """Why a notification of the alert is held back, in words (empty: it is not)."""
    return (([f"silenced by {','.join(v.silenced_by)}"] if v.silenced_by else [])
            + (["inhibited"] if v.inhibited else []) + (["flapping"] if v.flapping else [])
            + ([f"acked by {v.acked_by}"] if v.acked_by else []))


@alerts_app.command("silence")
def silence(
    matchers: Annotated[list[str], typer.Argument(
        help="label matchers: name=value, name!=value, name=~regex, name!~regex")],
    for_: Annotated[str, typer.Option("--for", help="how long: 90s, 30m, 2h, 1d")] = "2h",
    comment: Annotated[str, typer.Option(help="why (what others read)")] = "",
    by: Annotated[str | None, typer.Option(help="who (default: the OS user)")] = None,
    config: ConfigOption = None,
) -> None:
    """Mute the alerts the matchers match, for a while; prints the silence's id."""
    duration = parse_duration(for_)
    who = by or getpass.getuser()
    silence_id = _with_router(config, lambda r: r.silence(
        matchers, duration=duration, created_by=who, comment=comment))
    ends = dt.datetime.now(dt.UTC) + duration
    typer.echo(f"{silence_id} until {ends:%Y-%m-%d %H:%M:%S}Z")


@alerts_app.command("unsilence")
def unsilence(silence_id: Annotated[str, typer.Argument(help="the id `silence` printed")],
              config: ConfigOption = None) -> None:
    """End a silence now."""
    _with_router(config, lambda r: r.expire_silence(silence_id))
    typer.echo(f"{silence_id} expired")


@alerts_app.command("silences")
def silences(config: ConfigOption = None,
             as_json: Annotated[bool, typer.Option(
                 "--json", help="one JSON array of objects ([] when there are none)")] = False,
             ) -> None:
    """The silences in force or to come (``--json``: one JSON document, ``[]`` for none)."""
    rows: list[dict[str, Any]] = _with_router(config, lambda r: r.silences())
    if as_json:
        typer.echo(json.dumps([{"silence_id": s["silence_id"], "matchers": s["matchers"],
                                "starts_at": s["starts_at"].isoformat(),
                                "ends_at": s["ends_at"].isoformat(),
                                "created_by": s["created_by"], "comment": s["comment"]}
                               for s in rows]))
        return
    if not rows:
        typer.echo("no silences")
    for s in rows:
        typer.echo(f"{s['silence_id']}  {' '.join(s['matchers'])}  until "
                   f"{s['ends_at']:%Y-%m-%d %H:%M:%S}Z  by {s['created_by']}: {s['comment']}")


@alerts_app.command("ack")
def ack(fingerprint: Annotated[str, typer.Argument(help="the alert's fingerprint (or its "
                                                        "first 6+ characters)")],
        by: Annotated[str | None, typer.Option(help="who (default: the OS user)")] = None,
        config: ConfigOption = None) -> None:
    """Acknowledge a firing alert: no more notifications of it until it resolves."""
    who = by or getpass.getuser()
    alert = _with_router(config, lambda r: r.ack(fingerprint, by=who))
    typer.echo(f"{alert.fingerprint} {alert.alertname} acknowledged by {who}")


def serve_alerts(
    config: ConfigOption = None,
    namespace: Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                  help="NATS namespace prefix")] = None,
    heartbeat_interval: Annotated[float, typer.Option(
        envvar="MTS_HEARTBEAT_INTERVAL", min=0.001, max=3600,
        help="seconds between two of the router's own heartbeats on "
             "mts.v1.operations.heartbeats.mts1b-operations-alerts")] = 10.0,
) -> None:
    """Run the alert router: group, inhibit, silence and deliver alerts to the receivers; raise
    HeartbeatMissing for a service whose heartbeats stop. It beats itself as
    mts1b-operations-alerts.

    Once it consumes it prints one line, as ``serve audit`` does, so a person (or a script
    waiting for it) knows it came up: the receivers' count, the schema and the namespace only,
    never a receiver's token or URL."""
    from mts1b_platform.shutdown import run_announced

    from mts1b_operations.alerts.service import run_alerts

    loaded: AlertsConfig = load_alerts_config(config)

    async def serve_and_report() -> None:
        def announce(ready: bool) -> None:
            if ready:
                count = len(loaded.receivers)
                typer.echo(f"alert router serving ({count} receiver"
                           f"{'' if count == 1 else 's'}, schema {loaded.schema_name}"
                           f"{f', namespace {namespace}' if namespace else ''}); SIGTERM stops it")

        ready = asyncio.Event()
        await run_announced(run_alerts(loaded, namespace=namespace, ready=ready,
                                       heartbeat_interval=heartbeat_interval), ready, announce)
        typer.echo("alert router stopped")

    asyncio.run(serve_and_report())


def register(app: typer.Typer, serve: typer.Typer) -> None:
    """Add ``alerts`` to ``mts mts1b-operations`` and ``alerts`` to its ``serve``."""
    app.add_typer(alerts_app, name="alerts")
    serve.command("alerts")(serve_alerts)
