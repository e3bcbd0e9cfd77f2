"""``mts mts1b-oms ...``: serve the OMS, halt, reduce and resume trading, show the kill-switch
state, make signing keys.

``halt`` / ``reduce`` / ``resume`` sign the command with the private key in ``--key-file`` (or
the file ``$MTS_OMS_KEY_FILE`` names) and send it to a running OMS instance, which verifies it
(:mod:`mts1b_oms.signing`) and writes the trading state to PostgreSQL (the system of record) and
to the NATS KV bucket; every running instance sees the KV change at once and cancels the working
orders of a halted scope at its broker. When no instance can be asked, ``halt`` and ``reduce``
store the change in PostgreSQL themselves and exit non-zero; ``resume`` never does (only an
instance that checked the key's role may lift a halt). ``keygen`` makes a key: the private key
to a file only its owner may read, the public key's registry entry on stdout.

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
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from mts1b_platform.commands import keygen

if TYPE_CHECKING:
    from mts1b_foundation import SignedStateCommand

    from mts1b_oms.signing import SigningKey

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
    instruments: Annotated[list[Path], typer.Option(
        envvar="MTS_OMS_INSTRUMENTS",
        help="instrument registry: a JSON or CSV file (repeat to combine; a later file's "
             "entry replaces an earlier one's)")],
    keys: Annotated[Path, typer.Option(
        envvar="MTS_OMS_KEYS",
        help="key registry: a JSON file of the public keys that may sign halt, reduce and "
             "resume, with their roles")],
    funds: Annotated[Path | None, typer.Option(
        envvar="MTS_OMS_FUNDS",
        help="JSON file: a list of FundConfig; without it, the treasury's open funds "
             "(mts mts1b-treasury fund create) and their changes")] = None,
    broker: Annotated[str, typer.Option(
        help="paper: the paper broker service over NATS (mts mts1b-brokers serve paper), "
             "started by the OMS as a child process when none answers within --broker-wait; "
             "it follows the bars on mts.v1.datalake.bars.* (mts mts1b-datalake replay) and "
             "keeps running when the OMS stops. Any other name: an entry point in "
             "mts1b.brokers, or module:attr, run in this process")] = "paper",
    broker_arg: Annotated[list[str] | None, typer.Option(
        help="key=value for the broker. For paper (used when the OMS starts the service): "
             "account=ID=CASH[,ID=CASH] (default: each fund's account with its target NAV), "
             "cash=CASH (any account opens with it), participation_rate, commission_bps, "
             "slippage_bps, seed, calendar; timeout=SECONDS per request")] = None,
    broker_wait: Annotated[float, typer.Option(
        min=0, help="--broker paper: seconds a running paper broker service has to answer "
                    "before the OMS starts one")] = 3.0,
    prices: Annotated[Path | None, typer.Option(help="JSON file {symbol: price}")] = None,
    dsn: Dsn = DEFAULT_DSN,
    schema: Schema = "mts_oms",
    namespace: Namespace = None,
    concurrency: Annotated[int, typer.Option(min=1, help="commands handled at once")] = 64,
    full_gc_interval: Annotated[float, typer.Option(
        min=0.001, help="seconds between the full garbage collections the service runs")] = 60.0,
    cancel_rate: Annotated[float | None, typer.Option(
        min=0.001, help="cancels per second a kill-switch sweep sends to the broker "
                        "(default: the broker's own, else 10)")] = None,
    sweep_drain_seconds: Annotated[float, typer.Option(
        min=0, help="at SIGTERM, seconds the kill-switch sweeps may still run")] = 30.0,
    command_window: Annotated[float, typer.Option(
        min=0.001, max=3600,
        help="seconds a signed command's timestamp may lie from this instance's clock")
                              ] = 30.0,
    replay_clock: Annotated[bool, typer.Option(
        "--replay-clock",
        help="run on a lockstep replay's clock (mts mts1b-datalake replay --lockstep "
             "broker-paper,oms,...): the OMS's time is the session's close, and it answers "
             "each session's tick as 'oms' once the broker's reports are applied and their "
             "events published; a paper broker service it starts gets --replay-clock too")
                          ] = False,
    heartbeat_interval: Annotated[float, typer.Option(
        envvar="MTS_HEARTBEAT_INTERVAL", min=0.001, max=3600,
        help="seconds between two heartbeats on mts.v1.operations.heartbeats.mts1b-oms")
                                  ] = 10.0,
) -> None:
    """Run the OMS service until SIGTERM (then drain).

    With --broker paper (the default) orders go to the paper broker service over NATS; the
    OMS starts one (`mts mts1b-brokers serve paper`, in its own session) if none answers, and
    leaves it running at exit: the paper venue holds the working orders in memory, and a
    service apart from the OMS keeps them through an OMS crash or SIGKILL. Feed it bars with
    `mts mts1b-datalake replay`.
    """
    from mts1b_platform.logging import set_service
    from mts1b_platform.shutdown import run_announced

    set_service("oms")  # before anything logs: every line of this process names the OMS
    from mts1b_oms.instruments import InstrumentRegistry
    from mts1b_oms.service import ServeOptions, load_funds, run_service
    from mts1b_oms.signing import KeyRegistry

    px = {k: Decimal(str(v)) for k, v in json.loads(prices.read_text()).items()} if prices else {}
    opts = ServeOptions(dsn=dsn, funds=load_funds(funds) if funds else [],
                        funds_from_treasury=funds is None,
                        instruments=InstrumentRegistry.load(instruments), broker=broker,
                        broker_args=_parse_args(broker_arg or []), schema=schema,
                        namespace=namespace, prices=px, concurrency=concurrency,
                        full_gc_interval=full_gc_interval, cancel_rate=cancel_rate,
                        sweep_drain_seconds=sweep_drain_seconds, keys=KeyRegistry.load(keys),
                        command_window=dt.timedelta(seconds=command_window),
                        broker_wait=broker_wait, replay_clock=replay_clock,
                        heartbeat_interval=heartbeat_interval)

    async def serve_and_report() -> None:
        started: list[int] = []

        def announce(ready: bool) -> None:
            for pid in started:  # also when the OMS failed after starting it
                typer.echo(f"started the paper broker service (mts mts1b-brokers serve paper) "
                           f"as pid {pid}; it keeps running when the OMS stops (it holds the "
                           f"paper orders): stop it with `kill {pid}`")
            if ready:
                typer.echo(f"oms serving funds {', '.join(f.fund_id for f in opts.funds)} on "
                           f"mts.v1.oms.commands.* (schema {schema}"
                           f"{f', namespace {namespace}' if namespace else ''}); SIGTERM drains")

        ready = asyncio.Event()
        # its exception, if it failed to start, ends the command
        await run_announced(run_service(opts, ready=ready, started=started), ready, announce)
        typer.echo("oms stopped")

    asyncio.run(serve_and_report())


def _scope(fund: str | None, strategy: str | None, all_: bool) -> tuple[str, str]:
    chosen = [x for x in (fund, strategy) if x] + (["*"] if all_ else [])
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --fund F, --strategy S, --all")
    if all_:
        return "global", "*"
    return ("fund", fund) if fund else ("strategy", strategy or "")


EXIT_REFUSED = 1
"""The instance refused the command, or nothing could be stored anywhere."""
EXIT_BUS_UNREACHABLE = 3
"""NATS could not be used (unreachable, credentials refused, state commands not permitted):
the state is stored in PostgreSQL only."""
EXIT_NO_ACK = 4
"""No OMS instance answered within ``--timeout``: the state is stored in PostgreSQL only."""
EXIT_NOT_ALL_CANCELED = 5
"""``--wait``: an order's cancel was refused, or the sweep did not finish in time."""


