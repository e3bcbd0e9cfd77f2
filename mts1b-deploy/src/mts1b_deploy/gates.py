"""Health gates: what must hold after a release starts, or it is rolled back by itself.

Built so far: :class:`ProcessesAlive` (every service of the release still runs after a settling
time: a release that crashes at start fails here) and :class:`Heartbeats` (every named service
publishes a :class:`~mts1b_foundation.Heartbeat` on ``mts.v1.operations.heartbeats.<service>``
within the timeout - the bus sees it alive, not only the process table). Not built yet: the OMS
answering a request, the kill switch unchanged across the deploy, refusing while orders work.
The heartbeat gate needs NATS (``nats-py``, the ``local`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mts1b_foundation import Heartbeat, parse_message

from mts1b_deploy.supervisor import Supervisor

__all__ = ["Gate", "Heartbeats", "ProcessesAlive"]


class Gate(Protocol):
    """One check of a started release: None when it holds, else why not."""

    @property
    def name(self) -> str: ...

    def check(self, supervisor: Supervisor) -> str | None: ...


@dataclass(frozen=True)
class ProcessesAlive:
    """Every service of the release still runs ``settle_s`` seconds after the start."""

    settle_s: float = 2.0
    name: str = "processes alive"

    def check(self, supervisor: Supervisor) -> str | None:
        time.sleep(self.settle_s)
        dead = sorted(name for name, alive in supervisor.running().items() if not alive)
        if dead:
            return (f"{', '.join(dead)} exited within {self.settle_s:g} s of the start (see "
                    f"{supervisor.logs}/<service>.log)")
        return None


@dataclass(frozen=True)
class Heartbeats:
    """A heartbeat of each of ``services`` on the bus within ``timeout_s``."""

    nats_url: str
    services: Sequence[str]
    namespace: str | None = None
    timeout_s: float = 10.0
    name: str = "heartbeats"

    def check(self, supervisor: Supervisor) -> str | None:
        missing = asyncio.run(self._missing())
        if missing:
            return (f"no heartbeat from {', '.join(missing)} on "
                    f"{self._subject('<service>')} within {self.timeout_s:g} s")
        return None

    def _subject(self, service: str) -> str:
        subject = f"mts.v1.operations.heartbeats.{service}"
        return f"{self.namespace}.{subject}" if self.namespace else subject

    async def _missing(self) -> list[str]:
        import nats  # the `local` extra

        nc = await nats.connect(self.nats_url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            seen: set[str] = set()
            done = asyncio.Event()

            async def on_beat(msg: object) -> None:
                try:
                    beat = parse_message(Heartbeat, msg.data)  # type: ignore[attr-defined]
                except ValueError:
                    return
                seen.add(beat.service)
                if seen >= set(self.services):
                    done.set()

            for service in self.services:
                await nc.subscribe(self._subject(service), cb=on_beat)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.timeout_s)
            return sorted(set(self.services) - seen)
        finally:
            await nc.close()
