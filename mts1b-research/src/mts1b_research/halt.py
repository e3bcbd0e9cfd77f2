"""A strategy's disable reaching trading: a signed strategy halt the OMS acknowledges.

Why through the OMS's own command: stopping a strategy in the registry stops its signals, but
orders it already has working would still fill. The OMS's signed ``halt`` with scope
``strategy`` cancels them and refuses its new orders; its reply - after the change is durable
and the sweep started - is the acknowledgement. The signature is the operator's key (role
``operations``), checked by the OMS, which records the key's registered name as the actor:
the registry records the same name for the transition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mts1b_foundation import CommandReply, HaltTrading
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.signing import SigningKey

from mts1b_research.errors import ResearchError

__all__ = ["HaltAcknowledged", "halt_strategy"]


@dataclass(frozen=True, slots=True)
class HaltAcknowledged:
    """The OMS's acknowledgement of a strategy halt, and how long it took."""

    reply: CommandReply
    seconds: float
    actor: str

    @property
    def cancels_outstanding(self) -> int:
        value = self.reply.context.get("outstanding", 0)
        return int(value) if isinstance(value, int | float) else 0


async def halt_strategy(bus: Bus, key: SigningKey, strategy: str, reason: str, *,
                        timeout: float = 5.0) -> HaltAcknowledged:
    """Sign a strategy halt with ``key``, send it to the OMS and wait for its reply.

    Raises :class:`ResearchError` when no OMS answers in ``timeout`` seconds or the OMS
    refuses it (an unregistered key, a replay): then nothing was disabled.
    """
    command = key.sign(HaltTrading, "strategy", strategy, reason)
    started = time.perf_counter()
    try:
        reply = await bus.request("mts.v1.oms.commands.halt", command, timeout=timeout,
                                  reply_model=CommandReply)
    except BusError as exc:
        raise ResearchError(f"no OMS acknowledged the halt of strategy {strategy!r} within "
                            f"{timeout:g} s ({exc.code}): nothing was disabled",
                            strategy=strategy) from None
    seconds = time.perf_counter() - started
    if not isinstance(reply, CommandReply) or not reply.ok:
        code = reply.code.value if isinstance(reply, CommandReply) and reply.code else "?"
        message = reply.message if isinstance(reply, CommandReply) else ""
        raise ResearchError(f"the OMS refused the halt of strategy {strategy!r}: {code}: "
                            f"{message}", strategy=strategy, code=code)
    return HaltAcknowledged(reply, seconds, key.name)