@dataclass
class _Outcome:
    """What ``halt`` / ``resume`` did: the exit code, the line for stdout (the new state) and
    the explanation for stderr, and the sweep to wait for."""

    code: int
    stdout: str = ""
    stderr: str = ""
    sweep_id: str | None = None


async def _set_state(command: SignedStateCommand, dsn: str, schema: str,
                     namespace: str | None, timeout: float) -> _Outcome:
    """Ask a running instance (over NATS) to verify and apply the signed command; if none can
    be asked or none answers, store a halt or reduce in PostgreSQL directly - running instances
    take it in from there at their next poll, a starting one at start - and say so with a
    non-zero exit code (a resume is never stored directly)."""
    from mts1b_foundation import CommandReply, TradingState
    from mts1b_platform.bus import (
        Bus,
        BusAuthError,
        BusError,
        BusPermissionError,
        RequestFailed,
    )
    from mts1b_platform.redaction import redact

    what = f"{command.scope} {command.scope_id}: {command.STATE.value}"
    overrides: dict[str, Any] = {"connect_timeout": min(timeout, 5.0)}
    if namespace:
        overrides["namespace"] = namespace
    try:
        bus = await Bus.connect(**overrides)
    except BusError as exc:
        why = "NATS refused the credentials" if isinstance(exc, BusAuthError) else (
            "NATS is unreachable")
        return await _store_directly(command, dsn, schema, EXIT_BUS_UNREACHABLE,
                                     f"{why} ({redact(exc.message)})")
    try:
        reply = await bus.request(f"mts.v1.oms.commands.{command.COMMAND}", command,
                                  timeout=timeout, reply_model=CommandReply)
    except RequestFailed as exc:
        return _Outcome(EXIT_REFUSED, stderr=f"{what} refused: {redact(exc.message)}")
    except BusPermissionError as exc:
        return await _store_directly(command, dsn, schema, EXIT_BUS_UNREACHABLE,
                                     f"NATS does not permit this account to send {command.COMMAND} "
                                     f"commands ({redact(exc.message)})")
    except BusError as exc:
        return await _store_directly(command, dsn, schema, EXIT_NO_ACK,
                                     f"no OMS instance acknowledged it within {timeout:g}s "
                                     f"({redact(exc.message)})")
    finally:
        await bus.drain()
    if not isinstance(reply, CommandReply) or not reply.ok:
        code = reply.code.value if isinstance(reply, CommandReply) and reply.code else "?"
        message = reply.message if isinstance(reply, CommandReply) else ""
        return _Outcome(EXIT_REFUSED, stderr=f"{what} refused by the OMS: {code}: {message}")
    sweep_id = reply.context.get("sweep_id")
    outstanding = reply.context.get("outstanding", 0)
    if reply.context.get("applied") is False:  # a reduce by a key without risk only tightens
        return _Outcome(0, stdout=f"{what} not applied: the scope's stored state is as "
                                  "restrictive already")
    if command.STATE is TradingState.ACTIVE:
        return _Outcome(0, stdout=what)
    swept = f", sweep {sweep_id}" if isinstance(sweep_id, str) else ""
    return _Outcome(0, stdout=f"{what} ({outstanding} cancels outstanding{swept})",
                    sweep_id=sweep_id if isinstance(sweep_id, str) else None)


