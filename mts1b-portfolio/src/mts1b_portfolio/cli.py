"""``mts mts1b-portfolio serve``: the composer service (it needs the ``service`` extra)."""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(name="mts1b-portfolio", no_args_is_help=True, add_completion=False,
                  help="MTS1B portfolio: the multi-sleeve composer service.")


@app.callback()
def _group() -> None:
    """MTS1B portfolio: the multi-sleeve composer service."""


def _money(field: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"{field}: not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter(f"{field}: must be a finite number >= 0, got {text!r}")
    return value


@app.command()
def serve(
    namespace: Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                  help="NATS namespace prefix")] = None,
    settle: Annotated[float, typer.Option(
        min=0.0, help="seconds a fund waits for its other sleeves' signals of the same "
                      "rebalance time")] = 5.0,
    max_turnover: Annotated[float | None, typer.Option(
        min=0.0, help="turnover cap per rebalance, as a fraction of the fund's capital "
                      "(both legs counted)")] = None,
    min_trade_notional: Annotated[str, typer.Option(
        help="drop trades worth less than this, in the fund's currency")] = "0",
    long_only: Annotated[bool, typer.Option(help="no short positions in any fund")] = False,
    reply_timeout: Annotated[float, typer.Option(
        min=0.1, help="seconds the OMS may take to answer a target")] = 30.0,
    replay_clock: Annotated[bool, typer.Option(
        help="run on a lockstep replay's clock: compose when the replay says a session is "
             "over (`mts mts1b-datalake replay --lockstep`)")] = False,
    size_at_open: Annotated[bool, typer.Option(
        help="with --replay-clock: size each rebalance at the next session's open (its open "
             "prices, the NAV at the open net of the rebalance's commissions), as a backtest "
             "filled at the next open; needs portfolio@open after oms@open in the replay's "
             "--lockstep")] = False,
    commission_bps: Annotated[str, typer.Option(
        help="--size-at-open: the venue's commission in basis points of notional")] = "0",
    lot: Annotated[str | None, typer.Option(
        help="round each trade to this many shares (default 1; e.g. 0.00000001 for "
             "fractional shares)")] = None,
    heartbeat_interval: Annotated[float, typer.Option(
        envvar="MTS_HEARTBEAT_INTERVAL", min=0.001, max=3600,
        help="seconds between two heartbeats on "
             "mts.v1.operations.heartbeats.mts1b-portfolio")] = 10.0,
) -> None:
    """Compose each fund's target from its sleeves' published signals and have the OMS
    rebalance it; drop a disabled strategy's sleeve at once. Runs until SIGTERM, beating as
    mts1b-portfolio every --heartbeat-interval seconds."""
    minimum = _money("--min-trade-notional", min_trade_notional)
    commission = _money("--commission-bps", commission_bps)
    lot_size = _money("--lot", lot) if lot is not None else None
    if lot_size is not None and lot_size <= 0:
        raise typer.BadParameter(f"--lot: must be > 0, got {lot!r}")
    if size_at_open and not replay_clock:
        raise typer.BadParameter("--size-at-open: needs --replay-clock (the open ticks of a "
                                 "lockstep replay)")
    try:
        from mts1b_platform.logging import set_service

        from mts1b_portfolio.picture import ComposerLimits
        from mts1b_portfolio.service import ServeOptions, run_service
    except ImportError as exc:
        typer.echo(f"mts1b-portfolio: the service needs the 'service' extra (missing module "
                   f"{exc.name}): pip install 'mts1b-portfolio[service]'", err=True)
        raise typer.Exit(2) from None
    set_service("portfolio")
    opts = ServeOptions(namespace=namespace, settle_seconds=settle, reply_timeout=reply_timeout,
                        replay_clock=replay_clock, size_at_open=size_at_open,
                        commission_bps=commission, lot=lot_size,
                        heartbeat_interval=heartbeat_interval,
                        limits=ComposerLimits(max_turnover=max_turnover,
                                              min_trade_notional=minimum, long_only=long_only))
    typer.echo(f"portfolio composer serving{f' (namespace {namespace})' if namespace else ''}; "
               "SIGTERM stops")
    asyncio.run(run_service(opts))
    typer.echo("portfolio composer stopped")


if __name__ == "__main__":  # python -m mts1b_portfolio.cli ...: `mts mts1b-portfolio ...`
    app()
