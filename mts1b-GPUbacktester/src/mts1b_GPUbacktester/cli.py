"""``mts mts1b-GPUbacktester ...``: ``run`` one backtest, sweep a ``ladder``, run the ``demo``.

Installed through the ``mts1b.commands`` entry point (name ``mts1b-GPUbacktester``)::

    mts mts1b-GPUbacktester run --factor f_sma_cross --param p_fast=20 --param p_slow=50 \\
        --universe us-large-cap --start 2014-01-01 --end 2024-01-01 --report out.html
    mts mts1b-GPUbacktester run --universe BTC-USD --start 2019-01-01 --end 2023-12-31 \\
        --trade-on signal_change --band 0.05      # crypto: a 24/7 calendar, 365 periods
    mts mts1b-GPUbacktester ladder --factor f_sma_cross --grid p_fast=5,10,20,50 \\
        --grid p_slow=20,50,100,200 --constraint "p_fast < p_slow" --universe us-large-cap \\
        --start 2014-01-01 --end 2024-01-01 --out ladder.csv
    mts mts1b-GPUbacktester demo

``--install-demo`` installs the datalake's synthetic market into the store first (idempotent),
so the commands work on a fresh machine without any download.

The trading options of ``run`` and ``ladder`` (``--rebal``, ``--trade-on``, ``--band``,
``--fill``, ``--cost-bps``, ``--calendar``, ``--periods-per-year``...) build the same
:class:`~mts1b_GPUbacktester.spec.RunSpec` the Python functions build, validated before any
data is read; ``run`` prints the settings it ran with (and the periods per year its numbers
are annualised with), and its ``--json`` file holds them under ``"spec"``.

The numbers are printed on stdout; errors are one ``error: ...`` line on stderr (exit status 2);
log lines go to stderr through the ``mts`` root's logging, which shows warnings and errors
unless ``mts -v`` or ``$MTS_LOG_LEVEL`` asks for more. The ladder's progress bar is drawn on
stderr only when stderr is a terminal. Importing this module (which ``mts`` does to run any of
these commands) loads no engine, pandas or pydantic model: the commands import what they use.
"""

from __future__ import annotations

