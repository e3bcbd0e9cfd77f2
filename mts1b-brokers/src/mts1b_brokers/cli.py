"""``mts mts1b-brokers ...``: run a broker as a NATS service, list the registered brokers.

Registered with the ``mts`` CLI through the ``mts1b.commands`` entry-point group; also runnable
alone as ``python -m mts1b_brokers.cli ARGS``, which runs ``mts mts1b-brokers ARGS`` (root options
such as ``-v`` go on ``mts``).

What a command reports for people (the broker names, that the service is up and where) is
printed on stdout; log lines go to stderr through the ``mts`` root's logging, which shows
warnings and errors unless ``mts -v`` or ``$MTS_LOG_LEVEL`` asks for more. ``serve`` names
itself ``broker-<name>`` (``broker-paper``) in every log line.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from typing import Annotated, Any

import typer

__all__ = ["app"]

app = typer.Typer(help="Broker adapters: the paper broker and the broker service.",
                  no_args_is_help=True)


def _accounts(values: list[str]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for value in values:
        account_id, sep, cash = value.partition("=")
        if not sep or not account_id:
            raise typer.BadParameter(f"expected ACCOUNT=CASH, got {value!r}",
                                     param_hint="--account")
        try:
            out[account_id] = Decimal(cash)
        except ArithmeticError:
            raise typer.BadParameter(f"cash {cash!r} is not a number",
                                     param_hint="--account") from None
    return out


def _commission(bps: str, quantum: str) -> Any:
    """The paper venue's :class:`~mts1b_brokers.models.BpsCommission`, each option checked."""
    from mts1b_brokers.models import BpsCommission

    values: dict[str, Decimal] = {}
    for hint, text in (("--commission-bps", bps), ("--commission-quantum", quantum)):
        try:
            values[hint] = Decimal(text)
        except ArithmeticError:
            raise typer.BadParameter(f"{text!r} is not a number", param_hint=hint) from None
    try:
        return BpsCommission(values["--commission-bps"], quantum=values["--commission-quantum"])
    except ValueError as exc:  # BrokerConfigError: names the field and the value
        raise typer.BadParameter(str(exc), param_hint="--commission-bps/--commission-quantum"
                                 ) from None


@app.command("list")
def list_brokers() -> None:
    """Print the broker names registered in the ``mts1b.brokers`` entry-point group."""
    from mts1b_brokers.registry import available_brokers

    for name in available_brokers():
        typer.echo(name)


