"""``mts mts1b-treasury ...``: funds and their capital, the NAV strike, lots and gains, the
service.

Every command works on the treasury's PostgreSQL schema (``--dsn`` / ``$MTS_DATABASE_URL``,
``--schema`` / ``$MTS_TREASURY_SCHEMA``). A fund change is committed there first - the
treasury is the system of record - and then published on NATS (the funds KV bucket the OMS
reads, and ``mts.v1.treasury.*`` events); when NATS cannot be reached the command says so and
``serve`` publishes every fund when it starts. Errors are one line naming the field and the
value (``mts: [TREASURY.BAD_INPUT] ...``), exit status 1.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from mts1b_foundation import Allocation, FundConfig, TaxLotMethod, parse_message

from mts1b_treasury.db import DEFAULT_SCHEMA, TreasuryDb
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.funds import FundPublisher, FundRecord, FundRegistry
from mts1b_treasury.ledger import Ledger

__all__ = ["app"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
T = TypeVar("T")

app = typer.Typer(name="mts1b-treasury", help="MTS1B treasury: funds, ledger, lots, NAV.",
                  no_args_is_help=True, add_completion=False)
fund_app = typer.Typer(help="Create, list, show, configure, close and import funds.",
                       no_args_is_help=True, add_completion=False)
app.add_typer(fund_app, name="fund")

Dsn = Annotated[str, typer.Option(envvar="MTS_DATABASE_URL", help="PostgreSQL DSN")]
Schema = Annotated[str, typer.Option(envvar="MTS_TREASURY_SCHEMA", help="PostgreSQL schema")]
Namespace = Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                               help="NATS namespace prefix")]
Actor = Annotated[str, typer.Option(envvar="MTS_ACTOR", help="who makes the change (recorded)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]


def _decimal(field: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise TreasuryInputError(field, text, "not a decimal number") from None
    if not value.is_finite():
        raise TreasuryInputError(field, text, "not a finite number")
    return value


def _instant(field: str, text: str) -> dt.datetime:
    """A date (00:00 UTC) or an ISO time with its zone, in UTC."""
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TreasuryInputError(field, text, "not a date (YYYY-MM-DD) or an ISO time"
                                 ) from None
    if value.tzinfo is None:
        raise TreasuryInputError(field, text, "an ISO time needs its zone (e.g. +00:00)")
    return value.astimezone(dt.UTC)


def _read_funds(path: Path) -> list[FundConfig]:
    """FundConfigs from a JSON file: one object or a list (the OMS's ``funds.json``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TreasuryInputError("file", str(path), f"cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TreasuryInputError("file", str(path), f"not JSON ({exc})") from None
    items = data if isinstance(data, list) else [data]
    return [parse_message(FundConfig, item) for item in items]


async def _with_registry(dsn: str, schema: str, namespace: str | None, publish: bool,
                         work: Callable[[FundRegistry], Awaitable[T]]) -> T:
    """Run ``work`` on a registry; publish its changes when NATS answers."""
    db = await TreasuryDb.open(dsn, schema=schema)
    bus = await _bus_or_none(namespace) if publish else None
    try:
        publisher: FundPublisher | None = None
        if bus is not None:
            from mts1b_treasury.publish import BusFundPublisher
            await bus.declare_streams(["treasury"])
            publisher = BusFundPublisher(bus)
        return await work(FundRegistry(db, publisher))
    finally:
        if bus is not None:
            await bus.drain()
        await db.close()


async def _bus_or_none(namespace: str | None) -> Any:
    from mts1b_platform.bus import Bus, BusError

    try:
        overrides: dict[str, Any] = {"name": "mts1b-treasury-cli", "connect_timeout": 2}
        if namespace:
            overrides["namespace"] = namespace
        return await Bus.connect(**overrides)
    except BusError:
        typer.echo("mts1b-treasury: NATS is not reachable: committed, not published (`mts "
                   "mts1b-treasury serve` publishes every fund when it starts)", err=True)
        return None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _print_record(record: FundRecord, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"version": record.version, "status": record.status,
                               "updated_at": record.updated_at.isoformat(),
                               "updated_by": record.updated_by,
                               "config": json.loads(record.config.to_json())}, indent=1))
        return
    c = record.config
    typer.echo(f"{c.fund_id} ({c.name}): {record.status}, version {record.version}, "
               f"target NAV {c.target_nav_usd:f} {c.base_currency}, broker {c.broker} "
               f"account {c.broker_account_id}, lots {c.tax_lot_method.value}, strategies "
               f"{', '.join(c.strategies) or '-'}")


