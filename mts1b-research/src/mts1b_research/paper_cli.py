"""``mts mts1b-research paper up | status | down``: the paper-trading loop on this machine
(:mod:`mts1b_research.paper`)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from mts1b_research.db import DEFAULT_SCHEMA
from mts1b_research.errors import ResearchInputError

__all__ = ["paper_app"]

paper_app = typer.Typer(help="The paper-trading loop: every service in lockstep with a "
                             "historical replay.", no_args_is_help=True, add_completion=False)
Namespace = Annotated[str, typer.Option(envvar="MTS_PAPER_NAMESPACE",
                                        help="NATS namespace of the loop (one loop each)")]


def _decimal(field: str, text: str, *, positive: bool = False) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ResearchInputError(field, text, "not a number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ResearchInputError(field, text, "must be a finite number "
                                              f"{'> 0' if positive else '>= 0'}")
    return value


def _date(field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ResearchInputError(field, text, "not a date (YYYY-MM-DD)") from None


def _fail(exc: Exception) -> None:
    from mts1b_platform.redaction import redact

    message = getattr(exc, "message", None) or str(exc)
    typer.echo(f"error: {redact(' '.join(str(message).splitlines()))}", err=True)
    raise typer.Exit(2)


def _universe(spec_universe: str | list[str], store: Any, start: dt.date, end: dt.date
              ) -> tuple[str, tuple[str, ...]]:
    """The replay's universe argument and the symbols it covers over the range."""
    from mts1b_datalake.calendar import trading_days
    from mts1b_datalake.universes import resolve_universe

    sessions = trading_days("XNYS", start, end)
    if not len(sessions):
        raise ResearchInputError("--from", start.isoformat(), f"no session up to {end}")
    rule = resolve_universe(spec_universe)
    symbols = tuple(rule.resolve(store, sessions, calendar="XNYS").symbols)
    text = spec_universe if isinstance(spec_universe, str) else ",".join(spec_universe)
    return text, symbols


def _last_date(store: Any) -> dt.date:
    table = store.symbol_table()
    dates = [d for d in table["last_date"].tolist() if d is not None]
    if not dates:
        raise ResearchInputError("--store", str(store.root), "holds no bars")
    return max(dt.date.fromisoformat(str(d)[:10]) for d in dates)


