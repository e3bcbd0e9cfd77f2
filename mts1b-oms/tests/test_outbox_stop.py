"""``OutboxRelay.stop`` returns also when the cancel it used to rely on is lost on the way.

The OMS service's shutdown stalled 20-33 s now and then (test_service.py, test_sleeve_service.py:
the fixture's 20 s wait_for ended it): the relay's loop went on after ``stop()`` cancelled it,
because Python 3.11's ``asyncio.wait_for`` drops a cancel that arrives as the event it waits on
is set (a commit's ``notify`` at shutdown), or a publisher turned the ``CancelledError`` into
an error of its own and the loop took it for a failed publish. Both, made to happen for sure.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from mts1b_foundation import InMemoryPublisher
from mts1b_oms import InMemoryStore, Oms
from mts1b_oms.outbox import OutboxRelay
from mts1b_oms.testing import RecordingBroker, make_fund, make_order, make_registry


async def _stops_at_once(relay: OutboxRelay) -> None:
    """``relay.stop()`` is done within 3 s. Not ``wait_for``: the old ``stop()`` swallowed the
    cancel of its own caller too, so ``wait_for`` returned as if it had finished in time."""
    stopping = asyncio.ensure_future(relay.stop())
    done, _ = await asyncio.wait({stopping}, timeout=3)
    if not done:
        stopping.cancel()
        await asyncio.wait({stopping})
    assert done, "stop() still waits for the relay's loop"


async def _oms(relay_of: Any) -> tuple[Oms, OutboxRelay]:
    store = InMemoryStore()
    relay: OutboxRelay = relay_of(store)
    oms = Oms(store, RecordingBroker(), [make_fund()], instruments=make_registry(),
              relay=relay)
    oms.set_price("AAPL", Decimal(100))
    await oms.start()
    return oms, relay


async def test_stop_returns_when_a_notify_meets_the_cancel() -> None:
    pub = InMemoryPublisher()
    oms, relay = await _oms(lambda store: OutboxRelay(store, pub, idle_seconds=60))
    relay.start()
    await asyncio.sleep(0.05)  # the loop waits for a notify
    relay.notify()  # a commit's wake-up in the same step as the stop
    await _stops_at_once(relay)
    await oms.stop()


async def test_stop_returns_when_the_publisher_turns_the_cancel_into_its_own_error() -> None:
    class Swallowing(InMemoryPublisher):
        """Blocks its first publish; a cancel there comes out as a RuntimeError (as a client
        library that reports "connection draining" does)."""

        blocked = False

        async def publish(self, subject: str, message: Any, *,
                          msg_id: str | None = None) -> None:
            if not self.blocked:
                self.blocked = True
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    raise RuntimeError("connection draining") from None
            await super().publish(subject, message, msg_id=msg_id)

    pub = Swallowing()
    oms, relay = await _oms(lambda store: OutboxRelay(store, pub, idle_seconds=0.01,
                                                      linger_seconds=0))
    relay.start()
    reply = await oms.submit(make_order("k1"))
    assert reply.ok
    for _ in range(100):
        if pub.blocked:
            break
        await asyncio.sleep(0.01)
    assert pub.blocked
    await _stops_at_once(relay)
    assert len(pub.published) == 2  # stop() still published what was left
    await oms.stop()


async def test_cancel_and_wait_sends_a_lost_cancel_again() -> None:
    """The helper the OMS stops its report consumer, kill-switch tasks and KV watchers with: a
    task that loses the first cancel (as above) still ends, and the caller is not held."""
    from mts1b_oms.tasks import cancel_and_wait

    lost = 0

    async def loop() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1  # turned into an error of its own and retried: the cancel is gone

    task = asyncio.get_running_loop().create_task(loop())
    await asyncio.sleep(0.01)
    await asyncio.wait_for(cancel_and_wait([task, None], patience=0.1), 5)
    assert task.cancelled() and lost == 1
