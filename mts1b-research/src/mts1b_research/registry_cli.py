"""``mts mts1b-research strategies ...``: the registry from the command line.

Why apart from ``cli.py``: the CLI module gathers every command group of the library (the
service, reports); the strategy commands live here and :func:`install` adds them to the
``strategies`` group, so each group's code stays in one place.

Every command works on the research schema (``--dsn`` / ``$MTS_DATABASE_URL``, else the local
PostgreSQL of ``mts dev up``, started on demand; ``--schema`` / ``$MTS_RESEARCH_SCHEMA``).
Errors are one line naming the field and the value (``mts: [RESEARCH.BAD_INPUT] ...``).

Going live is not offered here: it needs the ``risk`` role, and a command line can only claim
a role, not prove it. Live promotions (and enabling a strategy that was live) go through a
signed command to the research service, which authenticates the role.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from mts1b_foundation import StrategySpec, StrategyState, ValidationFailed, parse_message

from mts1b_research.db import DEFAULT_SCHEMA
from mts1b_research.errors import ResearchInputError
from mts1b_research.promotion import MinimumEvidence, PromotionEvidence
from mts1b_research.registry import (
    StrategyRecord,
    StrategyRegistry,
    TransitionRecord,
    VersionRecord,
)

__all__ = ["install"]

T = TypeVar("T")

Dsn = Annotated[str | None, typer.Option(
    envvar="MTS_DATABASE_URL", help="PostgreSQL DSN (default: the local one of `mts dev up`)")]
Schema = Annotated[str, typer.Option(envvar="MTS_RESEARCH_SCHEMA", help="PostgreSQL schema")]
Actor = Annotated[str, typer.Option(envvar="MTS_ACTOR", help="who makes the change (recorded)")]
Reason = Annotated[str, typer.Option(help="why (recorded with the change)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
Name = Annotated[str, typer.Argument(help="the strategy's name")]

_LIVE_REFUSED = ("going live needs the 'risk' role, which a command line can claim but not "
                 "prove: give --key-file (a risk key) to send the signed command to the "
                 "research service (`mts mts1b-research serve --keys ...`)")
KeyFile = Annotated[Path | None, typer.Option(
    envvar="MTS_RESEARCH_KEY_FILE",
    help="your signing key: the command is sent signed to the research service, which checks "
         "its role (risk to go live)")]
Namespace = Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                               help="NATS namespace prefix")]


class PromoteTo(StrEnum):
    PAPER = "paper"
    LIVE = "live"


def _on_registry(dsn: str | None, schema: str,
                 work: Callable[[StrategyRegistry], Awaitable[T]],
                 rule: MinimumEvidence | None = None) -> T:
    """Open the registry, run ``work`` on it, close it (one event loop per command)."""
    async def session() -> T:
        async with await StrategyRegistry.open(dsn, schema=schema, rule=rule) as registry:
            return await work(registry)
    return asyncio.run(session())


def _param(text: str) -> tuple[str, int | float | bool | str]:
    """``KEY=VALUE`` with VALUE read as an integer, a number, true/false, else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ResearchInputError("--param", text, "expected KEY=VALUE, e.g. h_long=252")
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return key.strip(), lowered == "true"
    for kind in (int, float):
        try:
            return key.strip(), kind(raw)
        except ValueError:
            continue
    return key.strip(), raw


