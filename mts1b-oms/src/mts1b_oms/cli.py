"""``mts mts1b-oms ...``: serve the OMS, halt and resume trading, show the kill-switch state.

``halt`` / ``resume`` write the trading state to PostgreSQL (the system of record) and to the NATS
KV bucket; every running OMS instance sees the KV change at once and cancels the working orders
of a halted scope at its broker. They work whether or not an OMS is running.

What a command reports for people (the new state, the scopes that are not ACTIVE, that the
service is up) is printed on stdout; log lines go to stderr through the ``mts`` root's logging,
which shows warnings and errors unless ``mts -v`` or ``$MTS_LOG_LEVEL`` asks for more. ``serve``
names itself ``oms`` in every log line. ``python -m mts1b_oms.cli ARGS`` runs ``mts mts1b-oms
ARGS`` (root options such as ``-v`` go on ``mts``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mts1b_foundation import TradingState

__all__ = ["app"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

app = typer.Typer(name="mts1b-oms", help="MTS1B order management system.",
                  no_args_is_help=True, add_completion=False)

Dsn = Annotated[str, typer.Option(envvar="MTS_DATABASE_URL", help="PostgreSQL DSN")]
Schema = Annotated[str, typer.Option(envvar="MTS_OMS_SCHEMA", help="PostgreSQL schema")]
Namespace = Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                               help="NATS namespace prefix")]


def _parse_args(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--broker-arg wants key=value, got {item!r}")
        out[key] = value
    return out


@app.command()
def serve(
    funds: Annotated[Path, typer.Option(envvar="MTS_OMS_FUNDS",
                                        help="JSON file: a list of FundConfig")],
    broker: Annotated[str, typer.Option(help="entry point in mts1b.brokers, or module:attr")
                      ] = "paper",
    broker_arg: Annotated[list[str] | None, typer.Option(help="key=value for the broker")
                          ] = None,
    prices: Annotated[Path | None, typer.Option(help="JSON file {symbol: price}")] = None,
    dsn: Dsn = DEFAULT_DSN,
    schema: Schema = "mts_oms",
    namespace: Namespace = None,
    concurrency: Annotated[int, typer.Option(min=1, help="commands handled at once")] = 64,
    full_gc_interval: Annotated[float, typer.Option(
        min=0.001, help="seconds between the full garbage collections the service runs")] = 60.0,
) -> None:
    """Run the OMS service until SIGTERM (then drain)."""
    from mts1b_platform.logging import set_service

    set_service("oms")  # before anything logs: every line of this process names the OMS
    from mts1b_oms.service import ServeOptions, load_funds, run_service

    px = {k: Decimal(str(v)) for k, v in json.loads(prices.read_text()).items()} if prices else {}
    opts = ServeOptions(dsn=dsn, funds=load_funds(funds), broker=broker,
                        broker_args=_parse_args(broker_arg or []), schema=schema,
                        namespace=namespace, prices=px, concurrency=concurrency,
                        full_gc_interval=full_gc_interval)

    async def serve_and_report() -> None:
        ready = asyncio.Event()
        service = asyncio.get_running_loop().create_task(run_service(opts, ready=ready))
        announce = asyncio.get_running_loop().create_task(ready.wait())
        await asyncio.wait([service, announce], return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            typer.echo(f"oms serving funds {', '.join(f.fund_id for f in opts.funds)} on "
                       f"mts.v1.oms.commands.* (schema {schema}"
                       f"{f', namespace {namespace}' if namespace else ''}); SIGTERM drains")
        announce.cancel()
        await service  # its exception, if it failed to start, ends the command
        typer.echo("oms stopped")

    asyncio.run(serve_and_report())


def _scope(fund: str | None, strategy: str | None, all_: bool) -> tuple[str, str]:
    chosen = [x for x in (fund, strategy) if x] + (["*"] if all_ else [])
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --fund F, --strategy S, --all")
    if all_:
        return "global", "*"
    return ("fund", fund) if fund else ("strategy", strategy or "")


async def _set_state(scope: str, scope_id: str, state: TradingState, actor: str, reason: str,
                     dsn: str, schema: str, namespace: str | None) -> None:
    from mts1b_foundation import new_event_id
    from mts1b_platform.bus import Bus

    from mts1b_oms.service import KV_BUCKET, KvFanout
    from mts1b_oms.store import OutboxItem, Store
    from mts1b_oms.tradingstate import make_change

    change = make_change(scope, scope_id, state, actor, reason, dt.datetime.now(dt.UTC))
    store = await Store.open(dsn, schema=schema, min_size=1, max_size=2)
    try:
        await store.set_trading_state(
            change, [OutboxItem("mts.v1.oms.state.changed", change, new_event_id())])
    finally:
        await store.close()
    try:
        bus = await (Bus.connect(namespace=namespace) if namespace else Bus.connect())
    except Exception as exc:
        typer.echo(f"warning: state stored in PostgreSQL but NATS unreachable ({exc}); running "
                   "instances see it at their next start", err=True)
        return
    try:
        await KvFanout(await bus.kv(KV_BUCKET)).put(change)
    finally:
        await bus.drain()


@app.command()
def halt(
    fund: Annotated[str | None, typer.Option(help="halt one fund")] = None,
    strategy: Annotated[str | None, typer.Option(help="halt one strategy")] = None,
    all_: Annotated[bool, typer.Option("--all", help="halt everything")] = False,
    reducing: Annotated[bool, typer.Option(help="REDUCING instead of HALTED")] = False,
    reason: Annotated[str, typer.Option()] = "manual halt",
    actor: Annotated[str, typer.Option()] = os.environ.get("USER", "operator") or "operator",
    dsn: Dsn = DEFAULT_DSN,
    schema: Schema = "mts_oms",
    namespace: Namespace = None,
) -> None:
    """Stop new orders (HALTED, or REDUCING: risk-reducing only) and cancel working orders."""
    from mts1b_foundation import TradingState

    scope, scope_id = _scope(fund, strategy, all_)
    state = TradingState.REDUCING if reducing else TradingState.HALTED
    asyncio.run(_set_state(scope, scope_id, state, actor, reason, dsn, schema, namespace))
    typer.echo(f"{scope} {scope_id}: {state.value}")


@app.command()
def resume(
    fund: Annotated[str | None, typer.Option(help="resume one fund")] = None,
    strategy: Annotated[str | None, typer.Option(help="resume one strategy")] = None,
    all_: Annotated[bool, typer.Option("--all", help="resume the global scope")] = False,
    reason: Annotated[str, typer.Option()] = "manual resume",
    actor: Annotated[str, typer.Option()] = os.environ.get("USER", "operator") or "operator",
    dsn: Dsn = DEFAULT_DSN,
    schema: Schema = "mts_oms",
    namespace: Namespace = None,
) -> None:
    """Clear a halt: the only way back to ACTIVE."""
    from mts1b_foundation import TradingState

    scope, scope_id = _scope(fund, strategy, all_)
    asyncio.run(_set_state(scope, scope_id, TradingState.ACTIVE, actor, reason, dsn, schema,
                           namespace))
    typer.echo(f"{scope} {scope_id}: ACTIVE")


@app.command()
def status(dsn: Dsn = DEFAULT_DSN, schema: Schema = "mts_oms") -> None:
    """Print every scope that is not ACTIVE."""
    from mts1b_foundation import TradingState

    from mts1b_oms.store import Store

    async def read() -> list[tuple[str, str, TradingState]]:
        store = await Store.open(dsn, schema=schema, min_size=1, max_size=1)
        try:
            return await store.trading_states()
        finally:
            await store.close()

    rows = [r for r in asyncio.run(read()) if r[2] is not TradingState.ACTIVE]
    if not rows:
        typer.echo("all ACTIVE")
    for scope, scope_id, state in rows:
        typer.echo(f"{scope} {scope_id}: {state.value}")


if __name__ == "__main__":  # python -m mts1b_oms.cli ...: the same as `mts mts1b-oms ...`
    from mts1b_platform.cli import main

    main(["mts1b-oms", *sys.argv[1:]])