async def _store_directly(command: SignedStateCommand, dsn: str, schema: str, code: int,
                          why: str) -> _Outcome:
    """A halt or reduce straight into PostgreSQL with its sweep, as an instance would write it,
    its nonce claimed first so the same signed command sent later is refused as a replay.

    No OMS checked the signature here: what authorizes the write is the database credential,
    and it can only take risk off - a reduce is written only if it tightens the scope, and a
    resume is never written (only an instance that checked the key's role may lift a halt)."""
    from mts1b_foundation import ReduceTrading, ResumeTrading, TradingState, new_event_id
    from mts1b_platform.redaction import redact

    from mts1b_oms.signing import NONCE_RETENTION
    from mts1b_oms.store import OutboxItem, Store, StoreError
    from mts1b_oms.tradingstate import make_change

    what = f"{command.scope} {command.scope_id}: {command.STATE.value}"
    if isinstance(command, ResumeTrading):
        return _Outcome(code, stderr=f"{what} NOT applied: {why}. A resume is applied only by a "
                                     "running OMS instance, which verifies the signature and "
                                     "the key's role; nothing changed.")
    now = dt.datetime.now(dt.UTC)
    change = make_change(command.scope, command.scope_id, command.STATE, command.key_id,
                         command.reason, now)
    sweep_id = None
    if command.STATE is not TradingState.ACTIVE:
        sweep_id = new_event_id().replace("evt-", "swp-", 1)
    try:
        store = await Store.open(dsn, schema=schema, min_size=1, max_size=2)
    except StoreError as exc:
        return _Outcome(EXIT_REFUSED, stderr=f"{what} NOT applied: {why}, and PostgreSQL is "
                                             f"unreachable too ({redact(exc.message)}); "
                                             "nothing changed")
    try:
        if not await store.claim_nonce(command.key_id, command.nonce, command=command.COMMAND,
                                       signed_at=command.timestamp, now=now,
                                       forget_before=now - NONCE_RETENTION):
            return _Outcome(EXIT_REFUSED, stderr=f"{what} NOT applied: its nonce was used "
                                                 "before; nothing changed")
        written = await store.set_trading_state(
            change, [OutboxItem("mts.v1.oms.state.changed", change, new_event_id())],
            escalate_only=isinstance(command, ReduceTrading), sweep_id=sweep_id)
    finally:
        await store.close()
    if not written.applied:
        return _Outcome(code, stdout=f"{what} not applied: the scope's stored state is as "
                                     "restrictive already", stderr=f"{what}: {why}.")
    swept = ""
    if written.sweep is not None:
        swept = (f" with sweep {written.sweep.sweep_id} ({written.sweep.outstanding} cancels "
                 "outstanding)")
    return _Outcome(code, stdout=f"{what} (stored in PostgreSQL only)",
                    stderr=f"{what}: {why}. It is stored in PostgreSQL{swept}, but no running "
                           "instance has confirmed it: running instances take it in at their "
                           "next poll of PostgreSQL (2 s by default), a starting instance at "
                           "start. Check with `mts mts1b-oms status`.")