def _capital(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ResearchInputError("--capital", text, "not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise ResearchInputError("--capital", text, "must be a finite number >= 0")
    return str(value)


def _validated(data: Any) -> StrategySpec:
    """A StrategySpec, or the first problem as a one-line error naming the field."""
    try:
        return parse_message(StrategySpec, data)
    except ValidationFailed as exc:
        first = (exc.context.get("errors") or [{}])[0]
        raise ResearchInputError(f"spec.{first.get('field', '<root>')}",
                                 first.get("value"), first.get("reason", exc.message)) from None


def _spec_from_file(path: Path) -> StrategySpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResearchInputError("--file", str(path), f"cannot be read ({exc.strerror})"
                                 ) from None
    except UnicodeDecodeError:
        raise ResearchInputError("--file", str(path), "not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResearchInputError("--file", str(path), f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ResearchInputError("--file", str(path), "must hold one StrategySpec object")
    return _validated(data)


def _params_text(params: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={json.dumps(v) if isinstance(v, bool) else v}"
                           for k, v in params.items()) + "}"


def _strategy_line(record: StrategyRecord) -> str:
    s = record.spec
    universe = s.universe if isinstance(s.universe, str) else ",".join(s.universe)
    capital = f"{s.capital_usd:f} USD" if s.capital_usd is not None else "-"
    held = (f" (was {record.state_before_disable.value})"
            if record.state_before_disable else "")
    return (f"{s.name} v{s.version}: {s.state.value}{held}, factor {s.factor} "
            f"{_params_text(s.params)}, universe {universe}, sizing {s.sizing['method']}, "
            f"rebalance {s.rebalance}, horizon {s.horizon}, fund {s.fund_id or '-'}, "
            f"capital {capital}")


def _transition_line(t: TransitionRecord) -> str:
    roles = f" [{', '.join(t.roles)}]" if t.roles else ""
    rule = f"; rule: {'; '.join(t.verdict.reasons)}" if t.verdict else ""
    return (f"{t.strategy} v{t.version}: {t.from_state.value} -> {t.to_state.value} by "
            f"{t.actor}{roles} at {t.ts.isoformat()}: {t.reason or '-'}{rule}")


def _version_line(v: VersionRecord) -> str:
    return (f"v{v.spec.version} registered by {v.registered_by} at "
            f"{v.registered_at.isoformat()}: {v.reason or '-'}")


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=1))


def _print_transition(record: TransitionRecord, as_json: bool) -> None:
    if as_json:
        _echo_json(record.as_dict())
    else:
        typer.echo(_transition_line(record))


def strategies_list(dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA,
                    active: Annotated[bool, typer.Option(
                        "--active", help="leave out retired strategies")] = False,
                    as_json: AsJson = False) -> None:
    """Every strategy at its current version and state."""
    records = _on_registry(dsn, schema, lambda r: r.list(include_retired=not active))
    if as_json:
        _echo_json([r.as_dict() for r in records])
        return
    if not records:
        typer.echo("no strategies (mts mts1b-research strategies register --file spec.json)")
    for record in records:
        typer.echo(_strategy_line(record))


def strategies_show(name: Name, dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA,
                    as_json: AsJson = False) -> None:
    """One strategy: its current spec and state."""
    record = _on_registry(dsn, schema, lambda r: r.show(name))
    if as_json:
        _echo_json(record.as_dict())
    else:
        typer.echo(_strategy_line(record))
        typer.echo(f"updated {record.updated_at.isoformat()} by {record.updated_by}")


def _spec_from_flags(name: str | None, factor: str | None, params: list[str],
                     universe: list[str], sizing_method: str, rebalance: str, horizon: int,
                     fund: str | None, capital: str | None) -> StrategySpec:
    if name is None or factor is None or not universe:
        raise ResearchInputError("--name/--factor/--universe", None,
                                 "give --file, or --name, --factor and --universe")
    return _validated({
        "name": name, "factor": factor, "params": dict(_param(p) for p in params),
        "universe": universe[0] if len(universe) == 1 else universe,
        "sizing": {"method": sizing_method}, "rebalance": rebalance, "horizon": horizon,
        "fund_id": fund, "capital_usd": _capital(capital)})


def strategies_register(
    file: Annotated[Path | None, typer.Option(help="JSON file holding one StrategySpec")
                    ] = None,
    name: Annotated[str | None, typer.Option(help="strategy name")] = None,
    factor: Annotated[str | None, typer.Option(help="factor, e.g. f_momentum_12_1")] = None,
    param: Annotated[list[str] | None, typer.Option(help="a parameter KEY=VALUE (repeat)")
                     ] = None,
    universe: Annotated[list[str] | None, typer.Option(help="universe id (repeat for several)")
                        ] = None,
    sizing_method: Annotated[str, typer.Option(help="sizing method")] = "equal_weight_long",
    rebalance: Annotated[str, typer.Option(help="rebalance schedule")] = "daily",
    horizon: Annotated[int, typer.Option(help="sessions the signal predicts")] = 1,
    fund: Annotated[str | None, typer.Option(help="the fund it trades in")] = None,
    capital: Annotated[str | None, typer.Option(help="its sleeve's capital in USD")] = None,
    reason: Annotated[str | None, typer.Option(help="why (recorded)")] = None,
    dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA, actor: Actor = "cli",
    as_json: AsJson = False,
) -> None:
    """Register a strategy from --file or flags: a new name is version 1 in draft, a changed
    spec the next version (back in draft), the same spec again changes nothing."""
    spec = (_spec_from_file(file) if file is not None else
            _spec_from_flags(name, factor, param or [], universe or [], sizing_method,
                             rebalance, horizon, fund, capital))
    record = _on_registry(dsn, schema, lambda r: r.register(spec, actor=actor, reason=reason))
    if as_json:
        _echo_json(record.as_dict())
    else:
        typer.echo(_strategy_line(record))


def strategies_shadow(name: Name, reason: Reason, dsn: Dsn = None,
                      schema: Schema = DEFAULT_SCHEMA, actor: Actor = "cli",
                      as_json: AsJson = False) -> None:
    """draft -> shadow: its signals are computed and published on the shadow subject only."""
    _print_transition(_on_registry(dsn, schema, lambda r: r.shadow(
        name, actor=actor, reason=reason)), as_json)


def strategies_disable(
    name: Name, reason: Reason, dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA,
    actor: Actor = "cli", as_json: AsJson = False,
    key_file: Annotated[Path | None, typer.Option(
        envvar="MTS_OMS_KEY_FILE",
        help="your signing key (operations role): the OMS halts the strategy first - its "
             "working orders canceled, new ones refused - and its acknowledgement is awaited")
                        ] = None,
    namespace: Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                  help="NATS namespace prefix")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the OMS")] = 5.0,
) -> None:
    """Stop a strategy wherever it is (enable restores that state). With --key-file the OMS
    halts it first and the registry records the key's name as the actor."""
    if key_file is None:
        typer.echo(f"mts1b-research: the OMS was not told (no --key-file): working orders of "
                   f"{name} stay until you halt it (`mts mts1b-oms halt --strategy {name}`)",
                   err=True)
        _print_transition(_on_registry(dsn, schema, lambda r: r.disable(
            name, actor=actor, reason=reason)), as_json)
        return
    from mts1b_research.signed_cli import disable_with_halt

    ack, record = disable_with_halt(name, reason, key_file=key_file, dsn=dsn, schema=schema,
                                    namespace=namespace, timeout=timeout)
    typer.echo(f"OMS halted strategy {name} in {ack.seconds * 1000:.0f} ms "
               f"({ack.cancels_outstanding} cancels outstanding)", err=True)
    _print_transition(record, as_json)


