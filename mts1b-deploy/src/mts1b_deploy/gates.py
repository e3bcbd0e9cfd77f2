"""Health gates: what must hold after a release starts, or it is rolled back by itself.

Built so far: :class:`ProcessesAlive` (every service of the release still runs after a settling
time: a release that crashes at start fails here), :class:`Heartbeats` (every named service
publishes a :class:`~mts1b_foundation.Heartbeat` on ``mts.v1.operations.heartbeats.<service>``
within the timeout - the bus sees it alive, not only the process table) and
:class:`KillSwitchUnchanged` (no ``TradingStateChange`` on ``mts.v1.oms.state.changed`` from
just before the services restart until the gate: a release that trips or lifts a kill switch does
not stay). The OMS answering a request, and refusing while orders work:
:mod:`mts1b_deploy.omscheck`. The NATS gates need ``nats-py`` (the ``local`` extra).

Each gate's :meth:`Gate.begin` runs once the new release is installed, before the services
restart (a gate that watches the bus starts listening there), :meth:`Gate.check` after.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mts1b_foundation import Heartbeat, TradingStateChange, parse_message

from mts1b_deploy.supervisor import Supervisor

__all__ = ["Gate", "Heartbeats", "KillSwitchUnchanged", "ProcessesAlive"]


class Gate(Protocol):
    """One check of a started release: None when it holds, else why not."""

    @property
    def name(self) -> str: ...

    def begin(self) -> None: ...

    def check(self, supervisor: Supervisor) -> str | None: ...


@dataclass(frozen=True)
class ProcessesAlive:
    """Every service of the release still runs ``settle_s`` seconds after the start."""

    settle_s: float = 2.0
    name: str = "processes alive"

    def begin(self) -> None:
        """Nothing to watch before the start."""

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

    def begin(self) -> None:
        """Heartbeats are awaited after the start only."""

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


@dataclass
class KillSwitchUnchanged:
    """No kill-switch change on the bus between :meth:`begin` and :meth:`check`."""

    nats_url: str
    namespace: str | None = None
    name: str = "kill switch unchanged"
    _seen: list[TradingStateChange] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: str | None = None

    @property
    def subject(self) -> str:
        subject = "mts.v1.oms.state.changed"
        return f"{self.namespace}.{subject}" if self.namespace else subject

    def begin(self) -> None:
        """Listen from now on (returns once the subscription is in place)."""
        self._seen.clear()
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()),
                                        daemon=True, name="mts1b-deploy-kill-switch-gate")
        self._thread.start()
        self._ready.wait(15)

    async def _listen(self) -> None:
        import nats  # the `local` extra

        try:
            nc = await nats.connect(self.nats_url, connect_timeout=5, max_reconnect_attempts=0)
        except Exception as exc:
            self._error = f"cannot listen on NATS at {self.nats_url} ({type(exc).__name__})"
            self._ready.set()
            return
        try:
            async def on_change(msg: object) -> None:
                with contextlib.suppress(ValueError):
                    self._seen.append(parse_message(TradingStateChange,
                                                    msg.data))  # type: ignore[attr-defined]

            await nc.subscribe(self.subject, cb=on_change)
            await nc.flush()
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            await nc.flush()
        finally:
            await nc.close()

    def check(self, supervisor: Supervisor) -> str | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        if self._error is not None:
            return self._error
        if self._thread is None:
            return "the gate was not begun before the services restarted"
        if self._seen:
            first, more = self._seen[0], len(self._seen) - 1
            return (f"the kill switch changed during the deploy: {first.scope} "
                    f"{first.scope_id} -> {first.state.value} by {first.actor} "
                    f"({first.reason})" + (f" and {more} more" if more else ""))
        return None