@paper_app.command("up")
def up(
    strategy: Annotated[str, typer.Option(help="the registered strategy to trade (in paper)")],
    start: Annotated[str, typer.Option("--from", help="first session, YYYY-MM-DD")],
    end: Annotated[str | None, typer.Option(
        "--to", help="last session (default: the store's last)")] = None,
    speed: Annotated[float, typer.Option(
        min=0.0, help="sessions per second at most; 0 = as fast as the services go")] = 50.0,
    cash: Annotated[str, typer.Option(help="the fund's capital (a new fund)")] = "1000000",
    fund: Annotated[str | None, typer.Option(
        help="the fund (default paper-<strategy>; created with --cash when missing)")] = None,
    namespace: Namespace = "paper",
    commission_bps: Annotated[str, typer.Option(help="the venue's commission")] = "0",
    participation_rate: Annotated[str, typer.Option(
        help="most of a bar's volume an order may take (1: no cap, as a backtest)")] = "1",
    leverage: Annotated[str, typer.Option(
        help="the paper account's buying power over its equity (2: Reg T margin, which a "
             "fully invested strategy needs: a rebalance's buys go in with its sells)")] = "2",
    store: Annotated[str | None, typer.Option(help="datalake store root")] = None,
    dsn: Annotated[str | None, typer.Option(
        envvar="MTS_DATABASE_URL",
        help="PostgreSQL DSN (default: the local one of `mts dev up`)")] = None,
    schema: Annotated[str, typer.Option(envvar="MTS_RESEARCH_SCHEMA",
                                        help="the registry's schema")] = DEFAULT_SCHEMA,
    wait: Annotated[bool, typer.Option(
        help="stay until the replay ends, printing the status")] = False,
    as_backtest: Annotated[bool, typer.Option(
        help="trade as the backtester's run_single (fill='next_open') does: each rebalance "
             "sized at the next open with the NAV there net of its commissions, fractional "
             "shares (a lot of 1e-8), commissions not rounded to cents")] = False,
) -> None:
    """Start the loop: the paper venue, the OMS, the treasury, the signal service and the
    composer, each its own process on the replay's clock, and the replay from --from."""
    from mts1b_research.paper import NAMESPACE, PaperError, needed_libraries, run_dir
    from mts1b_research.paper import start as start_loop

    missing = needed_libraries()
    if missing:
        _fail(PaperError("the paper loop runs libraries that are not installed: pip install "
                         + " ".join(f"'{m}'" for m in missing)))
    try:
        if not NAMESPACE.fullmatch(namespace):
            raise ResearchInputError("--namespace", namespace, "lower-case letters, digits, - "
                                     "and _, starting with a letter, at most 31")
        first = _date("--from", start)
        money = _decimal("--cash", cash, positive=True)
        fees = _decimal("--commission-bps", commission_bps)
        cap = _decimal("--participation-rate", participation_rate, positive=True)
        margin = _decimal("--leverage", leverage, positive=True)
        plan, env, fund_exists = asyncio.run(_prepare(
            strategy, first, end, speed, money, fund, namespace, fees, cap, store, dsn,
            schema))
        plan = dataclasses.replace(plan, leverage=margin, as_backtest=as_backtest)
        state = start_loop(plan, env, fund_exists=fund_exists)
    except (PaperError, ResearchInputError) as exc:
        _fail(exc)
        return
    except Exception as exc:  # the message of an MtsError; a type name otherwise
        _fail(exc if hasattr(exc, "message") else RuntimeError(type(exc).__name__))
        return
    typer.echo(f"paper loop up in namespace {namespace}: {plan.strategy} in fund "
               f"{plan.fund_id}, {plan.start} to {plan.end} at up to {plan.speed:g} sessions/s")
    for name, proc in state.processes.items():
        typer.echo(f"  {name:<13} pid {proc['pid']:<8} log {proc['log']}")
    typer.echo(f"state and logs: {run_dir(namespace)}")
    typer.echo(f"watch it: mts mts1b-research paper status --namespace {namespace} --watch 2")
    if wait:
        _wait(namespace, state)


async def _prepare(strategy: str, first: dt.date, end: str | None, speed: float,
                   cash: Decimal, fund: str | None, namespace: str, fees: Decimal,
                   cap: Decimal, store_root: str | None, dsn: str | None, schema: str
                   ) -> tuple[Any, dict[str, str], bool]:
    from mts1b_datalake.store import Store
    from mts1b_foundation import StrategyState
    from mts1b_platform.devservices import ensure_up, export_lines

    from mts1b_research.paper import PaperError, PaperPlan
    from mts1b_research.registry import StrategyRegistry

    servers = await asyncio.to_thread(ensure_up, nats=True, postgres=True)
    down = [s.name for s in servers if not s.reachable]
    if down:
        raise PaperError(f"{', '.join(down)} not reachable: see `mts dev status`")
    env = dict(os.environ)
    for line in export_lines(servers):  # KEY=value of each reachable server
        key, _, value = line.partition("=")
        env[key] = value
    database = dsn or env["MTS_DATABASE_URL"]
    env["MTS_DATABASE_URL"] = database
    async with await StrategyRegistry.open(database, schema=schema) as registry:
        record = await registry.show(strategy)
    spec = record.spec
    if record.state not in (StrategyState.PAPER, StrategyState.LIVE):
        raise PaperError(
            f"strategy {strategy} is {record.state.value}: the paper loop trades a strategy in "
            f"paper; promote it first (`mts mts1b-research strategies promote {strategy} --to "
            "paper`, which its promotion rule checks)", strategy=strategy)
    store = Store(store_root) if store_root else Store.default()
    last = _date("--to", end) if end else _last_date(store)
    if last < first:
        raise ResearchInputError("--to", last.isoformat(), f"is before --from {first}")
    universe, symbols = _universe(spec.universe, store, first, last)
    fund_id = fund or spec.fund_id or f"paper-{strategy}"
    plan = PaperPlan(strategy=strategy, universe=universe, symbols=symbols, start=first,
                     end=last, fund_id=fund_id, cash=cash, namespace=namespace, speed=speed,
                     commission_bps=fees, participation_rate=cap,
                     store=str(store.root) if store_root else None,
                     research_dsn=dsn, research_schema=schema, nats_url=env["MTS_NATS_URL"],
                     database_url=database)
    return plan, env, await _fund_exists(plan, database)