import json
import operator
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app", "parse_constraint", "parse_grid", "parse_params"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Backtests: one run, parameter ladders, the demo.")

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=|==|!=|<|>)\s*([A-Za-z_]\w*|-?[\d.]+)\s*$")


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["p_fast=20", "p_slow=50"]`` -> ``{"p_fast": 20, "p_slow": 50}``."""
    from mts1b_GPUbacktester.errors import BacktestConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BacktestConfigError(f"--param wants NAME=VALUE; got {item!r}",
                                      field="param", value=item)
        out[key.strip()] = _value(value.strip())
    return out


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["p_fast=5,10", "p_slow=20:60:10"]`` -> lists (``a:b:step`` is ``range(a, b, step)``)."""
    from mts1b_GPUbacktester.errors import BacktestConfigError

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise BacktestConfigError(f"--grid wants NAME=V1,V2,... or NAME=START:STOP:STEP; "
                                      f"got {item!r}", field="grid", value=item)
        if ":" in values:
            parts = [int(p) for p in values.split(":")]
            grid[key.strip()] = list(range(*parts))
        else:
            grid[key.strip()] = [_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def parse_constraint(text: str | None) -> Callable[[dict[str, Any]], bool] | None:
    """``"p_fast < p_slow"`` -> a predicate on a combination (names or numbers, one operator)."""
    from mts1b_GPUbacktester.errors import BacktestConfigError

    if not text:
        return None
    match = _CONSTRAINT.match(text)
    if match is None:
        raise BacktestConfigError(f"--constraint wants 'NAME OP NAME|NUMBER' with OP in "
                                  f"{list(_OPS)}; got {text!r}", field="constraint", value=text)
    left, op, right = match.groups()
    fn = _OPS[op]

    def side(combo: dict[str, Any], token: str) -> Any:
        return combo[token] if token in combo else _value(token)

    return lambda combo: bool(fn(side(combo, left), side(combo, right)))


def _universe(text: str, n: int | None = None) -> Any:
    """The ``--universe`` text as the datalake's commands read it (a registered name, else
    comma-separated symbols: ``SPY``, ``BTC-USD,ETH-USD``); with ``--n``, the name's top-N
    universe object (``universe("us-large-cap", n=50)``)."""
    from mts1b_datalake.universes import parse_universe, universe

    parsed = parse_universe(text)
    if n is None:
        return parsed
    if not isinstance(parsed, str):
        from mts1b_GPUbacktester.errors import BacktestConfigError

        raise BacktestConfigError("--n sizes a named universe (us-large-cap), not a list of "
                                  "symbols", field="n", value=n)
    return universe(parsed, n=n)


def _fail(exc: Exception) -> typer.Exit:
    from mts1b_platform.redaction import redact

    typer.echo(redact(f"error: {exc}"), err=True)
    return typer.Exit(code=2)


def _spec(**settings: Any) -> Any:
    """The :class:`~mts1b_GPUbacktester.spec.RunSpec` of a command's options (options left
    at ``None`` keep the spec's defaults); BacktestConfigError naming a bad one."""
    from mts1b_GPUbacktester.spec import RunSpec

    return RunSpec(**{k: v for k, v in settings.items() if v is not None})


def _install_demo(store: str | None) -> Any:
    from mts1b_datalake.synthetic import install_demo_market

    return install_demo_market(store)


UniverseNOpt = Annotated[int | None, typer.Option(
    "--n", help="size of a top-N universe, e.g. --universe us-large-cap --n 50")]
StoreOpt = Annotated[str | None, typer.Option(help="datalake store (default: "
                                              "$MTS_DATALAKE_ROOT or the user data dir)")]
InstallOpt = Annotated[bool, typer.Option(help="install the synthetic demo market into the "
                                          "store first")]
TradeOnOpt = Annotated[str, typer.Option(
    help="schedule: trade every asset back to its target on each rebalance | signal_change: "
         "only assets whose target changed (hold until the signal flips)")]
BandOpt = Annotated[float, typer.Option(
    help="absolute weight drift (e.g. 0.02): trade only (schedule) or also (signal_change) "
         "assets that drifted further from their target")]
CalendarOpt = Annotated[str | None, typer.Option(
    help="rows' calendar: XNYS, 24/5, 24/7, any exchange code (default: from the asset "
         "class: equities XNYS, FX 24/5, crypto 24/7)")]
PeriodsOpt = Annotated[float | None, typer.Option(
    help="periods per year for annualising and borrow (default: the calendar's: 252, 260, "
         "365)")]


@app.command()
def run(
    factor: Annotated[str, typer.Option(help="registered factor name")] = "f_sma_cross",
    param: Annotated[list[str] | None, typer.Option(help="factor parameter NAME=VALUE")] = None,
    universe: Annotated[str, typer.Option(help="universe name or SYM1,SYM2,...")] = (
        "us-large-cap"),
    n: UniverseNOpt = None,
    start: Annotated[str | None, typer.Option(help="first trading day")] = None,
    end: Annotated[str | None, typer.Option(help="last day")] = None,
    rebal: Annotated[str, typer.Option(help="daily | weekly | monthly")] = "daily",
    sizing: Annotated[str, typer.Option(help="quantkit sizing method")] = "equal_weight_long",
    gross: Annotated[float, typer.Option(help="gross exposure")] = 1.0,
    cost_bps: Annotated[float, typer.Option(help="commission in bps")] = 10.0,
    fill: Annotated[str, typer.Option(help="next_open | close | next_close")] = "next_open",
    slippage_bps: Annotated[float, typer.Option(help="fixed slippage in bps")] = 0.0,
    participation: Annotated[float | None, typer.Option(help="max fraction of volume")] = None,
    borrow_rate: Annotated[float | None, typer.Option(
        help="annual borrow rate on shorts (e.g. 0.02)")] = None,
    initial_nav: Annotated[float, typer.Option(help="starting cash")] = 100_000.0,
    backend: Annotated[str, typer.Option(help="auto | numba | numpy | cupy")] = "auto",
    trade_on: TradeOnOpt = "schedule",
    band: BandOpt = 0.0,
    calendar: CalendarOpt = None,
    periods_per_year: PeriodsOpt = None,
    benchmark: Annotated[str | None, typer.Option(
        help="a symbol, 'equal_weight' (default) or 'none'")] = None,
    report: Annotated[Path | None, typer.Option(help="write the HTML tearsheet here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write metrics as JSON")] = (
        None),
    store: StoreOpt = None,
    install_demo: InstallOpt = False,
) -> None:
    """Backtest one factor with one parameter set and print the headline metrics."""
    from mts1b_GPUbacktester.engine import run_single
    from mts1b_GPUbacktester.errors import BacktestError

    try:
        spec = _spec(rebal=rebal, sizing={"method": sizing, "gross": gross}, cost_bps=cost_bps,
                     fill=fill, slippage=slippage_bps or None, participation=participation,
                     borrow_rate=borrow_rate, initial_nav=initial_nav, backend=backend,
                     trade_on=trade_on, band=band, calendar=calendar,
                     periods_per_year=periods_per_year,
                     benchmark=False if benchmark == "none" else benchmark)
        the_store = _install_demo(store) if install_demo else store
        result = run_single(factor=factor, params=parse_params(param),
                            universe=_universe(universe, n), start=start, end=end,
                            store=the_store, spec=spec)
    except (BacktestError, ValueError, KeyError) as exc:
        raise _fail(exc) from exc
    m = result.metrics
    first, last = result.equity.index[[0, -1]]
    typer.echo(f"{factor} {parse_params(param)} on {universe}: {first.date()}..{last.date()}, "
               f"{len(result.symbols)} assets, backend {result.backend['backend']}")
    typer.echo(f"  calendar {result.calendar or 'not stated'}, annualised with "
               f"{result.periods_per_year:g} periods a year; fill {spec.fill}, rebal "
               f"{dict(spec.describe())['rebalance']}, trade on {spec.trade_on}, band "
               f"{spec.band:g}, commission {dict(spec.describe())['commission']}")
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility",
                "turnover", "final_nav"):
        typer.echo(f"  {key:<14} {m[key]:>14,.4f}")
    if report is not None:
        typer.echo(f"tearsheet: {result.report(report)}")
    if json_out is not None:
        doc = {**m, "periods_per_year": result.periods_per_year, "calendar": result.calendar,
               "spec": spec.to_dict()}
        json_out.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")


