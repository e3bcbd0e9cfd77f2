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
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from mts1b_foundation import Allocation, FundConfig, TaxLotMethod, parse_message

from mts1b_treasury.db import DEFAULT_SCHEMA, TreasuryDb
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.funds import FundPublisher, FundRecord, FundRegistry

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


def _run(coro: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await coro
    return asyncio.run(wrapped())


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
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    actor: Actor = "cli", as_json: AsJson = False,
) -> None:
    """Create a fund from --file, or from --id and --target-nav-usd (and the options)."""
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
    record = _run(_with_registry(dsn, schema, namespace, True,
                                 lambda reg: reg.create(config, actor=actor)))
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
    role: Annotated[list[str] | None, typer.Option(
        help="a role the actor holds; loosening a limit needs 'risk'")] = None,
    reason: Annotated[str | None, typer.Option(help="why (recorded)")] = None,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    actor: Actor = "cli", as_json: AsJson = False,
) -> None:
    """Replace an open fund's configuration (a new version; loosening needs --role risk)."""
    configs = _read_funds(file)
    if len(configs) != 1:
        raise TreasuryInputError("file", str(file), f"holds {len(configs)} funds, not one")
    record = _run(_with_registry(dsn, schema, namespace, True, lambda reg: reg.configure(
        configs[0], actor=actor, roles=role or (), reason=reason)))
    _print_record(record, as_json)


@fund_app.command("import")
def fund_import(
    file: Annotated[Path, typer.Argument(help="JSON file: a FundConfig or a list of them")],
    role: Annotated[list[str] | None, typer.Option(
        help="a role the actor holds; loosening an existing fund's limit needs 'risk'")] = None,
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA, namespace: Namespace = None,
    actor: Actor = "cli",
) -> None:
    """Create the funds of a funds.json that do not exist, configure those that do."""
    configs = _read_funds(file)
    records = _run(_with_registry(dsn, schema, namespace, True, lambda reg: reg.import_funds(
        configs, actor=actor, roles=role or ())))
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
    allocation = Allocation(fund_id=fund, strategy_id=strategy, amount_usd=value,
                            as_of=dt.datetime.now(dt.UTC), reason=reason)
    _run(_with_registry(dsn, schema, namespace, True,
                        lambda reg: reg.allocate(allocation, actor=actor)))
    typer.echo(f"{fund}{f'/{strategy}' if strategy else ''}: {value:f} allocated")


if __name__ == "__main__":  # python -m mts1b_treasury.cli ...: `mts mts1b-treasury ...`
    from mts1b_platform.cli import main

    main(["mts1b-treasury", *sys.argv[1:]])
