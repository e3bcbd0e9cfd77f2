"""``mts mts1b-datalake ...``: ingest, qc, universe, panel, replay, demo, store.

Installed through the ``mts1b.commands`` entry point (name ``mts1b-datalake``). Every command takes
``--store PATH`` (default: ``$MTS_DATALAKE_ROOT``, else the user data directory).

Examples::

    mts mts1b-datalake ingest all_stocks_5yr.csv.gz --qc
    mts mts1b-datalake qc all_stocks_5yr.csv.gz --json qc.json --markdown qc.md
    mts mts1b-datalake universe show us-large-cap --date 2017-06-30 --n 20
    mts mts1b-datalake panel info us-large-cap 2014-01-01 2018-01-01
    mts mts1b-datalake replay AAPL,MSFT 2017-01-01 2017-03-31 --speed 20

Reports (tables, counts, where files were written) are printed on stdout; errors are one
``error: ...`` line on stderr (exit status 2); log lines go to stderr through the ``mts`` root's
logging, which shows warnings and errors unless ``mts -v`` or ``$MTS_LOG_LEVEL`` asks for more.
Progress bars are drawn on stderr only when stderr is a terminal: redirected to a file they
would be noise between the log lines. Each command imports the modules it uses (the store,
pandas, the pydantic wire models), so ``mts mts1b-datalake --help`` loads none of them.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Market data: ingest, quality checks, universes, panels, replay.")
universe_app = typer.Typer(no_args_is_help=True, help="Point-in-time universes.")
panel_app = typer.Typer(no_args_is_help=True, help="Research panels.")
demo_app = typer.Typer(no_args_is_help=True, help="The synthetic demo market.")
store_app = typer.Typer(no_args_is_help=True, help="The store itself.")
app.add_typer(universe_app, name="universe")
app.add_typer(panel_app, name="panel")
app.add_typer(demo_app, name="demo")
app.add_typer(store_app, name="store")

# Redirected to a file or a pipe there is no terminal width to fit: rich would assume 80 columns
# and squeeze the tables (cutting file names), so tables get the width they need, up to 200.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)

StoreOpt = Annotated[str | None, typer.Option("--store", help="store root (path or fsspec URL)")]


def _store(root: str | None) -> Any:
    from mts1b_datalake.store import Store

    return Store(root) if root else Store.default()


def _fail(exc: Exception) -> None:
    """One ``error: ...`` line on stderr and exit status 2. The message is printed as text,
    not rich markup (a file name may hold ``[``), and on one line whatever it contains."""
    from mts1b_platform.redaction import redact
    from rich.markup import escape

    text = " ".join(redact(str(exc)).splitlines())  # credentials in a URL, a DSN, a token
    err_console.print(f"[red]error:[/red] {escape(text)}")
    raise typer.Exit(code=2)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                    transient=False, disable=not err_console.is_terminal)


def _universe_arg(text: str) -> Any:
    """A registered name, or comma-separated symbols (``universes.parse_universe``)."""
    from mts1b_datalake.universes import parse_universe

    return parse_universe(text)


def _columns(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        src, sep, dst = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--column {item!r} must look like SOURCE=canonical")
        out[src] = dst
    return out


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="files or globs (local or fsspec URLs)")],
    store: StoreOpt = None,
    format: Annotated[str, typer.Option("--format", "-f",
                                        help="auto, long-csv, yahoo-csv, yfinance-csv, "
                                             "wide-csv, parquet or a plugin")] = "auto",
    symbol: Annotated[str | None, typer.Option(help="symbol for per-symbol files")] = None,
    asset_class: Annotated[str, typer.Option(help="equity, etf, index, fx, crypto")] = "equity",
    date_format: Annotated[str | None, typer.Option(help="strptime format of dates")] = None,
    column: Annotated[list[str] | None, typer.Option(
        help="column mapping SOURCE=canonical (repeatable)")] = None,
    qc: Annotated[bool, typer.Option("--qc/--no-qc", help="run quality checks")] = True,
    policy: Annotated[list[str] | None, typer.Option(
        help="QC action per check, e.g. bad_tick=flag (repeatable)")] = None,
    ohlc_policy: Annotated[str, typer.Option(
        "--ohlc-policy", help="open/close outside high-low: repair (widen high/low, report) "
                              "or reject the row")] = "repair",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    show_rejected: Annotated[int, typer.Option(help="rejected and repaired rows to print")]
    = 20,
) -> None:
    """Read files into the store (atomic; re-ingesting the same data adds nothing).

    Runs ``Store.ingest`` with the same defaults as Python: the row rules, the OHLC policy and
    (unless --no-qc) the quality checks."""
    from mts1b_datalake.errors import DatalakeError
    from mts1b_datalake.providers import open_source
    from mts1b_datalake.providers.base import expand_paths
    from mts1b_datalake.qc import QCPolicy

    try:
        from mts1b_datalake.rows import check_ohlc_policy

        files = expand_paths(paths)
        the_store = _store(store)
        qc_policy = QCPolicy.parse(policy or []) if qc else None
        ohlc = check_ohlc_policy(ohlc_policy)
        reports = []
        options: dict[str, Any] = {"asset_class": asset_class, "columns": _columns(column)}
        if symbol:
            options["symbol"] = symbol
        if date_format:
            options["date_format"] = date_format
        with _progress() as progress:
            task = progress.add_task("ingest", total=len(files))
            for f in files:
                progress.update(task, description=f"ingest {Path(f).name}")
                provider = open_source(f, format=format, **options)
                reports.append(the_store.ingest(provider, qc=qc_policy if qc else False,
                                                ohlc_policy=ohlc))
                progress.advance(task)
    except DatalakeError as exc:
        _fail(exc)
        return
    table = Table(title=f"ingest into {the_store.root}")
    for col in ("file", "rows", "added", "unchanged", "restated", "events", "rejected",
                "repaired", "qc"):
        # numbers never wrap; a long file name folds onto more lines rather than losing its end
        table.add_column(col, justify="left" if col == "file" else "right",
                         overflow="fold" if col == "file" else "ellipsis",
                         no_wrap=col != "file")
    for f, r in zip(files, reports, strict=True):
        findings = len(r.qc.findings) if r.qc is not None else 0
        table.add_row(Path(f).name, str(r.rows_in), str(r.added), str(r.unchanged),
                      str(r.restated), str(r.events_added), str(len(r.rejected)),
                      str(r.repaired), str(findings))
    console.print(table)
    rejected = [x for r in reports for x in r.rejected]
    for x in rejected[:show_rejected]:
        console.print(f"rejected {x.file}:{x.line}: {x.reason}", markup=False)
    if len(rejected) > show_rejected:
        console.print(f"... and {len(rejected) - show_rejected} more rejected rows")
    repaired = sum(r.repaired for r in reports)
    if repaired:
        console.print(f"{repaired} row(s) repaired: open or close outside low-high, high/low "
                      "widened (--ohlc-policy reject refuses them instead), e.g.:")
        shown = 0
        for r in reports:
            for x in r.repairs.head(show_rejected - shown).itertuples(index=False):
                console.print(f"repaired {x.file}:{x.line}: {x.symbol} "
                              f"{str(x.date)[:10]} {x.detail}: high {x.old_high:.12g} -> "
                              f"{x.high:.12g}, low {x.old_low:.12g} -> {x.low:.12g}",
                              markup=False)
                shown += 1
        if repaired > shown:
            console.print(f"... and {repaired - shown} more repaired rows")
    for r in reports:
        if r.restated:
            console.print(f"{r.restated} restated value(s) kept as new versions, e.g.:")
            console.print(r.restatements.head(10).to_string(index=False))
    if json_out:
        json_out.write_text(json.dumps([r.as_dict() for r in reports], indent=1, default=str))
        console.print(f"report written to {json_out}")


@app.command("qc")
def qc_command(
    paths: Annotated[list[str] | None,
                     typer.Argument(help="files to check; none: the store")] = None,
    store: StoreOpt = None,
    format: Annotated[str, typer.Option("--format", "-f")] = "auto",
    calendar: Annotated[str, typer.Option(help="exchange calendar for gap checks")] = "XNYS",
    policy: Annotated[list[str] | None, typer.Option(help="check=action (repeatable)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write every finding")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write the summary table")] = None,
    show: Annotated[list[str] | None, typer.Option(help="print the findings of a check")] = None,
    symbols: Annotated[str | None, typer.Option(help="comma-separated symbols (store)")] = None,
) -> None:
    """Run the quality checks and print a summary table (and JSON/Markdown if asked)."""
    from mts1b_datalake.errors import DatalakeError
    from mts1b_datalake.providers import open_source
    from mts1b_datalake.qc import QCPolicy, run_qc

    try:
        the_policy = QCPolicy.parse(policy or [])
        with _progress() as progress:
            task = progress.add_task("read", total=2)
            if paths:
                frames = [open_source(p, format=format).read().bars for p in paths]
                import pandas as pd

                bars = pd.concat(frames, ignore_index=True)
                source = ", ".join(Path(p).name for p in paths)
            else:
                the_store = _store(store)
                wanted = [s.strip() for s in symbols.split(",")] if symbols else None
                bars = the_store.read_bars(wanted)
                source = the_store.root
            progress.update(task, advance=1, description="checks")
            result = run_qc(bars, the_policy, calendar=calendar)
            progress.update(task, advance=1, description="done")
    except DatalakeError as exc:
        _fail(exc)
        return
    report = result.report
    table = Table(title=f"QC of {source}: {report.rows} rows, {report.symbols} symbols")
    for col in ("check", "severity", "action", "findings", "symbols", "examples"):
        table.add_column(col, justify="right" if col in ("findings", "symbols") else "left")
    for r in report.summary().itertuples(index=False):
        table.add_row(r.check, r.severity, r.action, str(r.findings), str(r.symbols),
                      r.examples)
    console.print(table)
    for check in show or []:
        part = report.for_check(check)
        console.print(f"\n{check}: {len(part)} finding(s)")
        if len(part):
            console.print(part[["symbol", "date", "detail", "file", "line"]].to_string(
                index=False))
    if json_out:
        json_out.write_text(report.to_json())
        console.print(f"findings written to {json_out}")
    if markdown:
        markdown.write_text(report.to_markdown() + "\n")
        console.print(f"summary written to {markdown}")


@universe_app.command("list")
def universe_list() -> None:
    """Registered universe names."""
    from mts1b_datalake.universes import registered_universes

    for name in registered_universes():
        console.print(name)


@universe_app.command("show")
def universe_show(
    name: Annotated[str, typer.Argument(help="registered name or comma-separated symbols")],
    date: Annotated[str | None, typer.Option(help="as of this date (default: last in store)")]
    = None,
    n: Annotated[int | None, typer.Option(help="size of a top-N universe")] = None,
    store: StoreOpt = None,
    calendar: Annotated[str, typer.Option()] = "XNYS",
) -> None:
    """Members of a universe on one date (point in time)."""
    from mts1b_datalake.errors import DatalakeError
    from mts1b_datalake.universes import resolve_universe

    try:
        the_store = _store(store)
        params = {"n": n} if n is not None else {}
        rule = resolve_universe(_universe_arg(name), params)
        when = date
        if not when:  # the last day the store has data for
            table = the_store.symbol_table()
            when = str(table["last_date"].dropna().max()) if len(table) else \
                time.strftime("%Y-%m-%d")
        members = rule.members(when, the_store, calendar=calendar)
    except DatalakeError as exc:
        _fail(exc)
        return
    console.print(f"{rule.name} on {when}: {len(members)} member(s)")
    console.print(" ".join(members))


@panel_app.command("info")
def panel_info_command(
    universe: Annotated[str, typer.Argument(help="registered name or comma-separated symbols")],
    start: Annotated[str, typer.Argument()],
    end: Annotated[str, typer.Argument()],
    n: Annotated[int | None, typer.Option(help="size of a top-N universe")] = None,
    adjust: Annotated[str, typer.Option(help="back or none")] = "back",
    store: StoreOpt = None,
    calendar: Annotated[str | None, typer.Option(
        help="XNYS, 24/5, 24/7, any exchange code (default: from the asset class: equities "
             "XNYS, FX 24/5, crypto 24/7)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Build a panel and describe it: shape, membership, coverage, build time."""
    from mts1b_datalake.errors import DatalakeError
    from mts1b_datalake.panel import panel_info

    try:
        with _progress() as progress:
            task = progress.add_task("build panel", total=1)
            info = panel_info(_universe_arg(universe), start, end, store=_store(store),
                              adjust=adjust, calendar=calendar,
                              universe_params={"n": n} if n is not None else None)
            progress.advance(task)
    except DatalakeError as exc:
        _fail(exc)
        return
    if as_json:
        console.print_json(json.dumps(dict(info), default=str))
        return
    table = Table(title="panel")
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in info.items():
        table.add_row(k, str(v))
    console.print(table)


@app.command()
def replay(
    universe: Annotated[str, typer.Argument(help="registered name or comma-separated symbols")],
    start: Annotated[str, typer.Argument()],
    end: Annotated[str, typer.Argument()],
    speed: Annotated[float, typer.Option(help="sessions per second; 0 = as fast as possible")]
    = 1.0,
    store: StoreOpt = None,
    nats_url: Annotated[str | None, typer.Option(help="default: MTS_NATS_URL")] = None,
    namespace: Annotated[str | None, typer.Option(help="bus namespace (tests)")] = None,
    dry_run: Annotated[bool, typer.Option(help="build the bars, publish nothing")] = False,
    calendar: Annotated[str, typer.Option()] = "XNYS",
    lockstep: Annotated[str | None, typer.Option(
        help="comma-separated services that finish each session before the next, in order "
             "(e.g. broker-paper,oms,treasury,research,portfolio); SPEED is then a maximum. "
             "NAME@open also hands NAME the session's open, before the others get its close")
    ] = None,
    lockstep_timeout: Annotated[float, typer.Option(
        min=1.0, help="seconds a service on the lockstep may take to finish a session")
    ] = 300.0,
) -> None:
    """Publish historical bars on mts.v1.datalake.bars.<symbol> at SPEED sessions/second."""
    from mts1b_datalake.errors import DatalakeError, UnknownFieldError
    from mts1b_datalake.replay import BarReplay

    services = [p.strip() for p in (lockstep or "").split(",") if p.strip()]
    for name in services:
        if not re.fullmatch(r"[A-Za-z0-9_-]+(@open)?", name):
            _fail(UnknownFieldError(f"--lockstep: {name!r} is not a service name (letters, "
                                    "digits, - and _, optionally @open)", field="lockstep",
                                    value=name))
            return
    if services and dry_run:
        _fail(UnknownFieldError("--lockstep needs the bus: it cannot run with --dry-run",
                                field="lockstep", value=lockstep))
        return
    try:
        rep = BarReplay(_universe_arg(universe), start, end, store=_store(store),
                        speed=speed or None, calendar=calendar)
    except DatalakeError as exc:
        _fail(exc)
        return

    class _Counter:
        async def publish(self, subject: str, message: Any, *, msg_id: str | None = None) -> None:
            return None

    async def main() -> Any:
        with _progress() as progress:
            task = progress.add_task("replay", total=len(rep.sessions))

            def tick(day: Any, n_bars: int) -> None:
                progress.update(task, advance=1, description=f"replay {day} ({n_bars} bars)")

            if dry_run:
                return await rep.run(_Counter(), on_session=tick)
            from mts1b_platform.bus import Bus

            overrides: dict[str, Any] = {}
            if nats_url:
                overrides["url"] = nats_url
            if namespace:
                overrides["namespace"] = namespace
            bus = await Bus.connect(**overrides)
            try:
                await bus.declare_streams(["datalake"])
                return await rep.run(bus, on_session=tick, lockstep=services,
                                     lockstep_timeout=lockstep_timeout)
            finally:
                await bus.drain()

    try:
        report = asyncio.run(main())
    except Exception as exc:
        _fail(exc)
        return
    console.print_json(json.dumps(report.as_dict(), default=str))


@demo_app.command("install")
def demo_install(
    store: StoreOpt = None,
    seed: Annotated[int, typer.Option()] = 7,
    n_assets: Annotated[int, typer.Option()] = 300,
    start: Annotated[str, typer.Option()] = "2012-01-01",
    end: Annotated[str, typer.Option()] = "2024-12-31",
) -> None:
    """Install the synthetic demo market (no download; idempotent)."""
    from mts1b_datalake.synthetic import install_demo_market

    t0 = time.perf_counter()
    the_store = install_demo_market(_store(store), seed=seed, n_assets=n_assets, start=start,
                                    end=end)
    console.print(f"demo market ready in {the_store.root} ({time.perf_counter() - t0:.1f}s)")


def _day(field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field} {text!r}: not a date (YYYY-MM-DD)") from None


@store_app.command("closes")
def store_closes(
    date: Annotated[str, typer.Option("--date", help="the session, YYYY-MM-DD")],
    symbols: Annotated[str | None, typer.Option(help="comma-separated symbols (default: all)")
                       ] = None,
    store: StoreOpt = None,
) -> None:
    """The raw closes of one session as CSV (symbol,close) on stdout: the marks the treasury
    strikes a NAV with (`mts mts1b-treasury nav strike --marks`)."""
    try:
        day = _day("--date", date)
        wanted = [x.strip() for x in symbols.split(",") if x.strip()] if symbols else None
        bars = _store(store).read_bars(wanted, day, day)
    except Exception as exc:
        _fail(exc)
        return
    if bars.empty:
        _fail(ValueError(f"--date {date}: no bars on that day in the store"))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["symbol", "close"])
    for symbol, close in zip(bars["symbol"], bars["close"], strict=True):
        out.writerow([symbol, repr(float(close))])


@store_app.command("events")
def store_events(
    start: Annotated[str, typer.Option(help="first ex-date, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="last ex-date, YYYY-MM-DD")],
    store: StoreOpt = None,
) -> None:
    """Corporate actions (splits: new shares per old; cash dividends per share) with ex-dates
    in [start, end] as CSV (symbol,date,kind,value) on stdout: what the treasury books with
    `mts mts1b-treasury ledger corporate-actions --events`."""
    try:
        frame = _store(store).events(None, _day("--start", start), _day("--end", end))
    except Exception as exc:
        _fail(exc)
        return
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["symbol", "date", "kind", "value"])
    for row in frame.sort_values(["date", "symbol", "kind"], kind="stable").itertuples():
        out.writerow([row.symbol, str(row.date)[:10], row.kind, repr(float(row.value))])


@store_app.command("info")
def store_info(store: StoreOpt = None) -> None:
    """Counts of bars, symbols, events, versions and ingests."""
    info = _store(store).summary()
    for k, v in info.items():
        console.print(f"{k}: {v}")