@app.command()
def ladder(
    grid: Annotated[list[str], typer.Option(help="NAME=V1,V2,... or NAME=START:STOP:STEP")],
    factor: Annotated[str, typer.Option(help="registered factor name")] = "f_sma_cross",
    constraint: Annotated[str | None, typer.Option(help="e.g. 'p_fast < p_slow'")] = None,
    universe: Annotated[str, typer.Option(help="universe name or SYM1,SYM2,...")] = (
        "us-large-cap"),
    n: UniverseNOpt = None,
    start: Annotated[str | None, typer.Option(help="first trading day")] = None,
    end: Annotated[str | None, typer.Option(help="last day")] = None,
    mode: Annotated[str, typer.Option(help="portfolio | per_asset")] = "portfolio",
    rebal: Annotated[str, typer.Option(help="daily | weekly | monthly")] = "daily",
    cost_bps: Annotated[float, typer.Option(help="commission in bps")] = 10.0,
    fill: Annotated[str, typer.Option(help="next_open | close | next_close")] = "next_open",
    trade_on: TradeOnOpt = "schedule",
    band: BandOpt = 0.0,
    calendar: CalendarOpt = None,
    periods_per_year: PeriodsOpt = None,
    tile_size: Annotated[int | None, typer.Option(help="combinations per tile")] = None,
    executor: Annotated[str, typer.Option(help="local | process | ray")] = "local",
    workers: Annotated[int | None, typer.Option(help="processes (default: CPUs)")] = None,
    backend: Annotated[str, typer.Option(help="auto | numba | numpy | cupy")] = "auto",
    top: Annotated[int, typer.Option(help="rows of the best combinations to print")] = 10,
    out: Annotated[Path | None, typer.Option(help="write the whole table as CSV")] = None,
    store: StoreOpt = None,
    install_demo: InstallOpt = False,
) -> None:
    """Evaluate every combination of a parameter grid and print the best ones."""
    from mts1b_GPUbacktester.errors import BacktestError
    from mts1b_GPUbacktester.ladder import run_ladder

    try:
        spec = _spec(rebal=rebal, cost_bps=cost_bps, fill=fill, backend=backend,
                     trade_on=trade_on, band=band, calendar=calendar,
                     periods_per_year=periods_per_year)
        the_store = _install_demo(store) if install_demo else store
        res = run_ladder(factor, parse_grid(grid), constraint=parse_constraint(constraint),
                         universe=_universe(universe, n), start=start, end=end, mode=mode,
                         tile_size=tile_size, executor=executor, workers=workers,
                         progress=sys.stderr.isatty(), store=the_store, spec=spec)
    except (BacktestError, ValueError, KeyError) as exc:
        raise _fail(exc) from exc
    key = "sharpe" if mode == "portfolio" else "total_return_mean"
    typer.echo(f"{len(res)} combinations in {res.elapsed_s:.2f}s "
               f"(backend {res.backend['backend']}, fast path {res.fast_path})")
    typer.echo(res.table.sort_values(key, ascending=False).head(top).to_string(index=False))
    if out is not None:
        res.table.to_csv(out, index=False)
        typer.echo(f"table: {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="where to write the tearsheet")] = Path(
        "out/tearsheet.html"),
    store: StoreOpt = None,
    backend: Annotated[str, typer.Option(help="auto | numba | numpy | cupy")] = "auto",
) -> None:
    """The README's demo: install the synthetic market, backtest, print, write a tearsheet."""
    from mts1b_GPUbacktester.demo import main

    raise typer.Exit(code=main(["--out", str(out), "--backend", backend,
                                *(["--store", store] if store else [])]))
