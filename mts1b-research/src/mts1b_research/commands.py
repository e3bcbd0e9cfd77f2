"""Signed strategy commands: promote (to paper or live) and enable, checked then applied.

Why a signed command: the registry refuses to put a strategy live without the ``risk`` role,
and a role claimed on a command line proves nothing. A :class:`~mts1b_foundation.
StrategyCommand` carries an Ed25519 signature by a key this service registered
(:mod:`mts1b_platform.signing`: registered key, signature, role, 30 s window, a nonce used
once); the registry then applies it with the key's registered name as the actor and the key's
roles, so going live - by promotion, or by enabling a strategy that was live - happens only
with a ``risk`` key, whatever the promotion rule says.
"""

from __future__ import annotations

import datetime as dt

from mts1b_foundation import CommandReply, ReplyCode, StrategyCommand, StrategyState, SystemClock
from mts1b_platform.signing import (
    DEFAULT_COMMAND_WINDOW,
    KeyRegistry,
    Role,
    SignedCommandVerifier,
    claim_nonce_in,
)

from mts1b_research.errors import ResearchError
from mts1b_research.promotion import PromotionEvidence
from mts1b_research.registry import StrategyRegistry

__all__ = ["StrategyCommandDesk"]


class _Nonces:
    def __init__(self, registry: StrategyRegistry) -> None:
        self.registry = registry

    async def claim_nonce(self, key_id: str, nonce: str, *, command: str,
                          signed_at: dt.datetime, now: dt.datetime,
                          forget_before: dt.datetime) -> bool:
        return await claim_nonce_in(self.registry.db.pool, key_id, nonce, command=command,
                                    signed_at=signed_at, now=now, forget_before=forget_before)


class StrategyCommandDesk:
    """Answers ``mts.v1.research.commands.strategy``; ``keys`` ``None`` refuses every one."""

    def __init__(self, registry: StrategyRegistry, keys: KeyRegistry | None, *,
                 window: dt.timedelta = DEFAULT_COMMAND_WINDOW) -> None:
        self.registry = registry
        self.clock = SystemClock()
        self.verifier = None if keys is None else SignedCommandVerifier(
            keys, _Nonces(registry), clock=self.clock, window=window, receiver="research")

    async def _needs_risk(self, command: StrategyCommand) -> bool:
        if command.action == "promote":
            return command.to_state == "live"
        record = await self.registry.show(command.strategy)
        return record.state_before_disable is StrategyState.LIVE

    async def handle(self, command: StrategyCommand) -> CommandReply:
        now = self.clock.now()
        if self.verifier is None:
            return CommandReply(ok=False, code=ReplyCode.UNAUTHORIZED, ts=now,
                                message="this research service has no key registry: signed "
                                        "strategy commands are refused (serve --keys)")
        try:
            risk = await self._needs_risk(command)
        except ResearchError as exc:
            return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                                message=exc.message[:4000])
        key = await self.verifier.check(
            command, Role.RISK if risk else _any_role(self.verifier.registry, command.key_id),
            why_role=" (it puts the strategy live)" if risk else "",
            log={"strategy": command.strategy})
        if isinstance(key, CommandReply):
            return key
        roles = {r.value for r in key.roles}
        try:
            if command.action == "promote":
                evidence = _evidence(command.evidence)
                record = await self.registry.promote(
                    command.strategy, StrategyState(command.to_state or ""), actor=key.name,
                    reason=command.reason, evidence=evidence, roles=roles)
            else:
                record = await self.registry.enable(command.strategy, actor=key.name,
                                                    reason=command.reason, roles=roles)
        except ResearchError as exc:
            return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                                message=exc.message[:4000])
        return CommandReply(ok=True, ts=now,
                            message=f"{record.strategy} v{record.version}: "
                                    f"{record.from_state.value} -> {record.to_state.value}",
                            context={"transition_id": record.transition_id,
                                     "to_state": record.to_state.value})


def _any_role(keys: KeyRegistry, key_id: str) -> Role:
    """Operations, or risk for a key that holds only risk (the wider role)."""
    held = keys.get(key_id)
    if held is not None and Role.OPERATIONS not in held.roles and Role.RISK in held.roles:
        return Role.RISK
    return Role.OPERATIONS


def _evidence(raw: dict[str, float]) -> PromotionEvidence:
    """The command's evidence as the promotion rule reads it (sessions a whole number)."""
    sessions = raw.get("sessions", 0.0)
    if sessions != int(sessions):
        raise ResearchError(f"evidence.sessions must be a whole number, got {sessions}",
                            field="evidence.sessions")
    return PromotionEvidence(int(sessions), mean_ic=raw.get("mean_ic"),
                             t_stat=raw.get("t_stat"), hit_rate=raw.get("hit_rate"))
