"""Signed trading-state commands: the key registry, signing keys, verification, used nonces.

Why: a trading-state command used to carry its ``actor`` as a payload field and travel on one
subject for halt and resume, so any client that could publish on the bus resumed trading as
"chief-risk-officer". Now a state command (:class:`~mts1b_foundation.HaltTrading`,
:class:`~mts1b_foundation.ReduceTrading`, :class:`~mts1b_foundation.ResumeTrading`) carries an
Ed25519 signature over :func:`~mts1b_foundation.state_command_bytes` by a key the OMS has
registered, and the OMS applies it only when every check passes, in this order:

1. the key is registered (else ``UNAUTHORIZED``);
2. the signature verifies with that key's public key (else ``SIGNATURE_INVALID``);
3. the key holds the role the command needs (else ``UNAUTHORIZED``): halt needs
   ``operations``; reduce needs ``operations``, or ``risk`` when the scope is HALTED (that
   raises its limits); resume needs ``risk``;
4. the timestamp lies within ``window`` (30 s by default) of the OMS's clock, either way (else
   ``STALE_COMMAND``);
5. the key has not used the nonce before (else ``REPLAY_REFUSED``): the nonce is claimed in
   the store - PostgreSQL in production - so a restart does not reopen a replay.

The actor recorded with the change is the registered key's name; nothing in the payload names
who sent it. A refusal is a coded :class:`~mts1b_foundation.CommandReply` and a WARNING log line
with the key id (never the signature, and the OMS never holds a private key). The signature is
checked before the store is touched, so forged commands cannot fill the nonce table.

Private keys live with the people who sign (``mts mts1b-oms keygen`` writes one to a file only
its owner may read); the OMS reads public keys only, from the registry file (``serve --keys``).

The registry, the keys and the checks themselves are :mod:`mts1b_platform.signing` (the
treasury verifies signed fund configurations with them); this module adds what is particular to
trading states - which role each command needs, what a verified command sets - and re-exports
the rest under the names the OMS has always used.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mts1b_foundation import (
    Clock,
    CommandReply,
    ReduceTrading,
    ReplyCode,
    ResumeTrading,
    SetTradingState,
    SignedStateCommand,
    TradingState,
)
from mts1b_platform.logging import get_logger
from mts1b_platform.signing import (
    DEFAULT_COMMAND_WINDOW,
    MAX_COMMAND_WINDOW,
    NONCE_RETENTION,
    KeyFileError,
    KeyRegistry,
    KeyRegistryError,
    NonceStore,
    RegisteredKey,
    Role,
    SignedCommandVerifier,
    SigningKey,
)

__all__ = ["DEFAULT_COMMAND_WINDOW", "MAX_COMMAND_WINDOW", "NONCE_RETENTION", "CommandVerifier",
           "KeyFileError", "KeyRegistry", "KeyRegistryError", "NonceStore", "RegisteredKey",
           "Role", "SigningKey", "Verified", "refuse_unsigned", "required_role"]

_log = get_logger("mts1b_oms.signing")


def required_role(command: SignedStateCommand, current: TradingState) -> Role:
    """The role ``command`` needs when its scope's own state is ``current``.

    A reduce of a HALTED scope lets orders through that the halt stopped: it raises the
    scope's limits, so it needs ``risk`` like a resume does.
    """
    if isinstance(command, ResumeTrading):
        return Role.RISK
    if isinstance(command, ReduceTrading) and current is TradingState.HALTED:
        return Role.RISK
    return Role.OPERATIONS


@dataclass(frozen=True, slots=True)
class Verified:
    """A command that passed every check: the state to set, the actor to record (the key's
    registered name) and whether it may only make the scope more restrictive (a reduce by a
    key without ``risk``: should a halt land between the check and the write, the store
    leaves the halt in place)."""

    actor: str
    state: TradingState
    escalate_only: bool


class CommandVerifier(SignedCommandVerifier):
    """Checks signed trading-state commands (see the module docstring for the order)."""

    refusal_message = "trading-state command refused"

    def __init__(self, registry: KeyRegistry, nonces: NonceStore, *, clock: Clock,
                 window: dt.timedelta = DEFAULT_COMMAND_WINDOW) -> None:
        super().__init__(registry, nonces, clock=clock, window=window, receiver="OMS",
                         logger=_log)

    async def verify(self, command: SignedStateCommand, current: TradingState
                     ) -> Verified | CommandReply:
        """``Verified`` to apply ``command`` (its scope's own state is ``current``), else the
        refusal to answer with."""
        raising = (" (reducing a HALTED scope raises its limits)"
                   if isinstance(command, ReduceTrading) else "")
        key = await self.check(command, required_role(command, current), why_role=raising,
                               log={"scope": command.scope, "scope_id": command.scope_id})
        if isinstance(key, CommandReply):
            return key
        return Verified(actor=key.name, state=command.STATE,
                        escalate_only=(isinstance(command, ReduceTrading)
                                       and Role.RISK not in key.roles))


def refuse_unsigned(command: SetTradingState, now: dt.datetime) -> CommandReply:
    """The answer to an unsigned :class:`~mts1b_foundation.SetTradingState` from the bus:
    ``UNAUTHORIZED``, always. Its ``actor`` is logged as what it claimed, nothing more."""
    _log.warning("unsigned trading-state command refused", code=ReplyCode.UNAUTHORIZED.value,
                 state=command.state.value, scope=command.scope, scope_id=command.scope_id,
                 claimed_actor=command.actor)
    return CommandReply(
        ok=False, code=ReplyCode.UNAUTHORIZED, ts=now,
        message="unsigned trading-state commands are refused: send a signed halt, reduce or "
                "resume (mts.v1.oms.commands.halt|reduce|resume, `mts mts1b-oms halt`)")

