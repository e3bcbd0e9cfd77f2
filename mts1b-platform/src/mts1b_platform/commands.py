"""``mts mts1b-platform ...``: the platform's own commands.

``tail`` prints bus messages as they arrive::

    mts mts1b-platform tail --subject "mts.v1.>" --filter "order_id=ord-abc"
    mts mts1b-platform tail --subject "mts.v1.oms.>" --since 2h --json

Without ``--since`` it subscribes to the subject live (commands included). With ``--since`` it
replays from every JetStream stream that can hold such subjects, starting at that time, and
then keeps following them live (stored events only: commands are not stored). ``--filter
key=value`` (repeatable, all must match) keeps messages whose JSON has a field ``key`` - at any
depth - equal to ``value``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app", "check_subject", "keygen", "matches_filters", "parse_filters", "parse_since"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Platform tools: follow the bus (`tail`), make signing keys "
                       "(`keygen`).")


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``30s``, ``10m``, ``2h``, ``1d`` ago, or an ISO-8601 time (UTC when no offset given)."""
    now = now or dt.datetime.now(dt.UTC)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
    if m:
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - dt.timedelta(seconds=seconds)
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 30s, 10m, 2h, 1d or an ISO time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def check_subject(value: str) -> str:
    """``value`` if it is a NATS subject or wildcard pattern, else a usage error saying why.

    Checked here because nats-py refuses a bad subject only when subscribing, with an error
    that names nothing, after the connection is up.
    """
    parts = value.split(".")
    for i, part in enumerate(parts):
        if not part:
            why = "an empty token (two dots, or a dot at an end)"
        elif any(c.isspace() or not c.isprintable() for c in part):
            why = f"a blank or control character in {part!r}"
        elif part == ">" and i != len(parts) - 1:
            why = "'>' before the last token"
        elif part not in ("*", ">") and ("*" in part or ">" in part):
            why = f"a wildcard inside the token {part!r}"
        else:
            continue
        raise typer.BadParameter(f"{value!r} is not a subject: {why}; e.g. mts.v1.oms.>")
    return value