@fund_app.command("create")
def fund_create(
    file: Annotated[Path | None, typer.Option(help="JSON file holding one FundConfig")] = None,
    fund_id: Annotated[str | None, typer.Option("--id", help="fund id")] = None,
    name: Annotated[str | None, typer.Option(help="fund name (default: the id)")] = None,
    target_nav_usd: Annotated[str | None, typer.Option(
        help="the fund's capital, as backtrader's setcash")] = None,
    broker: Annotated[str, typer.Option(help="broker name")] = "paper",
    account: Annotated[str | None, typer.Option(help="broker account id (default: the id)")
                       ] = None,
    strategy: Annotated[list[str] | None, typer.Option(help="a strategy that may trade it")
                        ] = None,
    lot_method: Annotated[TaxLotMethod, typer.Option(help="tax-lot method")
                          ] = TaxLotMethod.FIFO,
    tax_entity: Annotated[str, typer.Option(
        help="the taxpayer: wash sales are found across the funds of one entity")] = "default",
    opening_cash: Annotated[str | None, typer.Option(
        help="capital paid in at creation (default: the target NAV, as setcash; 0: none)")
                            ] = None,
    opened_at: Annotated[str | None, typer.Option(
        help="when the fund opens and its opening cash is paid in, YYYY-MM-DD (00:00 UTC) or "
             "an ISO time with its zone (default: now); a fund traded over a replay of "
             "history opens before the replay's first session")] = None,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    actor: Actor = "cli", as_json: AsJson = False,
) -> None:
    """Create a fund from --file, or from --id and --target-nav-usd (and the options); its
    ledger opens with --opening-cash paid in (by default the target NAV)."""
    opened = _instant("--opened-at", opened_at) if opened_at is not None else None
    if file is not None:
        configs = _read_funds(file)
        if len(configs) != 1:
            raise TreasuryInputError("file", str(file), f"holds {len(configs)} funds; "
                                     "`fund import` takes several")
        config = configs[0]
    else:
        if fund_id is None or target_nav_usd is None:
            raise TreasuryInputError("--id/--target-nav-usd", None,
                                     "give --file, or both --id and --target-nav-usd")
        config = parse_message(FundConfig, {
            "fund_id": fund_id, "name": name or fund_id,
            "target_nav_usd": str(_decimal("--target-nav-usd", target_nav_usd)),
            "broker": broker, "broker_account_id": account or fund_id,
            "strategies": strategy or [], "tax_lot_method": lot_method.value})
    cash = config.target_nav_usd if opening_cash is None else _decimal("--opening-cash",
                                                                        opening_cash)
    if cash < 0:
        raise TreasuryInputError("--opening-cash", opening_cash, "must be >= 0")

    async def create(reg: FundRegistry) -> FundRecord:
        record = await reg.create(config, actor=actor, tax_entity=tax_entity, now=opened)
        ledger = Ledger(reg.db)
        await ledger.open_fund_accounts(config.fund_id, config.tax_lot_method)
        if cash > 0:
            await ledger.contribute(config.fund_id, cash, key=f"opening:{config.fund_id}",
                                    when=record.updated_at)
        return record

    record = _run(_with_registry(dsn, schema, namespace, True, create))
    _print_record(record, as_json)