def strategies_enable(name: Name, reason: Reason, dsn: Dsn = None,
                      schema: Schema = DEFAULT_SCHEMA, actor: Actor = "cli",
                      as_json: AsJson = False, key_file: KeyFile = None,
                      namespace: Namespace = None) -> None:
    """Back to the state held before the disable (one that was live: with --key-file, a
    risk key, through the service)."""
    if key_file is not None:
        from mts1b_research.signed_cli import send_signed

        typer.echo(send_signed({"action": "enable", "strategy": name, "reason": reason},
                               key_file=key_file, namespace=namespace, timeout=10.0))
        return
    _print_transition(_on_registry(dsn, schema, lambda r: r.enable(
        name, actor=actor, reason=reason)), as_json)


def strategies_retire(name: Name, reason: Reason, dsn: Dsn = None,
                      schema: Schema = DEFAULT_SCHEMA, actor: Actor = "cli",
                      as_json: AsJson = False) -> None:
    """End a strategy for good (its name and history stay)."""
    _print_transition(_on_registry(dsn, schema, lambda r: r.retire(
        name, actor=actor, reason=reason)), as_json)


def strategies_promote(
    name: Name, reason: Reason,
    to: Annotated[PromoteTo, typer.Option(help="paper (live: via the service)")],
    sessions: Annotated[int, typer.Option(help="sessions observed in the current stage")],
    ic: Annotated[float | None, typer.Option(help="mean IC in the current stage")] = None,
    t_stat: Annotated[float | None, typer.Option(help="t-stat of the mean IC")] = None,
    hit_rate: Annotated[float | None, typer.Option(help="hit rate in [0, 1]")] = None,
    min_sessions: Annotated[int, typer.Option(
        envvar="MTS_RESEARCH_MIN_SESSIONS", help="the rule: at least this many sessions")] = 20,
    min_ic: Annotated[float | None, typer.Option(
        envvar="MTS_RESEARCH_MIN_IC", help="the rule: a mean IC floor")] = None,
    min_t_stat: Annotated[float | None, typer.Option(
        envvar="MTS_RESEARCH_MIN_T_STAT", help="the rule: a t-stat floor")] = None,
    dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA, actor: Actor = "cli",
    as_json: AsJson = False, key_file: KeyFile = None, namespace: Namespace = None,
) -> None:
    """shadow -> paper when the rule (--min-sessions, --min-ic, --min-t-stat) accepts the
    evidence; the verdict is recorded with the transition. With --key-file the command goes
    signed to the research service, whose rule and key registry decide (paper -> live needs
    a risk key)."""
    if key_file is not None:
        from mts1b_research.signed_cli import send_signed

        proof: dict[str, float] = {"sessions": float(sessions)}
        for field, value in (("mean_ic", ic), ("t_stat", t_stat), ("hit_rate", hit_rate)):
            if value is not None:
                proof[field] = value
        typer.echo(send_signed({"action": "promote", "strategy": name, "to_state": to.value,
                                "evidence": proof, "reason": reason},
                               key_file=key_file, namespace=namespace, timeout=10.0))
        return
    if to is PromoteTo.LIVE:
        raise ResearchInputError("--to", "live", _LIVE_REFUSED)
    evidence = PromotionEvidence(sessions, mean_ic=ic, t_stat=t_stat, hit_rate=hit_rate)
    rule = MinimumEvidence(min_sessions, min_ic=min_ic, min_t_stat=min_t_stat)
    _print_transition(_on_registry(dsn, schema, lambda r: r.promote(
        name, StrategyState.PAPER, actor=actor, reason=reason, evidence=evidence), rule=rule),
        as_json)


def strategies_history(name: Name, dsn: Dsn = None, schema: Schema = DEFAULT_SCHEMA,
                       as_json: AsJson = False) -> None:
    """Every registered version and every state change, oldest first."""
    async def both(r: StrategyRegistry) -> tuple[list[VersionRecord], list[TransitionRecord]]:
        return await r.versions(name), await r.history(name)

    versions, transitions = _on_registry(dsn, schema, both)
    if as_json:
        _echo_json({"versions": [v.as_dict() for v in versions],
                    "transitions": [t.as_dict() for t in transitions]})
        return
    for version in versions:
        typer.echo(_version_line(version))
    for transition in transitions:
        typer.echo(_transition_line(transition))


_COMMANDS: dict[str, Callable[..., None]] = {
    "list": strategies_list, "show": strategies_show, "register": strategies_register,
    "shadow": strategies_shadow, "promote": strategies_promote,
    "disable": strategies_disable, "enable": strategies_enable,
    "retire": strategies_retire, "history": strategies_history,
}


def install(group: typer.Typer) -> None:
    """Add the strategy commands to ``group`` (the CLI's ``strategies`` group)."""
    for name, command in _COMMANDS.items():
        group.command(name)(command)