@app.command()
def serve(
    broker: Annotated[str, typer.Argument(help="registered broker name, e.g. paper")],
    name: Annotated[str | None, typer.Option(help="service name in subjects (default: BROKER)")]
    = None,
    account: Annotated[list[str] | None, typer.Option(help="ACCOUNT=CASH, repeatable")] = None,
    default_cash: Annotated[str | None, typer.Option(help="open unknown accounts with this")]
    = None,
    participation_rate: Annotated[str, typer.Option(help="max fraction of bar volume")] = "0.1",
    commission_bps: Annotated[str, typer.Option(help="commission in basis points")] = "0",
    commission_quantum: Annotated[str, typer.Option(
        help="what each commission is rounded to (1e-12: not rounded, as a backtest's "
             "cost_bps)")] = "0.01",
    slippage_bps: Annotated[str, typer.Option(help="slippage in basis points")] = "0",
    leverage: Annotated[str, typer.Option(
        help="buying power as a multiple of equity (2: a Reg T margin account, which a fully "
             "invested strategy needs: its buys go in before its sells fill)")] = "1",
    seed: Annotated[int, typer.Option(help="seed of the paper venue")] = 0,
    calendar: Annotated[str | None, typer.Option(help="exchange calendar, e.g. XNYS")] = None,
    nats_url: Annotated[str | None, typer.Option(help="NATS URL (default: MTS_NATS_URL)")] = None,
    namespace: Annotated[str | None, typer.Option(help="bus namespace (tests)")] = None,
    replay_clock: Annotated[bool, typer.Option(
        "--replay-clock",
        help="paper only: run on a lockstep replay's clock (mts mts1b-datalake replay "
             "--lockstep broker-<name>,...): the venue's time is the session's close, and "
             "each session's tick is answered once its corporate actions are applied, every "
             "bar of the session has traded the venue and every report it caused is "
             "published. Only under a lockstep replay: bars are held until the tick")] = False,
    reset_state: Annotated[bool, typer.Option(
        "--reset-state",
        help="paper only: forget the venue's stored state (KV bucket broker-state-<name>) "
             "and start from --account. Without it a (re)started paper service takes up its "
             "stored accounts, positions and orders, and --account only opens a venue that "
             "never stored one")] = False,
    heartbeat_interval: Annotated[float, typer.Option(
        envvar="MTS_HEARTBEAT_INTERVAL", min=0.001, max=3600,
        help="seconds between two heartbeats on "
             "mts.v1.operations.heartbeats.mts1b-brokers-<name>")] = 10.0,
) -> None:
    """Serve BROKER on mts.v1.brokers.<name>.* until SIGTERM/SIGINT.

    With --replay-clock (paper) the service takes a lockstep replay's ticks as
    broker-<name>: an order accepted during session d fills on session d+1's bar.

    It beats as mts1b-brokers-<name> on mts.v1.operations.heartbeats.* every
    --heartbeat-interval seconds.

    The paper venue's state is stored in the KV bucket broker-state-<name> after each change
    and restored at start, so a SIGKILLed service restarts where it was (--reset-state
    starts afresh); a stored state that cannot be read stops the start, naming the key.
    """
    from mts1b_platform.logging import set_service

    set_service(f"broker-{name or broker}")  # before anything logs: every line names it
    from mts1b_brokers.models import BpsSlippage
    from mts1b_brokers.venuestate import VenueStateUnreadable

    config: dict[str, Any] = {}
    if broker == "paper":
        config = {
            "name": name or broker, "accounts": _accounts(account or []),
            "default_cash": default_cash, "participation_rate": participation_rate,
            "commission": _commission(commission_bps, commission_quantum),
            "slippage": BpsSlippage(Decimal(slippage_bps)), "seed": seed, "calendar": calendar,
            "leverage": leverage,
        }
    elif replay_clock or reset_state:
        flag = "--replay-clock" if replay_clock else "--reset-state"
        raise typer.BadParameter(f"{flag} is for the paper venue only, not {broker!r}",
                                 param_hint=flag)
    try:
        asyncio.run(_serve(broker, config, nats_url=nats_url, namespace=namespace,
                           replay_clock=replay_clock, reset_state=reset_state,
                           heartbeat_interval=heartbeat_interval))
    except VenueStateUnreadable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


async def _serve(broker_name: str, config: dict[str, Any], *, nats_url: str | None,
                 namespace: str | None, replay_clock: bool = False,
                 reset_state: bool = False, heartbeat_interval: float = 10.0) -> None:
    from mts1b_platform.bus import Bus
    from mts1b_platform.replayclock import start_clock

    from mts1b_brokers.paper import PaperClient
    from mts1b_brokers.registry import get_broker
    from mts1b_brokers.service import BrokerService

    overrides: dict[str, Any] = {}
    if nats_url:
        overrides["url"] = nats_url
    if namespace:
        overrides["namespace"] = namespace
    bus = await Bus.connect(**overrides)
    clock = None
    if replay_clock:  # a restarted venue takes up the replay's time where it is
        clock = await start_clock(bus)
        config["clock"] = clock
    venue = get_broker(broker_name, **config)
    service = BrokerService(venue, bus, replay_clock=clock,
                            durable=isinstance(venue, PaperClient), reset_state=reset_state,
                            heartbeat_interval=heartbeat_interval)
    try:
        await service.start()
    except BaseException:
        await bus.drain()
        raise
    bus.install_signal_handlers()  # before saying so: SIGTERM right after the line drains
    where = f" (namespace {namespace})" if namespace else ""
    typer.echo(f"broker {broker_name} serving as {service.name} on "
               f"mts.v1.brokers.{service.name}.*{where}; SIGTERM drains")
    try:
        await bus.wait_closed()
    finally:
        await service.stop()
    typer.echo(f"broker {service.name} stopped")


if __name__ == "__main__":  # python -m mts1b_brokers.cli ...: `mts mts1b-brokers ...`
    from mts1b_platform.cli import main

    main(["mts1b-brokers", *sys.argv[1:]])
