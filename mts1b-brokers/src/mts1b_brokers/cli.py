"""``mts mts1b-brokers ...``: run a broker as a NATS service, list the registered brokers.

Registered with the ``mts`` CLI through the ``mts.commands`` entry-point group; also runnable
alone as ``python -m mts1b_brokers.cli``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated, Any

import typer

from mts1b_brokers.models import BpsCommission, BpsSlippage
from mts1b_brokers.registry import available_brokers, get_broker

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


@app.command("list")
def list_brokers() -> None:
    """Print the broker names registered in the ``mts1b.brokers`` entry-point group."""
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
    slippage_bps: Annotated[str, typer.Option(help="slippage in basis points")] = "0",
    seed: Annotated[int, typer.Option(help="seed of the paper venue")] = 0,
    calendar: Annotated[str | None, typer.Option(help="exchange calendar, e.g. XNYS")] = None,
    nats_url: Annotated[str | None, typer.Option(help="NATS URL (default: MTS_NATS_URL)")] = None,
    namespace: Annotated[str | None, typer.Option(help="bus namespace (tests)")] = None,
) -> None:
    """Serve BROKER on mts.v1.brokers.<name>.* until SIGTERM/SIGINT."""
    config: dict[str, Any] = {}
    if broker == "paper":
        config = {
            "name": name or broker, "accounts": _accounts(account or []),
            "default_cash": default_cash, "participation_rate": participation_rate,
            "commission": BpsCommission(Decimal(commission_bps)),
            "slippage": BpsSlippage(Decimal(slippage_bps)), "seed": seed, "calendar": calendar,
        }
    asyncio.run(_serve(broker, config, nats_url=nats_url, namespace=namespace))


async def _serve(broker_name: str, config: dict[str, Any], *, nats_url: str | None,
                 namespace: str | None) -> None:
    from mts1b_platform.bus import Bus

    from mts1b_brokers.service import BrokerService

    overrides: dict[str, Any] = {}
    if nats_url:
        overrides["url"] = nats_url
    if namespace:
        overrides["namespace"] = namespace
    bus = await Bus.connect(**overrides)
    service = BrokerService(get_broker(broker_name, **config), bus)
    await service.start()
    typer.echo(f"serving {service.name} on mts.v1.brokers.{service.name}.*", err=True)
    bus.install_signal_handlers()
    try:
        await bus.wait_closed()
    finally:
        await service.stop()


if __name__ == "__main__":
    app()
