"""A blocking face of the registry for scripts and notebook cells that do not ``await``.

Why a loop on a thread and not ``asyncio.run`` per call: the registry's connection pool belongs
to the event loop that opened it, and a notebook already runs a loop of its own (where
``asyncio.run`` is refused). One private loop on a daemon thread owns the pool for the facade's
whole life; each method hands its coroutine to that loop and waits for the answer, so it works
the same from a plain script and from inside a running loop.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Collection, Coroutine
from typing import Any, Self, TypeVar

from mts1b_foundation import StrategySpec, StrategyState

from mts1b_research.promotion import PromotionEvidence, PromotionRule
from mts1b_research.registry import (
    StrategyRecord,
    StrategyRegistry,
    TransitionPublisher,
    TransitionRecord,
    VersionRecord,
)

__all__ = ["SyncStrategyRegistry"]

T = TypeVar("T")


class SyncStrategyRegistry:
    """The methods of :class:`StrategyRegistry`, blocking. Create with :meth:`connect`;
    :meth:`close` (or ``with``) ends the pool and the thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                 registry: StrategyRegistry) -> None:
        self._loop = loop
        self._thread = thread
        self.registry = registry

    @classmethod
    def connect(cls, dsn: str | None = None, *, schema: str | None = None,
                rule: PromotionRule | None = None,
                publisher: TransitionPublisher | None = None) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="mts1b-research-registry",
                                  daemon=True)
        thread.start()
        opening = StrategyRegistry.open(dsn, schema=schema, rule=rule, publisher=publisher)
        try:
            registry = asyncio.run_coroutine_threadsafe(opening, loop).result()
        except BaseException:
            _stop(loop, thread)
            raise
        return cls(loop, thread, registry)

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self.registry.close())
        finally:
            _stop(self._loop, self._thread)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, spec: StrategySpec, *, actor: str,
                 reason: str | None = None) -> StrategyRecord:
        return self._call(self.registry.register(spec, actor=actor, reason=reason))

    def list(self, *, include_retired: bool = True) -> builtins.list[StrategyRecord]:
        return self._call(self.registry.list(include_retired=include_retired))

    def show(self, name: str) -> StrategyRecord:
        return self._call(self.registry.show(name))

    def versions(self, name: str) -> builtins.list[VersionRecord]:
        return self._call(self.registry.versions(name))

    def history(self, name: str) -> builtins.list[TransitionRecord]:
        return self._call(self.registry.history(name))

    def shadow(self, name: str, *, actor: str, reason: str,
               roles: Collection[str] = ()) -> TransitionRecord:
        return self._call(self.registry.shadow(name, actor=actor, reason=reason, roles=roles))

    def promote(self, name: str, to: StrategyState, *, actor: str, reason: str,
                evidence: PromotionEvidence | None = None,
                roles: Collection[str] = ()) -> TransitionRecord:
        return self._call(self.registry.promote(name, to, actor=actor, reason=reason,
                                                evidence=evidence, roles=roles))

    def disable(self, name: str, *, actor: str, reason: str,
                roles: Collection[str] = ()) -> TransitionRecord:
        return self._call(self.registry.disable(name, actor=actor, reason=reason, roles=roles))

    def enable(self, name: str, *, actor: str, reason: str,
               roles: Collection[str] = ()) -> TransitionRecord:
        return self._call(self.registry.enable(name, actor=actor, reason=reason, roles=roles))

    def retire(self, name: str, *, actor: str, reason: str,
               roles: Collection[str] = ()) -> TransitionRecord:
        return self._call(self.registry.retire(name, actor=actor, reason=reason, roles=roles))


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()