def parse_filters(values: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``."""
    out = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: filters look like key=value")
        out[key.strip()] = val.strip()
    return out


def _fields(data: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield str(k), v
            yield from _fields(v)
    elif isinstance(data, list):
        for v in data:
            yield from _fields(v)


def matches_filters(data: Any, filters: Mapping[str, str]) -> bool:
    """Whether every ``key=value`` matches some field of ``data`` (at any depth)."""
    if not filters:
        return True
    found = {k: False for k in filters}
    for key, value in _fields(data):
        if key in filters and not isinstance(value, Mapping | list) and (
                str(value) == filters[key] or json.dumps(value) == filters[key]):
            found[key] = True
    return all(found.values())


def _subject_may_overlap(a: str, b: str) -> bool:
    """Whether some concrete subject matches both patterns."""
    ta, tb = a.split("."), b.split(".")
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


def _is_subset(a: str, b: str) -> bool:
    """Whether every subject matching pattern ``a`` also matches pattern ``b``."""
    ta, tb = a.split("."), b.split(".")
    for i, y in enumerate(tb):
        if y == ">":
            return len(ta) > i
        if i >= len(ta):
            return False
        x = ta[i]
        if x == ">" or (y != "*" and (x == "*" or x != y)):
            return False
    return len(ta) == len(tb)


def _render(subject: str, data: bytes, headers: Mapping[str, str], as_json: bool,
            stamp: dt.datetime | None) -> str:
    try:
        payload: Any = json.loads(data)
    except ValueError:
        payload = None
    when = (stamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    if as_json:
        return json.dumps({"ts": when.isoformat(), "subject": subject,
                           "headers": dict(headers),
                           "data": payload if payload is not None else data.decode("utf-8",
                                                                                  "replace")})
    if isinstance(payload, Mapping):
        body = " ".join(f"{k}={v}" for k, v in payload.items()
                        if k != "schema_version" and not isinstance(v, Mapping | list))
    else:
        body = data[:200].decode("utf-8", "replace")
    return f"{when:%H:%M:%S.%f}"[:-3] + f" {subject} {body}"


async def _tail(subject: str, filters: dict[str, str], as_json: bool,
                since: dt.datetime | None, max_messages: int | None,
                duration: float | None) -> int:
    from mts1b_foundation.subjects import STREAMS
    from nats.js import api

    from mts1b_platform.bus import Bus
    from mts1b_platform.redaction import redact

    bus = await Bus.connect()
    shown = 0
    done = asyncio.Event()

    async def show(wire_subject: str, data: bytes, headers: Mapping[str, str],
                   stamp: dt.datetime | None) -> None:
        nonlocal shown
        logical = bus.logical_subject(wire_subject)
        from mts1b_foundation.subjects import matches

        if done.is_set() or not matches(subject, logical):
            return
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        if not matches_filters(payload, filters):
            return
        typer.echo(redact(_render(logical, data, headers, as_json, stamp)))
        shown += 1
        if max_messages is not None and shown >= max_messages:
            done.set()

    subs = []
    try:
        if since is None:
            async def on_msg(msg: Any) -> None:
                await show(msg.subject, msg.data, msg.headers or {}, None)

            wire = bus.wire_subject(subject)
            subs.append(await bus.nc.subscribe(wire, cb=on_msg))
            await bus.confirm_subscription(wire)  # a refused subscription is an error, not silence
        else:
            for domain, patterns in STREAMS.items():
                stream = bus.stream_for(domain)
                for pattern in patterns:
                    if not _subject_may_overlap(subject, pattern):
                        continue
                    # Filter on the server by the narrower of the two when one contains the
                    # other; otherwise by the stream's pattern, and `show` filters the rest.
                    narrow = subject if _is_subset(subject, pattern) else pattern

                    async def on_js(msg: Any) -> None:
                        await show(msg.subject, msg.data, msg.headers or {},
                                   msg.metadata.timestamp)

                    try:
                        subs.append(await bus.js.subscribe(
                            bus.wire_subject(narrow), stream=stream, cb=on_js,
                            ordered_consumer=True,
                            config=api.ConsumerConfig(
                                deliver_policy=api.DeliverPolicy.BY_START_TIME,
                                opt_start_time=since.astimezone(dt.UTC))))
                    except Exception as exc:  # e.g. a stream that was never declared here
                        typer.echo(redact(f"(skipping {stream} {pattern}: {exc})"), err=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), duration)
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await bus.drain()
    return shown


@app.command()
def tail(
    subject: Annotated[str, typer.Option("--subject", "-s",
                                         help="subject or wildcard, e.g. mts.v1.>")] = "mts.v1.>",
    filter_: Annotated[list[str] | None, typer.Option(
        "--filter", "-f", help="key=value a message must contain (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    since: Annotated[str | None, typer.Option(
        help="replay stored events from this long ago (10m, 2h, 1d) or an ISO time")] = None,
    max_messages: Annotated[int | None, typer.Option(
        "--max-messages", "-n", help="stop after this many matching messages")] = None,
    duration: Annotated[float | None, typer.Option(
        help="stop after this many seconds")] = None,
) -> None:
    """Print bus messages that match SUBJECT and every --filter, live or replayed."""
    try:
        import nats  # noqa: F401 - only to say which extra is missing, before anything starts
    except ImportError:
        typer.echo('tail: the NATS client is not installed: pip install "nats-py[nkeys]>=2.7,<3"'
                   " (the bus extra of mts1b-platform)", err=True)
        raise typer.Exit(1) from None
    from mts1b_platform.bus import BusError

    check_subject(subject)
    filters = parse_filters(filter_ or [])
    start = parse_since(since) if since else None
    try:
        asyncio.run(_tail(subject, filters, as_json, start, max_messages, duration))
    except BusError as exc:
        from mts1b_platform.redaction import redact

        typer.echo(redact(f"tail: {exc.message}"), err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # pragma: no cover - interactive stop
        pass


@app.command()
def keygen(
    name: Annotated[str, typer.Option(help="the name services record as actor, e.g. "
                                           "ops-alice")],
    out: Annotated[Path, typer.Option(help="the private key file to create (mode 600; an "
                                           "existing file is never overwritten)")],
    role: Annotated[list[str] | None, typer.Option(
        help="operations (halt, reduce, configure a fund) or risk (resume, reduce a HALTED "
             "scope, loosen a fund's limits); repeat for both")] = None,
) -> None:
    """Make a signing key: the private key goes to --out, readable by you only; stdout gets
    the public key's entry for a key registry (the OMS's and the treasury's serve --keys).
    The private key is printed nowhere."""
    try:
        from mts1b_platform.signing import KeyFileError, Role, SigningKey
    except ModuleNotFoundError:  # the signing extra is not installed
        typer.echo('mts: keygen needs PyNaCl, which mts1b-platform\'s "signing" extra adds: '
                   'pip install "pynacl>=1.5,<2"', err=True)
        raise typer.Exit(1) from None

    known = [r.value for r in Role]
    if not role or any(r not in known for r in role):
        raise typer.BadParameter(f"give --role {' and/or --role '.join(known)}",
                                 param_hint="--role")
    try:
        key = SigningKey.generate(name)
        key.save(out)
    except KeyFileError as exc:
        raise typer.BadParameter(exc.message) from None
    typer.echo(json.dumps(key.registered(role).entry()))
    typer.echo(f"private key of {name} written to {out} (mode 600, for your eyes only); add the "
               "line above to the \"keys\" list of the key registry of each service it signs "
               "for (the OMS, the treasury)", err=True)
