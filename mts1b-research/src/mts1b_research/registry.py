"""The strategy registry: named, versioned strategy specs and their life cycle in PostgreSQL.

Why a registry and not a config file: a strategy's spec and its stage (draft, shadow, paper,
live) are decisions with an owner. Every spec ever registered under a name is kept
(``strategy_versions``), every state change is a row with the actor, the roles they held, the
time, the reason and - for a promotion - the rule's verdict and the evidence it judged
(``strategy_transitions``), written in the same transaction as the change, so the state and its
history cannot disagree. Committed transitions are then handed to a
:class:`TransitionPublisher` (the service wires the bus for the audit chain); PostgreSQL stays
the record when the bus is down.

Which moves are allowed is one table (:mod:`mts1b_research.registry_states`); promotions from
shadow and paper also need the user's :class:`~mts1b_research.promotion.PromotionRule`, and
going live needs the ``risk`` role whatever the rule says. The registry enforces the roles it
is given; authenticating them (signed commands) is the caller's job.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import json
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

import asyncpg
from mts1b_foundation import MtsError, StrategySpec, StrategyState, parse_message
from mts1b_platform.logging import get_logger

from mts1b_research.db import DEFAULT_SCHEMA, ResearchDb
from mts1b_research.errors import ResearchInputError, TransitionRefused
from mts1b_research.promotion import MinimumEvidence, PromotionEvidence, PromotionRule, RuleVerdict
from mts1b_research.registry_states import RISK_ROLE, Requirement, check_transition

if TYPE_CHECKING:
    from mts1b_research.registry_sync import SyncStrategyRegistry

__all__ = [
    "RISK_ROLE",
    "StrategyRecord",
    "StrategyRegistry",
    "TransitionPublisher",
    "TransitionRecord",
    "VersionRecord",
    "database_url",
]

_log = get_logger("mts1b_research.registry")
_ACTOR = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127}$")
_MAX_REASON = 2000
_CURRENT = ("SELECT s.*, v.spec FROM strategies s JOIN strategy_versions v "
            "ON v.name = s.name AND v.version = s.version")
S = StrategyState


@dataclass(frozen=True, slots=True)
class StrategyRecord:
    """A strategy as the registry holds it: its current spec (whose ``version`` and ``state``
    are the registry's), and the state it held before a disable (``None`` unless disabled)."""

    spec: StrategySpec
    state_before_disable: StrategyState | None
    updated_at: dt.datetime
    updated_by: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def state(self) -> StrategyState:
        return self.spec.state

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the CLI's ``--json``)."""
        return {"name": self.name, "version": self.version, "state": self.state.value,
                "state_before_disable": (self.state_before_disable.value
                                         if self.state_before_disable else None),
                "updated_at": self.updated_at.isoformat(), "updated_by": self.updated_by,
                "spec": json.loads(self.spec.to_json())}


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One registered version of a strategy: the spec, who registered it, when and why."""

    spec: StrategySpec
    registered_at: dt.datetime
    registered_by: str
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.spec.version, "registered_at": self.registered_at.isoformat(),
                "registered_by": self.registered_by, "reason": self.reason,
                "spec": json.loads(self.spec.to_json())}


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One committed state change, as recorded and as published for the audit chain."""

    transition_id: int
    strategy: str
    version: int
    from_state: StrategyState
    to_state: StrategyState
    actor: str
    roles: tuple[str, ...]
    ts: dt.datetime
    reason: str | None
    verdict: RuleVerdict | None = None
    evidence: PromotionEvidence | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what a publisher sends and the CLI prints."""
        return {"transition_id": self.transition_id, "strategy": self.strategy,
                "version": self.version, "from_state": self.from_state.value,
                "to_state": self.to_state.value, "actor": self.actor, "roles": list(self.roles),
                "ts": self.ts.isoformat(), "reason": self.reason,
                "verdict": self.verdict.as_dict() if self.verdict else None,
                "evidence": self.evidence.as_dict() if self.evidence else None}


class TransitionPublisher(Protocol):
    """Where committed transitions go (the bus in the service; a list in tests)."""

    async def transition(self, record: TransitionRecord) -> None: ...


async def database_url(dsn: str | None = None) -> str:
    """``dsn``, else ``$MTS_DATABASE_URL``, else the local PostgreSQL that ``mts dev up``
    manages, started on demand - so a notebook with nothing configured still has a registry."""
    if dsn:
        return dsn
    if configured := os.environ.get("MTS_DATABASE_URL"):
        return configured
    from mts1b_platform.devservices import ensure_up

    services = await asyncio.to_thread(ensure_up, nats=False, postgres=True)
    return services[0].url


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _spec(text: Any, version: int, state: StrategyState) -> StrategySpec:
    spec = parse_message(StrategySpec, _json(text))
    return spec.model_copy(update={"version": version, "state": state})


def _strategy(row: asyncpg.Record) -> StrategyRecord:
    before = row["state_before_disable"]
    return StrategyRecord(_spec(row["spec"], row["version"], S(row["state"])),
                          S(before) if before else None, row["updated_at"], row["updated_by"])


def _evidence(data: Any) -> PromotionEvidence | None:
    return None if data is None else PromotionEvidence(**json.loads(_json(data)))


def _verdict(data: Any) -> RuleVerdict | None:
    if data is None:
        return None
    raw = json.loads(_json(data))
    return RuleVerdict(bool(raw["ok"]), [str(r) for r in raw["reasons"]])


def _transition(row: asyncpg.Record) -> TransitionRecord:
    return TransitionRecord(row["transition_id"], row["name"], row["version"],
                            S(row["from_state"]), S(row["to_state"]), row["actor"],
                            tuple(row["roles"]), row["ts"], row["reason"],
                            _verdict(row["verdict"]), _evidence(row["evidence"]))


def _normalized(spec: StrategySpec) -> StrategySpec:
    """The spec as versions are compared and stored: the registry owns ``version`` and
    ``state``, so what the caller put there does not make a spec "changed"."""
    return spec.model_copy(update={"version": 1, "state": S.DRAFT})


def _check_actor(actor: str) -> None:
    if not isinstance(actor, str) or not _ACTOR.match(actor):
        raise ResearchInputError("actor", actor, "must be an id (A-Z a-z 0-9 _ . : @ = + -, "
                                 "at most 128)")


def _check_reason(reason: str | None, *, required: bool) -> None:
    if reason is None or not reason.strip():
        if required:
            raise ResearchInputError("reason", reason, "a state change needs a reason")
        return
    if len(reason) > _MAX_REASON:
        raise ResearchInputError("reason", reason[:40] + "...",
                                 f"at most {_MAX_REASON} characters")


@dataclass(frozen=True, slots=True)
class _Move:
    """A requested change, checked inside the locking transaction."""

    name: str
    target: StrategyState | None  # None: enable (back to the remembered state)
    actor: str
    roles: tuple[str, ...]
    reason: str
    evidence: PromotionEvidence | None
    when: dt.datetime


class StrategyRegistry:
    """Strategies in the research schema. ``await StrategyRegistry.open()`` in a notebook, or
    ``StrategyRegistry(db)`` on an open :class:`~mts1b_research.db.ResearchDb`.

    ``rule`` judges promotions out of shadow and paper (default: at least 20 sessions);
    ``publisher`` receives every committed transition.
    """

    def __init__(self, db: ResearchDb, *, rule: PromotionRule | None = None,
                 publisher: TransitionPublisher | None = None) -> None:
        self.db = db
        self.rule: PromotionRule = rule if rule is not None else MinimumEvidence(min_sessions=20)
        self.publisher = publisher
        self._owns_db = False

    @classmethod
    async def open(cls, dsn: str | None = None, *, schema: str | None = None,
                   rule: PromotionRule | None = None,
                   publisher: TransitionPublisher | None = None) -> Self:
        """Open the registry on ``dsn`` (default: :func:`database_url`) and ``schema``
        (default: ``$MTS_RESEARCH_SCHEMA``, else ``mts_research``, as the CLI reads it);
        :meth:`close` closes the pool it opened."""
        name = schema or os.environ.get("MTS_RESEARCH_SCHEMA") or DEFAULT_SCHEMA
        db = await ResearchDb.open(await database_url(dsn), schema=name)
        registry = cls(db, rule=rule, publisher=publisher)
        registry._owns_db = True
        return registry

    @staticmethod
    def connect_sync(dsn: str | None = None, *, schema: str | None = None,
                     rule: PromotionRule | None = None,
                     publisher: TransitionPublisher | None = None) -> SyncStrategyRegistry:
        """The registry with blocking methods (a notebook cell or script that does not
        ``await``): :class:`~mts1b_research.registry_sync.SyncStrategyRegistry`."""
        from mts1b_research.registry_sync import SyncStrategyRegistry

        return SyncStrategyRegistry.connect(dsn, schema=schema, rule=rule, publisher=publisher)

    async def close(self) -> None:
        """Close the pool when :meth:`open` made it (a pool passed in stays the owner's)."""
        if self._owns_db:
            await self.db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- specs and versions --------------------------------------------------------------

    async def register(self, spec: StrategySpec, *, actor: str, reason: str | None = None,
                       now: dt.datetime | None = None) -> StrategyRecord:
        """Register ``spec`` under its name: a new name is version 1 in ``draft``; a changed
        spec is the next version, back in ``draft`` (its evidence was earned by the old
        version, so a live strategy changed does not keep trading on it); the current spec
        again changes nothing. The spec's own ``version`` and ``state`` are ignored: the
        registry numbers versions and owns states. A retired name is never reused."""
        _check_actor(actor)
        _check_reason(reason, required=False)
        when = now or _now()
        normal = _normalized(spec)
        published: TransitionRecord | None = None
        async with self.db.pool.acquire() as conn, conn.transaction():
            row = await self._locked_or_created(conn, normal, actor, reason, when)
            current = _strategy(row)
            if row["created_now"] or _normalized(current.spec) == normal:
                return current
            published = await self._new_version(conn, current, normal, actor, reason, when)
            row = await conn.fetchrow(_CURRENT + " WHERE s.name = $1", normal.name)
        if published is not None:
            await self._published(published)
        return _strategy(row)

    async def _locked_or_created(self, conn: asyncpg.Connection, spec: StrategySpec,
                                 actor: str, reason: str | None,
                                 when: dt.datetime) -> asyncpg.Record:
        """The strategy's row, locked; created (version 1, draft) when the name is new. Two
        registrations of one new name race on the primary key: the loser locks the winner's
        row and goes on as a re-registration."""
        inserted = await conn.fetchrow(
            "INSERT INTO strategies (name, version, state, updated_at, updated_by) "
            "VALUES ($1, 1, 'draft', $2, $3) ON CONFLICT (name) DO NOTHING RETURNING name",
            spec.name, when, actor)
        if inserted is not None:
            await self._insert_version(conn, spec, 1, actor, reason, when)
        row = await conn.fetchrow(
            "SELECT s.*, v.spec, $2::boolean AS created_now FROM strategies s "
            "JOIN strategy_versions v ON v.name = s.name AND v.version = s.version "
            "WHERE s.name = $1 FOR UPDATE OF s", spec.name, inserted is not None)
        if row is None:  # strategies rows are never deleted; only a schema dropped under us
            raise ResearchInputError("name", spec.name, "vanished while being registered")
        return row

    async def _new_version(self, conn: asyncpg.Connection, current: StrategyRecord,
                           spec: StrategySpec, actor: str, reason: str | None,
                           when: dt.datetime) -> TransitionRecord | None:
        """Store version N+1 and return the strategy to draft (a transition when it was not
        there already)."""
        if current.state is S.RETIRED:
            raise TransitionRefused(
                f"strategy {current.name} is retired; register the change under a new name",
                strategy=current.name, from_state=S.RETIRED.value, to_state=S.DRAFT.value)
        version = current.version + 1
        await self._insert_version(conn, spec, version, actor, reason, when)
        await conn.execute(
            "UPDATE strategies SET version = $2, state = 'draft', state_before_disable = NULL, "
            "updated_at = $3, updated_by = $4 WHERE name = $1", current.name, version, when,
            actor)
        if current.state is S.DRAFT:
            return None
        why = f"version {version} registered" + (f": {reason}" if reason else "")
        move = _Move(current.name, S.DRAFT, actor, (), why, None, when)
        return await self._record(conn, move, version, current.state, S.DRAFT, None)

    @staticmethod
    async def _insert_version(conn: asyncpg.Connection, spec: StrategySpec, version: int,
                              actor: str, reason: str | None, when: dt.datetime) -> None:
        stored = spec.model_copy(update={"version": version})
        await conn.execute(
            "INSERT INTO strategy_versions (name, version, spec, registered_at, registered_by, "
            "reason) VALUES ($1, $2, $3::jsonb, $4, $5, $6)", spec.name, version,
            stored.to_json().decode(), when, actor, reason)

    async def get(self, name: str) -> StrategyRecord | None:
        """The strategy's current version and state, or ``None``."""
        row = await self.db.pool.fetchrow(_CURRENT + " WHERE s.name = $1", name)
        return None if row is None else _strategy(row)

    async def show(self, name: str) -> StrategyRecord:
        """The strategy's current version and state; an unknown name is a
        :class:`ResearchInputError` naming it."""
        record = await self.get(name)
        if record is None:
            raise ResearchInputError("name", name, "no such strategy")
        return record

    async def versions(self, name: str) -> builtins.list[VersionRecord]:
        """Every registered version of the strategy, oldest first."""
        await self.show(name)
        rows = await self.db.pool.fetch(
            "SELECT * FROM strategy_versions WHERE name = $1 ORDER BY version", name)
        return [VersionRecord(_spec(r["spec"], r["version"], S.DRAFT), r["registered_at"],
                              r["registered_by"], r["reason"]) for r in rows]

    async def history(self, name: str) -> builtins.list[TransitionRecord]:
        """Every state change of the strategy, oldest first."""
        await self.show(name)
        rows = await self.db.pool.fetch(
            "SELECT * FROM strategy_transitions WHERE name = $1 ORDER BY transition_id", name)
        return [_transition(r) for r in rows]

    # -- the life cycle ------------------------------------------------------------------

    async def shadow(self, name: str, *, actor: str, reason: str,
                     roles: Collection[str] = (), now: dt.datetime | None = None
                     ) -> TransitionRecord:
        """draft -> shadow: signals computed and published on the shadow subject, not traded."""
        return await self._move(name, S.SHADOW, actor, roles, reason, None, now)

    async def promote(self, name: str, to: StrategyState, *, actor: str, reason: str,
                      evidence: PromotionEvidence | None = None, roles: Collection[str] = (),
                      now: dt.datetime | None = None) -> TransitionRecord:
        """shadow -> paper or paper -> live, when the promotion rule approves ``evidence``
        (the strategy's statistics in its current stage); live also needs ``"risk"`` in
        ``roles``. A refusal lists every reason and writes nothing."""
        try:
            target = S(to)
        except ValueError:
            raise ResearchInputError("to", to, "promote goes to paper or live") from None
        if target not in (S.PAPER, S.LIVE):
            raise ResearchInputError("to", target.value, "promote goes to paper or live")
        return await self._move(name, target, actor, roles, reason, evidence, now)

    async def disable(self, name: str, *, actor: str, reason: str,
                      roles: Collection[str] = (), now: dt.datetime | None = None
                      ) -> TransitionRecord:
        """Stop the strategy wherever it is (needs no role: stopping must always be easy);
        :meth:`enable` restores that state."""
        return await self._move(name, S.DISABLED, actor, roles, reason, None, now)

    async def enable(self, name: str, *, actor: str, reason: str,
                     roles: Collection[str] = (), now: dt.datetime | None = None
                     ) -> TransitionRecord:
        """Back to the state held before the disable; back to live needs ``"risk"``."""
        return await self._move(name, None, actor, roles, reason, None, now)

    async def retire(self, name: str, *, actor: str, reason: str,
                     roles: Collection[str] = (), now: dt.datetime | None = None
                     ) -> TransitionRecord:
        """End the strategy for good (its name and history stay)."""
        return await self._move(name, S.RETIRED, actor, roles, reason, None, now)

    async def _move(self, name: str, target: StrategyState | None, actor: str,
                    roles: Collection[str], reason: str, evidence: PromotionEvidence | None,
                    now: dt.datetime | None) -> TransitionRecord:
        _check_actor(actor)
        _check_reason(reason, required=True)
        if isinstance(roles, str):
            raise ResearchInputError("roles", roles, "a collection of role names, not a string")
        move = _Move(name, target, actor, tuple(sorted(set(roles))), reason, evidence,
                     now or _now())
        async with self.db.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_CURRENT + " WHERE s.name = $1 FOR UPDATE OF s", name)
            if row is None:
                raise ResearchInputError("name", name, "no such strategy")
            record = await self._apply(conn, _strategy(row), move)
        await self._published(record)
        return record

    async def _apply(self, conn: asyncpg.Connection, current: StrategyRecord,
                     move: _Move) -> TransitionRecord:
        """Check the move against the table and its requirements, then write it."""
        remembered = current.state_before_disable
        target = move.target
        if target is None:
            if current.state is not S.DISABLED or remembered is None:
                raise TransitionRefused(
                    f"strategy {move.name} is {current.state.value}, not disabled: only a "
                    "disabled strategy can be enabled", strategy=move.name,
                    from_state=current.state.value, to_state=current.state.value)
            target = remembered
        requirement = check_transition(current.state, target, remembered=remembered,
                                       strategy=move.name)
        verdict = self._judge(requirement, move, current.state, target)
        before = current.state.value if target is S.DISABLED else None
        await conn.execute(
            "UPDATE strategies SET state = $2, state_before_disable = $3, updated_at = $4, "
            "updated_by = $5 WHERE name = $1", move.name, target.value, before, move.when,
            move.actor)
        return await self._record(conn, move, current.version, current.state, target, verdict)

    def _judge(self, requirement: Requirement, move: _Move, source: StrategyState,
               target: StrategyState) -> RuleVerdict | None:
        """The rule's verdict when the move needs one; :class:`TransitionRefused` listing
        every unmet requirement (the rule's reasons, a missing risk role)."""
        reasons: builtins.list[str] = []
        verdict: RuleVerdict | None = None
        if requirement.rule:
            if move.evidence is None:
                reasons.append("the promotion rule needs evidence (sessions, IC, t-stat) "
                               "and none was given")
            else:
                verdict = self.rule(move.evidence)
                if not verdict.ok:
                    reasons.extend(verdict.reasons or ["the promotion rule refused"])
        if requirement.risk and RISK_ROLE not in move.roles:
            reasons.append(f"going live needs the {RISK_ROLE!r} role; {move.actor} holds "
                           f"{', '.join(move.roles) or 'no role'}")
        if reasons:
            raise TransitionRefused(
                f"strategy {move.name}: {source.value} -> {target.value} refused: "
                + "; ".join(reasons), strategy=move.name, from_state=source.value,
                to_state=target.value, reasons=reasons)
        return verdict

    @staticmethod
    async def _record(conn: asyncpg.Connection, move: _Move, version: int,
                      source: StrategyState, target: StrategyState,
                      verdict: RuleVerdict | None) -> TransitionRecord:
        row = await conn.fetchrow(
            "INSERT INTO strategy_transitions (name, version, from_state, to_state, actor, "
            "roles, ts, reason, verdict, evidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
            "$9::jsonb, $10::jsonb) RETURNING *", move.name, version, source.value,
            target.value, move.actor, list(move.roles), move.when, move.reason,
            json.dumps(verdict.as_dict()) if verdict else None,
            json.dumps(move.evidence.as_dict()) if move.evidence and verdict else None)
        return _transition(row)

    async def _published(self, record: TransitionRecord) -> bool:
        """Hand a committed transition to the publisher; whether it took it. A bus failure
        does not undo the commit (PostgreSQL is the record, ``history`` reads it): it is
        logged with the transition's id so the audit chain's gap can be found and filled."""
        if self.publisher is None:
            return False
        try:
            await self.publisher.transition(record)
        except MtsError as exc:
            _log.warning("strategy transition committed, not published",
                         strategy=record.strategy, transition_id=record.transition_id,
                         from_state=record.from_state.value, to_state=record.to_state.value,
                         error=exc.code)
            return False
        return True

    async def list(self, *, include_retired: bool = True) -> builtins.list[StrategyRecord]:
        """Every strategy at its current version, by name."""
        rows = await self.db.pool.fetch(
            _CURRENT + " WHERE $1 OR s.state <> 'retired' ORDER BY s.name", include_retired)
        return [_strategy(r) for r in rows]
