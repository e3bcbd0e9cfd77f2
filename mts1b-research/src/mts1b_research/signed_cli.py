"""The signed paths of the ``strategies`` commands: ``disable --key-file`` (the OMS halts the
strategy, then the registry records it) and ``promote``/``enable --key-file`` (a signed
:class:`~mts1b_foundation.StrategyCommand` to the research service).

Why a disable goes in this order: the registry's state is what the signal service reads, the
OMS's halt is what stops money moving. Halting first means a disable the OMS did not
acknowledge (no OMS answering, a key it does not know) changes nothing and says so; once
acknowledged, the registry records the key's registered name - the identity the OMS checked -
as the actor, and the transition is published for the audit chain.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.signing import KeyFileError, SigningKey

from mts1b_research.errors import ResearchError
from mts1b_research.halt import HaltAcknowledged, halt_strategy
from mts1b_research.registry import StrategyRegistry, TransitionRecord
from mts1b_research.service import BusTransitionPublisher

__all__ = ["disable_with_halt", "send_signed"]


async def _connect(namespace: str | None, nothing: str) -> Bus:
    """The bus for one command; unreachable, a ResearchError saying ``nothing`` happened."""
    overrides: dict[str, Any] = {"name": "mts1b-research-cli", "connect_timeout": 2}
    if namespace:
        overrides["namespace"] = namespace
    try:
        return await Bus.connect(**overrides)
    except BusError as exc:
        raise ResearchError(f"NATS is not reachable ({exc.code}): {nothing}") from None


def _key(key_file: Path) -> SigningKey:
    try:
        return SigningKey.load(key_file)
    except KeyFileError as exc:
        raise typer.BadParameter(exc.message, param_hint="--key-file") from None


def disable_with_halt(name: str, reason: str, *, key_file: Path, dsn: str | None, schema: str,
                      namespace: str | None, timeout: float
                      ) -> tuple[HaltAcknowledged, TransitionRecord]:
    """Halt ``name`` at the OMS with the key in ``key_file``, then disable it in the registry."""
    key = _key(key_file)

    async def run() -> tuple[HaltAcknowledged, TransitionRecord]:
        bus = await _connect(namespace, "nothing was disabled")
        try:
            async with await StrategyRegistry.open(
                    dsn, schema=schema, publisher=BusTransitionPublisher(bus)) as registry:
                await registry.show(name)  # an unknown strategy is refused before the OMS
                ack = await halt_strategy(bus, key, name, reason, timeout=timeout)
                record = await registry.disable(name, actor=key.name, reason=reason)
            return ack, record
        finally:
            await bus.drain()

    return asyncio.run(run())


def send_signed(fields: dict[str, Any], *, key_file: Path, namespace: str | None,
                timeout: float) -> str:
    """Sign a :class:`~mts1b_foundation.StrategyCommand` with the key in ``key_file``, send it
    to the research service and return its answer; a refusal raises naming the code."""
    from mts1b_foundation import CommandReply, StrategyCommand, ValidationFailed

    try:
        command = _key(key_file).sign_command(StrategyCommand, fields)
    except ValidationFailed as exc:
        raise typer.BadParameter(exc.message) from None

    async def run() -> CommandReply:
        bus = await _connect(namespace, "nothing was sent")
        try:
            reply = await bus.request("mts.v1.research.commands.strategy", command,
                                      timeout=timeout, reply_model=CommandReply)
        except BusError as exc:
            raise ResearchError(f"no research service answered ({exc.code}): is `mts "
                                "mts1b-research serve --keys ...` running?") from None
        finally:
            await bus.drain()
        if not isinstance(reply, CommandReply):
            raise ResearchError("the research service answered something else")
        return reply

    reply = asyncio.run(run())
    if not reply.ok:
        code = reply.code.value if reply.code else "REFUSED"
        raise ResearchError(f"NOT applied [{code}]: {reply.message}", code=code)
    return reply.message or "applied"