@fund_app.command("list")
def fund_list(
    include_closed: Annotated[bool, typer.Option("--all", help="closed funds too")] = False,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, as_json: AsJson = False,
) -> None:
    """The open funds (with --all, the closed ones too)."""
    records = _run(_with_registry(dsn, schema, None, False,
                                  lambda reg: reg.funds(include_closed=include_closed)))
    if as_json:
        typer.echo(json.dumps([json.loads(r.config.to_json()) | {"status": r.status,
                                                                   "version": r.version}
                               for r in records], indent=1))
        return
    if not records:
        typer.echo("no funds (mts mts1b-treasury fund create --id ID --target-nav-usd N)")
    for record in records:
        _print_record(record, False)


@fund_app.command("show")
def fund_show(
    fund_id: Annotated[str, typer.Argument(help="fund id")],
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, as_json: AsJson = False,
) -> None:
    """A fund: its configuration, effective limits, allocations and version history."""
    async def work(reg: FundRegistry) -> tuple[FundRecord, list[Allocation],
                                               list[dict[str, Any]]]:
        record = await reg.require(fund_id)
        return record, await reg.allocations(fund_id), await reg.history(fund_id)

    record, allocations, history = _run(_with_registry(dsn, schema, None, False, work))
    if as_json:
        _print_record(record, True)
        return
    _print_record(record, False)
    typer.echo("limits:")
    for key, value in record.config.effective_limits().items():
        typer.echo(f"  {key}: {value}")
    typer.echo("allocations:")
    for a in allocations:
        typer.echo(f"  {a.strategy_id or '(fund)'}: {a.amount_usd:f} as of "
                   f"{a.as_of.isoformat()}{f' ({a.reason})' if a.reason else ''}")
    typer.echo("history:")
    for h in history:
        why = f": {h['reason']}" if h["reason"] else ""
        loosened = f", loosened {', '.join(h['loosened'])}" if h["loosened"] else ""
        typer.echo(f"  v{h['version']} {h['status']} {h['changed_at'].isoformat()} by "
                   f"{h['changed_by']}{why}{loosened}")


@fund_app.command("configure")
def fund_configure(
    file: Annotated[Path, typer.Option(help="JSON file holding the fund's new FundConfig")],
    key_file: Annotated[Path, typer.Option(
        envvar="MTS_TREASURY_KEY_FILE",
        help="your private signing key (`mts mts1b-platform keygen`); loosening a limit needs "
             "a key with the risk role")],
    reason: Annotated[str, typer.Option(help="why (recorded, signed)")],
    namespace: Namespace = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the treasury")
                       ] = 10.0,
) -> None:
    """Send a signed new configuration of an open fund to the treasury service."""
    from mts1b_foundation import ConfigureFund, ValidationFailed
    from mts1b_platform.signing import KeyFileError, SigningKey

    configs = _read_funds(file)
    if len(configs) != 1:
        raise TreasuryInputError("file", str(file), f"holds {len(configs)} funds, not one")
    try:
        key = SigningKey.load(key_file)
    except KeyFileError as exc:
        raise typer.BadParameter(exc.message, param_hint="--key-file") from None
    try:
        command = key.sign_command(ConfigureFund, {"config": configs[0], "reason": reason})
    except ValidationFailed as exc:
        raise typer.BadParameter(exc.message) from None
    reply = _run(_request(namespace, "mts.v1.treasury.commands.configure", command, timeout))
    if not reply.ok:
        code = reply.code.value if reply.code else "REFUSED"
        typer.echo(f"mts1b-treasury: NOT applied [{code}]: {reply.message}", err=True)
        raise typer.Exit(3)
    typer.echo(reply.message or "applied")


async def _request(namespace: str | None, subject: str, command: Any, timeout: float) -> Any:
    from mts1b_foundation import CommandReply
    from mts1b_platform.bus import BusError

    bus = await _bus_or_none(namespace)
    if bus is None:
        raise TreasuryInputError("--namespace", namespace, "NATS is not reachable: nothing "
                                 "was sent")
    try:
        return await bus.request(subject, command, timeout=timeout, reply_model=CommandReply)
    except BusError as exc:
        raise TreasuryInputError("subject", subject, f"no treasury service answered "
                                 f"({exc.code}): is `mts mts1b-treasury serve` running?"
                                 ) from None
    finally:
        await bus.drain()