async def _fund_exists(plan: Any, database: str) -> bool:
    """Whether the loop's fund exists; a namespace whose OMS already holds orders belongs to a
    previous loop (its books, venue and streams would carry over into a replay that starts
    again from --from), so it is refused."""
    import asyncpg

    from mts1b_research.paper import PaperError

    conn = await asyncpg.connect(database, timeout=10)
    try:
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{plan.oms_schema}.orders"):
            raise PaperError(
                f"namespace {plan.namespace!r} holds a previous paper loop's books: `mts "
                f"mts1b-research paper down --namespace {plan.namespace} --purge` first, or "
                "start this one with another --namespace", namespace=plan.namespace)
        found = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f"{plan.treasury_schema}.funds")
        if not found:
            return False
        return bool(await conn.fetchval(
            f'SELECT count(*) FROM "{plan.treasury_schema}".funds '  # noqa: S608 (checked)
            "WHERE fund_id = $1",
            plan.fund_id))
    finally:
        await conn.close()


def _wait(namespace: str, state: Any) -> None:
    from mts1b_research.paper import process_alive

    replay = int(state.processes["replay"]["pid"])
    while process_alive(replay):
        time.sleep(5)
        _show(namespace, as_json=False, brief=True)
    log = Path(state.processes["replay"]["log"]).read_text(encoding="utf-8", errors="replace")
    _show(namespace, as_json=False)
    if "error:" in log:
        typer.echo("the replay stopped with an error; its log: "
                   f"{state.processes['replay']['log']}", err=True)
        raise typer.Exit(1)
    typer.echo("the replay is over; the services keep running until `paper down`")


def _show(namespace: str, *, as_json: bool, brief: bool = False) -> None:
    from mts1b_platform.bus import Bus

    from mts1b_research.paper import PaperState
    from mts1b_research.paper_status import gather, render

    state = PaperState.load(namespace)

    async def read() -> Any:
        bus = await Bus.connect(url=state.plan["nats_url"], namespace=namespace,
                                name="paper-status", connect_timeout=5)
        try:
            return await gather(bus, state)
        finally:
            await bus.drain()

    status = asyncio.run(read())
    if brief:  # a progress line while --wait waits
        nav = f", NAV {status.nav:,.2f}" if status.nav is not None else ""
        typer.echo(f"session {status.session or '-'} ({status.sessions_done} of "
                   f"{status.sessions_total}){nav}, {status.orders_seen} orders")
        return
    typer.echo(json.dumps(status.as_json()) if as_json else render(status))


@paper_app.command("status")
def status(
    namespace: Namespace = "paper",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
    watch: Annotated[float | None, typer.Option(
        min=0.5, help="refresh every this many seconds until Ctrl-C")] = None,
) -> None:
    """Where the loop is: its processes, the replay's session, the NAV, the last signal,
    positions and working orders."""
    from mts1b_research.paper import PaperError

    try:
        while True:
            _show(namespace, as_json=as_json)
            if watch is None:
                return
            time.sleep(watch)
            typer.echo("")
    except PaperError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        return
    except Exception as exc:
        _fail(exc if hasattr(exc, "message") else RuntimeError(type(exc).__name__))