async def _wait_for_sweep(sweep_id: str, dsn: str, schema: str, timeout: float,
                          ) -> tuple[int, list[str]]:
    """Poll PostgreSQL until the sweep has finished; the exit code and one line per order."""
    from mts1b_oms.orderstore import CancelOutcome
    from mts1b_oms.store import Store

    store = await Store.open(dsn, schema=schema, min_size=1, max_size=1)
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            sweep = await store.sweep(sweep_id)
            if sweep is None or sweep.finished or loop.time() >= end:
                break
            await asyncio.sleep(0.2)
    finally:
        await store.close()
    if sweep is None:
        return EXIT_NOT_ALL_CANCELED, [f"sweep {sweep_id} not found in schema {schema}"]
    lines = []
    counts: dict[str, int] = {}
    for o in sweep.orders:
        name = o.outcome.value if o.outcome else "outstanding"
        counts[name] = counts.get(name, 0) + 1
        status = f" ({o.status.value})" if o.status and o.outcome is not CancelOutcome.CANCELED \
            else ""
        detail = f": {o.detail}" if o.detail and o.outcome not in {CancelOutcome.CANCELED,
                                                                    CancelOutcome.CLOSED} else ""
        lines.append(f"  {o.order_id} {o.fund_id} {name}{status}{detail}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no orders"
    bad = counts.get("refused", 0) + counts.get("not_working", 0) + counts.get("outstanding", 0)
    state = "finished" if sweep.finished else f"NOT finished after {timeout:g}s"
    lines.append(f"sweep {sweep_id} {state}: {summary}")
    return (EXIT_NOT_ALL_CANCELED if bad or not sweep.finished else 0), lines


def _finish(outcome: _Outcome) -> None:
    if outcome.stdout:
        typer.echo(outcome.stdout)
    if outcome.stderr:
        typer.echo(outcome.stderr, err=True)
    if outcome.code:
        raise typer.Exit(outcome.code)


Timeout = Annotated[float, typer.Option(
    min=0.1, help="seconds to wait for a running OMS instance to acknowledge")]
KeyFile = Annotated[Path, typer.Option(
    envvar="MTS_OMS_KEY_FILE",
    help="your private signing key (written by `keygen`); or name it in $MTS_OMS_KEY_FILE")]


def _signed(kind: str, key_file: Path, scope: str, scope_id: str,
            reason: str) -> SignedStateCommand:
    """The command signed with the key in ``key_file`` (usage errors say why, never with the
    key file's content)."""
    from mts1b_foundation import HaltTrading, ReduceTrading, ResumeTrading, ValidationFailed

    from mts1b_oms.signing import KeyFileError, SigningKey

    try:
        key: SigningKey = SigningKey.load(key_file)
    except KeyFileError as exc:
        raise typer.BadParameter(exc.message, param_hint="--key-file") from None
    try:
        if kind == "halt":
            return key.sign(HaltTrading, scope, scope_id, reason)
        if kind == "reduce":
            return key.sign(ReduceTrading, scope, scope_id, reason)
        return key.sign(ResumeTrading, scope, scope_id, reason)
    except ValidationFailed as exc:
        raise typer.BadParameter(exc.message) from None


def _change(kind: str, key_file: Path, scope: str, scope_id: str, reason: str, *,
            dsn: str, schema: str, namespace: str | None, timeout: float, wait: bool = False,
            wait_timeout: float = 300.0) -> None:
    """Sign, send, report; with ``wait``, then wait for the sweep and report each order."""
    command = _signed(kind, key_file, scope, scope_id, reason)
    outcome = asyncio.run(_set_state(command, dsn, schema, namespace, timeout))
    if outcome.code or not wait or outcome.sweep_id is None:
        _finish(outcome)
        return
    typer.echo(outcome.stdout)
    code, lines = asyncio.run(_wait_for_sweep(outcome.sweep_id, dsn, schema, wait_timeout))
    for line in lines:
        typer.echo(line)
    if code:
        raise typer.Exit(code)


Wait = Annotated[bool, typer.Option("--wait",
                                    help="wait for the sweep and print each order's outcome")]
WaitTimeout = Annotated[float, typer.Option(min=0.1, help="seconds --wait waits")]


@app.command()
def halt(
    key_file: KeyFile,
    fund: Annotated[str | None, typer.Option(help="halt one fund")] = None,
    strategy: Annotated[str | None, typer.Option(help="halt one strategy")] = None,
    all_: Annotated[bool, typer.Option("--all", help="halt everything")] = False,
    reducing: Annotated[bool, typer.Option(help="REDUCING instead of HALTED (as `reduce`)")
                        ] = False,
    reason: Annotated[str, typer.Option()] = "manual halt",
    wait: Wait = False,
    wait_timeout: WaitTimeout = 300.0,
    timeout: Timeout = 5.0,
    dsn: Dsn = DEFAULT_DSN,
    schema: Schema = "mts_oms",
    namespace: Namespace = None,
) -> None:
    """Stop new orders (HALTED, or REDUCING: risk-reducing only) and cancel working orders.

    Signed with --key-file (a key with the role operations); the OMS records the key's name.

    Exit codes:
    0 an instance applied it (--wait: every order ended canceled or closed);
    1 refused (a bad signature, an unregistered key, a missing role, ...), or nothing could
    be stored;
    3 NATS could not be used (unreachable, credentials refused, not permitted);
    4 no instance answered within --timeout (3 and 4: stored in PostgreSQL only);
    5 --wait: an order was not canceled, or the sweep did not finish in time.
    """
    scope, scope_id = _scope(fund, strategy, all_)
    _change("reduce" if reducing else "halt", key_file, scope, scope_id, reason, dsn=dsn,
            schema=schema, namespace=namespace, timeout=timeout, wait=wait,
            wait_timeout=wait_timeout)


@app.command()
def reduce(
    key_file: KeyFile,
    fund: Annotated[str | None, typer.Option(help="one fund")] = None,
    strategy: Annotated[str | None, typer.Option(help="one strategy")] = None,
    all_: Annotated[bool, typer.Option("--all", help="everything")] = False,
    reason: Annotated[str, typer.Option()] = "manual reduce",
    wait: Wait = False,
    wait_timeout: WaitTimeout = 300.0,
    timeout: Timeout = 5.0,
    dsn: Dsn = DEFAULT_DSN,
    schema: Schema = "mts_oms",
    namespace: Namespace = None,
) -> None:
    """REDUCING: only orders that reduce exposure, and cancel the working ones that add to it.

    Role operations; reducing a HALTED scope raises its limits and needs the role risk.
    Exit codes as for halt (stored directly only if it tightens the scope).
    """
    scope, scope_id = _scope(fund, strategy, all_)
    _change("reduce", key_file, scope, scope_id, reason, dsn=dsn, schema=schema,
            namespace=namespace, timeout=timeout, wait=wait, wait_timeout=wait_timeout)


@app.command()
def resume(
    key_file: KeyFile,
    fund: Annotated[str | None, typer.Option(help="resume one fund")] = None,
    strategy: Annotated[str | None, typer.Option(help="resume one strategy")] = None,
    all_: Annotated[bool, typer.Option("--all", help="resume the global scope")] = False,
    reason: Annotated[str, typer.Option()] = "manual resume",
    timeout: Timeout = 5.0,
    dsn: Dsn = DEFAULT_DSN,
    schema: Schema = "mts_oms",
    namespace: Namespace = None,
) -> None:
    """Clear a halt: the only way back to ACTIVE. Signed with a key with the role risk.

    Exit codes as for halt, except that 3 and 4 mean nothing changed: a resume is applied only
    by a running instance that verified it, never stored directly.
    """
    scope, scope_id = _scope(fund, strategy, all_)
    _change("resume", key_file, scope, scope_id, reason, dsn=dsn, schema=schema,
            namespace=namespace, timeout=timeout)


# The same command as `mts mts1b-platform keygen` (one implementation, mts1b_platform.signing):
# a key made here signs the treasury's fund configurations too.
app.command("keygen")(keygen)


@app.command()
def status(dsn: Dsn = DEFAULT_DSN, schema: Schema = "mts_oms") -> None:
    """Print every scope that is not ACTIVE, and every kill-switch sweep not finished."""
    from mts1b_foundation import TradingState

    from mts1b_oms.orderstore import Sweep
    from mts1b_oms.store import Store

    async def read() -> tuple[list[tuple[str, str, TradingState]], list[Sweep]]:
        store = await Store.open(dsn, schema=schema, min_size=1, max_size=1)
        try:
            return await store.trading_states(), await store.unfinished_sweeps()
        finally:
            await store.close()

    states, sweeps = asyncio.run(read())
    rows = [r for r in states if r[2] is not TradingState.ACTIVE]
    if not rows:
        typer.echo("all ACTIVE")
    for scope, scope_id, state in rows:
        typer.echo(f"{scope} {scope_id}: {state.value}")
    for sweep in sweeps:
        typer.echo(f"sweep {sweep.sweep_id} ({sweep.scope} {sweep.scope_id} "
                   f"{sweep.state.value}): {sweep.outstanding} of {len(sweep.orders)} cancels "
                   "outstanding")


if __name__ == "__main__":  # python -m mts1b_oms.cli ...: the same as `mts mts1b-oms ...`
    from mts1b_platform.cli import main

    main(["mts1b-oms", *sys.argv[1:]])