@fund_app.command("import")
def fund_import(
    file: Annotated[Path, typer.Argument(help="JSON file: a FundConfig or a list of them")],
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    actor: Actor = "cli",
) -> None:
    """Create the funds of a funds.json that do not exist (their ledgers open without cash:
    pay it in with `ledger contribute`), configure those that do - refused if that loosens a
    limit (send it signed with `fund configure`)."""
    configs = _read_funds(file)

    async def work(reg: FundRegistry) -> list[FundRecord]:
        records = await reg.import_funds(configs, actor=actor)
        for record in records:
            await Ledger(reg.db).open_fund_accounts(record.fund_id,
                                                    record.config.tax_lot_method)
        return records

    records = _run(_with_registry(dsn, schema, namespace, True, work))
    for record in records:
        _print_record(record, False)


@fund_app.command("close")
def fund_close(
    fund_id: Annotated[str, typer.Argument(help="fund id")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    actor: Actor = "cli",
) -> None:
    """Close an open fund (the OMS stops serving it after its next restart)."""
    record = _run(_with_registry(dsn, schema, namespace, True,
                                 lambda reg: reg.close(fund_id, actor=actor, reason=reason)))
    _print_record(record, False)


@app.command()
def allocate(
    fund: Annotated[str, typer.Option(help="fund id")],
    amount: Annotated[str, typer.Option(help="capital in the fund's currency")],
    strategy: Annotated[str | None, typer.Option(
        help="one of the fund's strategies (default: the fund's own capital)")] = None,
    reason: Annotated[str | None, typer.Option(help="why (recorded)")] = None,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    actor: Actor = "cli",
) -> None:
    """Allocate capital to a fund or to one of its strategies."""
    value = _decimal("--amount", amount)
    if value < 0:
        raise TreasuryInputError("--amount", amount, "must be >= 0")
    allocation = parse_message(Allocation, {
        "fund_id": fund, "strategy_id": strategy, "amount_usd": f"{value:f}",
        "as_of": dt.datetime.now(dt.UTC).isoformat(), "reason": reason})
    _run(_with_registry(dsn, schema, namespace, True,
                        lambda reg: reg.allocate(allocation, actor=actor)))
    typer.echo(f"{fund}{f'/{strategy}' if strategy else ''}: {value:f} allocated")


if __name__ == "__main__":  # python -m mts1b_treasury.cli ...: `mts mts1b-treasury ...`
    from mts1b_platform.cli import main

    main(["mts1b-treasury", *sys.argv[1:]])


# --- the service ----------------------------------------------------------------------------


@app.command()
def serve(
    keys: Annotated[Path | None, typer.Option(
        envvar="MTS_TREASURY_KEYS",
        help="key registry: the public keys that may sign fund configurations, with their "
             "roles (without it every signed configuration is refused)")] = None,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    command_window: Annotated[float, typer.Option(
        min=0.001, max=3600, help="seconds a signed command's timestamp may lie from this "
                                  "clock")] = 30.0,
    ack_wait: Annotated[float | None, typer.Option(
        min=0.1, help="seconds before an event held by a dead process is delivered again "
                      "(default: the bus's, 30)")] = None,
    calendar: Annotated[str, typer.Option(help="exchange calendar of the daily strike")
                        ] = "XNYS",
    strike_after_close: Annotated[float, typer.Option(
        min=0, help="seconds after each close before every fund's NAV is struck with the "
                    "marks from mts.v1.datalake.bars.*")] = 300.0,
    scheduled_strike: Annotated[bool, typer.Option(
        "--scheduled-strike/--no-scheduled-strike",
        help="strike every open fund after each close")] = True,
    replay_clock: Annotated[bool, typer.Option(
        help="run on a lockstep replay's clock (`mts mts1b-datalake replay --lockstep "
             "...,treasury`): no scheduled strike; each replayed session is struck when the "
             "replay says it is over, after its order events are booked")] = False,
    heartbeat_interval: Annotated[float, typer.Option(
        envvar="MTS_HEARTBEAT_INTERVAL", min=0.001, max=3600,
        help="seconds between two heartbeats on mts.v1.operations.heartbeats.mts1b-treasury")
                                  ] = 10.0,
) -> None:
    """Run the treasury service until SIGTERM: order events into the ledger, signed fund
    configurations, broker snapshots kept for reconciliation, every fund published. It beats
    as mts1b-treasury every --heartbeat-interval seconds."""
    from mts1b_platform.logging import set_service
    from mts1b_platform.shutdown import run_announced
    from mts1b_platform.signing import KeyRegistry

    from mts1b_treasury.service import ServeOptions, run_service

    set_service("treasury")
    opts = ServeOptions(dsn=dsn, schema=schema, namespace=namespace,
                        keys=KeyRegistry.load(keys) if keys else None,
                        command_window=dt.timedelta(seconds=command_window),
                        ack_wait=ack_wait, calendar=calendar,
                        strike_grace=strike_after_close if scheduled_strike else None,
                        replay_clock=replay_clock, heartbeat_interval=heartbeat_interval)

    async def serve_and_report() -> None:
        def announce(ready: bool) -> None:
            if ready:
                typer.echo(f"treasury serving (schema {schema}"
                           f"{f', namespace {namespace}' if namespace else ''}); SIGTERM drains")

        ready = asyncio.Event()
        await run_announced(run_service(opts, ready=ready), ready, announce)
        typer.echo("treasury stopped")

    asyncio.run(serve_and_report())


# --- NAV, lots, gains ---------------------------------------------------------------------------

nav_app = typer.Typer(help="Strike and show a fund's daily NAV.", no_args_is_help=True,
                      add_completion=False)
app.add_typer(nav_app, name="nav")
lots_app = typer.Typer(help="A fund's lots: book lots, or the tax view.", no_args_is_help=True,
                       add_completion=False)
app.add_typer(lots_app, name="lots")
ledger_app = typer.Typer(help="A fund's books: balances, capital in and out, transfers, "
                                "splits and dividends.",
                         no_args_is_help=True, add_completion=False)
app.add_typer(ledger_app, name="ledger")


def read_prices(path: Path, field: str) -> dict[str, Decimal]:
    """Prices per symbol from a JSON object ``{"AAPL": "190.12"}`` or a CSV with the columns
    ``symbol`` and ``close``; a bad row is refused naming its line and value."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TreasuryInputError(field, str(path), f"cannot be read ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TreasuryInputError(field, str(path), f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise TreasuryInputError(field, str(path), 'expected {"SYMBOL": "price", ...}')
        return {str(k): _price(f"{field}[{k!r}]", str(v)) for k, v in data.items()}
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not {"symbol", "close"} <= set(rows[0]):
        raise TreasuryInputError(field, str(path), "a CSV needs the columns symbol and close")
    out: dict[str, Decimal] = {}
    for line, row in enumerate(rows, start=2):
        symbol = (row.get("symbol") or "").strip()
        if not symbol:
            raise TreasuryInputError(f"{field}:{line}", row, "no symbol")
        out[symbol] = _price(f"{field}:{line} close", (row.get("close") or "").strip())
    return out


def _price(field: str, text: str) -> Decimal:
    value = _decimal(field, text)
    if value <= 0:
        raise TreasuryInputError(field, text, "a price must be > 0")
    return value


@nav_app.command("strike")
def nav_strike(
    fund: Annotated[str, typer.Option(help="fund id")],
    date: Annotated[str, typer.Option("--date", help="the session, YYYY-MM-DD")],
    marks: Annotated[Path, typer.Option(help="closing prices: CSV symbol,close or JSON")],
    previous_marks: Annotated[Path | None, typer.Option(
        help="the previous session's closes (only for a fund's first strike that holds "
             "positions; later ones take them from the previous strike)")] = None,
    snapshot: Annotated[Path | None, typer.Option(
        help="a broker AccountSnapshot (JSON) to reconcile with")] = None,
    calendar: Annotated[str, typer.Option(help="exchange calendar of the close")] = "XNYS",
    restate: Annotated[bool, typer.Option(
        "--restate", help="replace a stored strike of this session whose inputs changed "
                          "(the old one is kept as history)")] = False,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    as_json: AsJson = False,
) -> None:
    """Strike a fund's NAV at a session's close from the ledger and the marks; store it;
    publish it (and any reconciliation alert) when NATS answers."""
    from mts1b_foundation import AccountSnapshot

    from mts1b_treasury.strike import strike_fund

    session = _date("--date", date)
    closes = read_prices(marks, "--marks")
    before = read_prices(previous_marks, "--previous-marks") if previous_marks else None
    account = None
    if snapshot is not None:
        try:
            account = parse_message(AccountSnapshot, snapshot.read_bytes())
        except OSError as exc:
            raise TreasuryInputError("--snapshot", str(snapshot),
                                     f"cannot be read ({exc.strerror})") from None

    async def work(reg: FundRegistry) -> Any:
        await reg.require(fund)
        outcome = await strike_fund(reg.db, fund, session, marks=closes, previous_marks=before,
                                    calendar=calendar, restate=restate, snapshot=account)
        bus = await _bus_or_none(namespace)
        if bus is not None:
            try:
                from mts1b_treasury.publish import BusFundPublisher

                await bus.declare_streams(["treasury", "operations"])
                await BusFundPublisher(bus).nav_struck(outcome.nav)
                for alert in (outcome.reconciliation.alerts if outcome.reconciliation else []):
                    await bus.publish_acked("mts.v1.operations.alerts.raised", alert,
                                            msg_id=alert.alert_id)
            finally:
                await bus.drain()
        return outcome

    outcome = _run(_with_registry(dsn, schema, None, False, work))
    nav = outcome.nav
    if as_json:
        typer.echo(nav.to_json().decode())
    else:
        typer.echo(f"{nav.fund_id} {nav.session}: NAV {nav.nav:f} (cash {nav.cash:f}, positions "
                   f"{nav.positions_value:f} in {nav.positions}), pnl {nav.pnl:f}, fees "
                   f"{nav.fees:f}, flows {nav.flows:f}")
        for strategy, pnl in sorted(nav.pnl_by_strategy.items()):
            typer.echo(f"  {strategy}: {pnl:f}")
        typer.echo(f"  (unattributed): {nav.unattributed:f}")
        typer.echo(f"  inputs {nav.inputs_sha256[:16]} outputs {nav.outputs_sha256[:16]}")
    recon = outcome.reconciliation
    if recon is not None:
        for alert in recon.alerts:
            typer.echo(f"reconciliation: {alert.text}", err=True)
        if not recon.ok:
            raise typer.Exit(4)
        typer.echo("reconciliation: settled cash and positions agree with the broker")


@lots_app.command("show")
def lots_show(
    fund: Annotated[str, typer.Option(help="fund id")],
    symbol: Annotated[str, typer.Option(help="symbol")],
    tax: Annotated[bool, typer.Option(
        "--tax", help="the tax view: basis with wash-sale adjustments, adjusted holding "
                      "period")] = False,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """A fund's open lots of one symbol (book cost), or with --tax their tax view."""
    from mts1b_treasury.taxes import entity_tax_view

    async def work(reg: FundRegistry) -> list[str]:
        record = await reg.require(fund)
        if tax:
            view = (await entity_tax_view(reg.db, record.tax_entity)).select(fund_id=fund,
                                                                             symbol=symbol)
            return [f"{t.lot_id}: {t.quantity:f} acquired {t.acquired} (holding from "
                    f"{t.adjusted_acquired}), basis {t.basis:f}, wash-sale adjustment "
                    f"{t.wash_sale_adjustment:f}" for t in view.lots]
        return [f"{lot.lot_id}: {lot.quantity:f} acquired {lot.acquired}, cost {lot.cost:f}, "
                f"fees {lot.fees:f}" for lot in await Ledger(reg.db).lots(fund, symbol)]

    lines = _run(_with_registry(dsn, schema, None, False, work))
    if not lines:
        typer.echo(f"{fund} holds no open lot of {symbol}")
    for line in lines:
        typer.echo(line)


@app.command()
def gains(
    year: Annotated[int, typer.Option(min=1900, max=9999, help="tax year")],
    tax_entity: Annotated[str, typer.Option(help="the taxpayer")] = "default",
    out: Annotated[Path | None, typer.Option(help="write the CSV here (default: stdout)")
                   ] = None,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """Realised gains of a tax year as a CSV shaped like IRS Form 8949 (wash-sale code W and
    adjustment), across the funds of one tax entity."""
    from mts1b_treasury.form8949 import gains_rows, write_form8949_csv
    from mts1b_treasury.taxes import entity_tax_view

    async def work(reg: FundRegistry) -> Any:
        return gains_rows(await entity_tax_view(reg.db, tax_entity), year=year)

    rows = _run(_with_registry(dsn, schema, None, False, work))
    if out is None:
        write_form8949_csv(rows, sys.stdout)
        return
    with out.open("w", encoding="utf-8", newline="") as handle:
        write_form8949_csv(rows, handle)
    typer.echo(f"{len(rows)} rows written to {out}", err=True)


@ledger_app.command("balances")
def ledger_balances(
    fund: Annotated[str, typer.Option(help="fund id")],
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, as_json: AsJson = False,
) -> None:
    """A fund's account balances (posted entries), positions and available cash."""
    async def work(reg: FundRegistry) -> tuple[dict[str, Decimal], Decimal]:
        await reg.require(fund)
        ledger = Ledger(reg.db)
        return await ledger.balances(fund), await ledger.available_cash(fund)

    balances, available = _run(_with_registry(dsn, schema, None, False, work))
    if as_json:
        typer.echo(json.dumps({"balances": {k: f"{v:f}" for k, v in balances.items()},
                               "available_cash": f"{available:f}"}, indent=1))
        return
    for account, amount in sorted(balances.items()):
        typer.echo(f"{account}: {amount:f}")
    typer.echo(f"available cash (less reservations): {available:f}")


def _flow(fund: str, amount: str, key: str, dsn: str, schema: str, out: bool) -> None:
    value = _decimal("--amount", amount)
    if value <= 0:
        raise TreasuryInputError("--amount", amount, "must be > 0")

    async def work(reg: FundRegistry) -> Any:
        await reg.require(fund)
        when = dt.datetime.now(dt.UTC)
        ledger = Ledger(reg.db)
        if out:
            return await ledger.withdraw(fund, value, key=key, when=when)
        return await ledger.contribute(fund, value, key=key, when=when)

    outcome = _run(_with_registry(dsn, schema, None, False, work))
    typer.echo(f"{fund}: {'withdrawal' if out else 'contribution'} {value:f} "
               f"{outcome.status.value} (key {key})")


Key = Annotated[str, typer.Option(help="idempotency key: the same key posts once")]


@ledger_app.command("contribute")
def ledger_contribute(fund: Annotated[str, typer.Option(help="fund id")],
                      amount: Annotated[str, typer.Option(help="cash paid in")], key: Key,
                      dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA) -> None:
    """Capital paid into a fund (a flow: not PnL)."""
    _flow(fund, amount, key, dsn, schema, False)


@ledger_app.command("withdraw")
def ledger_withdraw(fund: Annotated[str, typer.Option(help="fund id")],
                    amount: Annotated[str, typer.Option(help="cash paid out")], key: Key,
                    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA) -> None:
    """Capital paid out of a fund (a flow: not PnL)."""
    _flow(fund, amount, key, dsn, schema, True)


@ledger_app.command("transfer")
def ledger_transfer(
    source: Annotated[str, typer.Option("--from", help="paying fund")],
    target: Annotated[str, typer.Option("--to", help="receiving fund")],
    amount: Annotated[str, typer.Option(help="cash moved")], key: Key,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """Move cash from one fund to another (each fund's books balance on their own)."""
    value = _decimal("--amount", amount)
    if value <= 0:
        raise TreasuryInputError("--amount", amount, "must be > 0")

    async def work(reg: FundRegistry) -> Any:
        await reg.require(source)
        await reg.require(target)
        return await Ledger(reg.db).transfer(source, target, value, key=key,
                                             when=dt.datetime.now(dt.UTC))

    outcome = _run(_with_registry(dsn, schema, None, False, work))
    typer.echo(f"{source} -> {target}: {value:f} {outcome.status.value} (key {key})")


@ledger_app.command("split")
def ledger_split(
    symbol: Annotated[str, typer.Option(help="symbol")],
    ratio: Annotated[str, typer.Option(
        help="new shares per old: 2 for 2-for-1, 0.1 for 1-for-10")],
    effective: Annotated[str, typer.Option(help="ex-date, YYYY-MM-DD")], key: Key,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """Apply a stock split to every fund holding the symbol (lots adjusted, no cash moves)."""
    value = _decimal("--ratio", ratio)
    if value <= 0:
        raise TreasuryInputError("--ratio", ratio, "must be > 0")
    day = _date("--effective", effective)

    async def work(reg: FundRegistry) -> Any:
        return await Ledger(reg.db).apply_split(symbol, value, day, key)

    outcomes = _run(_with_registry(dsn, schema, None, False, work))
    typer.echo(f"split {symbol} {value:f} effective {day}: "
               f"{', '.join(o.status.value for o in outcomes) or 'no fund holds it'}")


@ledger_app.command("dividend")
def ledger_dividend(
    fund: Annotated[str, typer.Option(help="fund id")],
    symbol: Annotated[str, typer.Option(help="symbol")],
    per_share: Annotated[str, typer.Option(help="cash per share")],
    ex_date: Annotated[str, typer.Option(help="ex-date, YYYY-MM-DD")],
    pay_date: Annotated[str, typer.Option(help="pay date, YYYY-MM-DD")], key: Key,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """A cash dividend on the position the fund held at the start of the ex-date."""
    value = _decimal("--per-share", per_share)
    if value <= 0:
        raise TreasuryInputError("--per-share", per_share, "must be > 0")
    ex, pay = _date("--ex-date", ex_date), _date("--pay-date", pay_date)

    async def work(reg: FundRegistry) -> Any:
        await reg.require(fund)
        return await Ledger(reg.db).post_dividend(fund, symbol, value, ex, pay, key)

    outcome = _run(_with_registry(dsn, schema, None, False, work))
    typer.echo(f"{fund}: dividend {symbol} {value:f}/share {outcome.status.value} (key {key})")


def _date(field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise TreasuryInputError(field, text, "not a date (YYYY-MM-DD)") from None


@ledger_app.command("corporate-actions")
def ledger_corporate_actions(
    events: Annotated[Path, typer.Option(
        help="CSV symbol,date,kind,value (`mts mts1b-datalake store events`)")],
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
) -> None:
    """Book the datalake's splits (every fund holding the symbol) and cash dividends (each
    open fund, on what it held at the ex-date); booking a file again books nothing twice."""
    from mts1b_treasury.corporate import book_actions, read_actions

    actions = read_actions(events)
    booked = _run(_with_registry(dsn, schema, None, False,
                                 lambda reg: book_actions(reg, actions)))
    counts: dict[str, int] = {}
    for _, _, outcome in booked:
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to book"
    typer.echo(f"{len(actions)} corporate actions: {summary}")
    for action, fund, outcome in booked:
        if outcome.status.value == "conflict":
            typer.echo(f"conflict: {action.kind} {action.symbol} {action.ex_date} ({fund}) was "
                       f"booked before with other terms", err=True)
    if counts.get("conflict"):
        raise typer.Exit(3)
