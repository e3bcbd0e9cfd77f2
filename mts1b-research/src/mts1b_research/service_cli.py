"""``mts mts1b-research serve | signal | report``: the signal service, one signal, a report."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from mts1b_research.db import DEFAULT_SCHEMA
from mts1b_research.errors import ResearchInputError

__all__ = ["install"]

Dsn = Annotated[str | None, typer.Option(
    envvar="MTS_DATABASE_URL", help="PostgreSQL DSN (default: the local one of `mts dev up`)")]
Schema = Annotated[str, typer.Option(envvar="MTS_RESEARCH_SCHEMA", help="PostgreSQL schema")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="datalake store root (default: $MTS_DATALAKE_ROOT or the user's)")]


def _day(field: str, text: str | None) -> dt.date:
    if text is None:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ResearchInputError(field, text, "not a date (YYYY-MM-DD)") from None


def _store(root: str | None) -> Any:
    from mts1b_datalake.store import Store

    return Store(root) if root else Store.default()


def serve(
    store: StoreOpt = None, dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA,
    namespace: Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                  help="NATS namespace prefix")] = None,
    calendar: Annotated[str, typer.Option(help="exchange calendar of the rebalances")] = "XNYS",
    keys: Annotated[Path | None, typer.Option(
        envvar="MTS_RESEARCH_KEYS",
        help="key registry: the public keys that may sign strategy commands (promote, "
             "enable), with their roles; without it every signed command is refused")] = None,
    min_sessions: Annotated[int, typer.Option(
        min=0, help="the promotion rule: at least this many sessions")] = 20,
    min_ic: Annotated[float | None, typer.Option(help="the promotion rule: a mean IC floor")
                      ] = None,
    min_t_stat: Annotated[float | None, typer.Option(
        help="the promotion rule: a t-stat floor")] = None,
    strategy: Annotated[list[str] | None, typer.Option(
        help="serve only this strategy (repeatable; default: every active one)")] = None,
    replay_clock: Annotated[bool, typer.Option(
        help="publish each replayed session's signals when a lockstep replay says it is "
             "over (`mts mts1b-datalake replay --lockstep ...,research,...`), not at "
             "wall-clock times")] = False,
    heartbeat_interval: Annotated[float, typer.Option(
        envvar="MTS_HEARTBEAT_INTERVAL", min=0.001, max=3600,
        help="seconds between two heartbeats on mts.v1.operations.heartbeats.mts1b-research")
                                  ] = 10.0,
) -> None:
    """Publish every shadow, paper and live strategy's signal at its rebalance times until
    SIGTERM (shadow ones on mts.v1.research.signals.shadow), and answer signed strategy
    commands. It beats as mts1b-research every --heartbeat-interval seconds."""
    from mts1b_platform.logging import set_service
    from mts1b_platform.signing import KeyRegistry

    from mts1b_research.promotion import MinimumEvidence
    from mts1b_research.service import ServeOptions, run_service

    set_service("research")
    opts = ServeOptions(dsn=dsn, store=store, schema=schema, namespace=namespace,
                        calendar=calendar, keys=KeyRegistry.load(keys) if keys else None,
                        replay_clock=replay_clock, strategies=tuple(strategy or ()),
                        heartbeat_interval=heartbeat_interval,
                        rule=MinimumEvidence(min_sessions, min_ic=min_ic,
                                             min_t_stat=min_t_stat))
    typer.echo(f"research serving (schema {schema}{f', namespace {namespace}' if namespace else ''}"
               "); SIGTERM stops")
    asyncio.run(run_service(opts))
    typer.echo("research stopped")


def signal(
    name: Annotated[str, typer.Argument(help="strategy name")],
    date: Annotated[str | None, typer.Option("--date", help="session, YYYY-MM-DD")] = None,
    store: StoreOpt = None, dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """Compute a registered strategy's signal for one session and print it as JSON (nothing is
    published)."""
    from mts1b_research.registry import StrategyRegistry
    from mts1b_research.signals import compute_signal

    session = _day("--date", date)

    async def spec_of() -> Any:
        async with await StrategyRegistry.open(dsn, schema=schema) as registry:
            return (await registry.show(name)).spec

    spec = asyncio.run(spec_of())
    at = dt.datetime.combine(session, dt.time(21, 0), tzinfo=dt.UTC)
    typer.echo(compute_signal(spec, _store(store), session, at).to_json().decode())


def report(
    name: Annotated[str, typer.Argument(help="strategy name")],
    out: Annotated[Path, typer.Option(help="the HTML file to write")],
    end: Annotated[str | None, typer.Option(help="last session, YYYY-MM-DD (default: today)")
                   ] = None,
    realised: Annotated[Path | None, typer.Option(
        help="CSV date,return: the strategy's realised daily returns since it went live")
                        ] = None,
    realised_from_treasury: Annotated[str | None, typer.Option(
        help="FUND: the realised returns from the NAVs the treasury struck for this fund "
             "(its attribution to the strategy), read from NATS")] = None,
    capital: Annotated[str | None, typer.Option(
        help="the sleeve's capital the treasury returns are relative to (default: the "
             "strategy's capital_usd)")] = None,
    since: Annotated[str | None, typer.Option(
        help="compare realised and backtested returns from this session (default: the day "
             "it went live)")] = None,
    namespace: Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                  help="NATS namespace prefix")] = None,
    store: StoreOpt = None, dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """Write one self-contained HTML page: rolling IC and rank IC with bands, IC decay by
    horizon, realised against backtested returns since going live, turnover, state history."""
    from mts1b_research.registry import StrategyRegistry
    from mts1b_research.report import render_report
    from mts1b_research.reporting import read_returns, realised_from_navs, report_data

    last = _day("--end", end)
    if realised and realised_from_treasury:
        raise ResearchInputError("--realised", str(realised), "give it or "
                                 "--realised-from-treasury, not both")
    returns = read_returns(realised) if realised else None
    first = _day("--since", since) if since else None

    async def gather() -> Any:
        async with await StrategyRegistry.open(dsn, schema=schema) as registry:
            record = await registry.show(name)
            return record.spec, await registry.history(name)

    spec, history = asyncio.run(gather())
    if realised_from_treasury:
        money = spec.capital_usd if capital is None else _capital(capital)
        if money is None:
            raise ResearchInputError("--capital", None, f"{spec.name} has no capital_usd: "
                                     "give the sleeve's capital")
        navs = asyncio.run(_fund_navs(realised_from_treasury, namespace))
        returns = realised_from_navs(navs, spec.name, money)
    data = report_data(spec, _store(store), last, history, realised=returns, since=first)
    out.write_text(render_report(data), encoding="utf-8")
    typer.echo(json.dumps({"report": str(out), "strategy": spec.name, "version": spec.version,
                           "sessions": len(data.dates)}))


def _capital(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ResearchInputError("--capital", text, "not a number") from None
    if not value.is_finite() or value <= 0:
        raise ResearchInputError("--capital", text, "must be a finite number > 0")
    return value


async def _fund_navs(fund_id: str, namespace: str | None) -> list[Any]:
    """Every NAV the treasury published for ``fund_id`` (its stream keeps them)."""
    from mts1b_foundation import FundNav, ValidationFailed, parse_message
    from mts1b_platform.bus import Bus, BusError
    from mts1b_platform.follow import history

    overrides: dict[str, Any] = {"name": "mts1b-research-report", "connect_timeout": 5}
    if namespace:
        overrides["namespace"] = namespace
    bus = await Bus.connect(**overrides)
    try:
        try:
            stored = await history(bus, "treasury", "mts.v1.treasury.nav.struck")
        except BusError:  # the stream is not there: nothing struck in this namespace
            raise ResearchInputError("--realised-from-treasury", fund_id,
                                     "no treasury stream in this NATS namespace") from None
    finally:
        await bus.drain()
    navs: list[FundNav] = []
    for _subject, data in stored:
        try:
            nav = parse_message(FundNav, data)
        except ValidationFailed:  # an unreadable event is not this fund's NAV
            continue
        if nav.fund_id == fund_id:
            navs.append(nav)
    if not navs:
        raise ResearchInputError("--realised-from-treasury", fund_id,
                                 "the treasury has published no NAV of this fund")
    return navs


def install(app: typer.Typer) -> None:
    """Add ``serve``, ``signal`` and ``report`` to the ``mts mts1b-research`` group."""
    app.command("serve")(serve)
    app.command("signal")(signal)
    app.command("report")(report)