@paper_app.command("env")
def env(namespace: Namespace = "paper") -> None:
    """Shell lines that point the other `mts` commands at the loop - its NATS, its namespace,
    its signing key, its audit chain (schema, checkpoint folder, the audit key's public
    registry) - for `eval "$(mts mts1b-research paper env)"`. A URL's credentials are
    never printed (give them in your own environment)."""
    import shlex

    from mts1b_platform.redaction import redact_url

    from mts1b_research.paper import AUDIT_KEYS_FILE, PaperError, PaperState, run_dir

    try:
        state = PaperState.load(namespace)
    except PaperError as exc:
        _fail(exc)
        return
    url = state.plan["nats_url"]
    lines = {"MTS_NATS_NAMESPACE": namespace,
             "MTS_OMS_KEY_FILE": str(run_dir(namespace) / "paper-desk.key")}
    if "audit_schema" in state.plan:  # `mts mts1b-operations audit show` reads the loop's chain
        lines["MTS_AUDIT_SCHEMA"] = state.plan["audit_schema"]
        # and `audit verify` checks it against the recorder's checkpoint files and key
        lines["MTS_AUDIT_CHECKPOINT_DIR"] = str(run_dir(namespace) / "checkpoints")
        if (run_dir(namespace) / AUDIT_KEYS_FILE).exists():
            lines["MTS_AUDIT_KEYS"] = str(run_dir(namespace) / AUDIT_KEYS_FILE)
        if state.plan.get("database_url"):
            lines["MTS_DATABASE_URL"] = state.plan["database_url"]
    last = asyncio.run(_last_order(state))
    if last is not None:  # e.g. `audit show --subject-id "$MTS_PAPER_LAST_ORDER"`
        lines["MTS_PAPER_LAST_ORDER"] = last
    if redact_url(url) == url:  # no credentials in it
        lines["MTS_NATS_URL"] = url
    for key, value in lines.items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@paper_app.command("down")
def down(
    namespace: Namespace = "paper",
    purge: Annotated[bool, typer.Option(
        help="also delete the loop's streams, its OMS, treasury and audit schemas and its "
             "audit checkpoint files")] = False,
) -> None:
    """Stop the loop's processes (the replay first, the venue last)."""
    from mts1b_research.paper import PaperError, PaperState, forget, stop

    try:
        state = PaperState.load(namespace)
        outcome = stop(namespace)
    except PaperError as exc:
        _fail(exc)
        return
    for name, what in outcome.items():
        typer.echo(f"  {name:<13} {what}")
    if purge:
        asyncio.run(_purge(state))
        forget(namespace)
        schemas = [state.plan[k] for k in ("oms_schema", "treasury_schema", "audit_schema")
                   if k in state.plan]
        typer.echo(f"purged the streams of namespace {namespace} and the schemas "
                   f"{', '.join(schemas)}")
    else:
        typer.echo("its books stay (the OMS's, treasury's and audit schemas, the streams): "
                   "`paper down --purge` deletes them")
    typer.echo(f"paper loop {namespace} down")


async def _last_order(state: Any) -> str | None:
    """The id of the loop's most recent order (``None``: no order yet, or no OMS tables)."""
    import asyncpg

    url = state.plan.get("database_url")
    if not url:
        return None
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        found = await conn.fetchval(
            f'SELECT order_id FROM "{state.plan["oms_schema"]}".orders '  # noqa: S608 (ours)
            "ORDER BY created_at DESC, order_id DESC LIMIT 1")
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    return str(found) if found is not None else None


async def _purge(state: Any) -> None:
    import asyncpg
    from mts1b_platform.bus import Bus

    bus = await Bus.connect(url=state.plan["nats_url"], namespace=state.plan["namespace"],
                            connect_timeout=5)
    try:
        await bus.delete_streams()
    finally:
        await bus.drain()
    conn = await asyncpg.connect(state.plan["database_url"], timeout=10)
    try:
        for key in ("oms_schema", "treasury_schema", "audit_schema"):
            if key in state.plan:  # a loop started before the audit recorder has none
                await conn.execute(f'DROP SCHEMA IF EXISTS "{state.plan[key]}" CASCADE')
    finally:
        await conn.close()
