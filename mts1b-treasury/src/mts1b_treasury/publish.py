"""Committed fund changes onto the bus: the KV bucket the OMS reads, and the events.

Why both: the bucket (:data:`~mts1b_foundation.TREASURY_FUNDS_BUCKET`, one key per open fund)
is what an OMS starting up loads and then watches - the current state, however long ago it
changed; the ``mts.v1.treasury.funds.updated`` and ``...allocations.published`` events are the
history other services (audit, reports) consume in order.
"""

from __future__ import annotations

from mts1b_foundation import TREASURY_FUNDS_BUCKET, Allocation, FundNav
from mts1b_platform.bus import Bus, KeyValue

from mts1b_treasury.funds import FundRecord

__all__ = ["BusFundPublisher"]


class BusFundPublisher:
    """A :class:`~mts1b_treasury.funds.FundPublisher` on a connected :class:`Bus`."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.bus.kv(TREASURY_FUNDS_BUCKET, history=5)
        return self._kv

    async def fund_changed(self, record: FundRecord) -> None:
        """Publish the change when the bucket does not show it yet: the event first, then the
        bucket. So the service's :meth:`~mts1b_treasury.funds.FundRegistry.publish_all` at
        start adds nothing for funds the bucket already holds right, and a change whose
        publishing was cut short is published again (the event's id lets JetStream drop a
        repeat within its window)."""
        kv = await self._bucket()
        held = await kv.get(record.fund_id)
        wanted = record.config.to_json() if record.is_open else None
        if held == wanted:
            return
        await self.bus.publish_acked("mts.v1.treasury.funds.updated", record.config,
                                     msg_id=f"fund:{record.fund_id}:v{record.version}")
        if wanted is not None:
            await kv.put(record.fund_id, record.config)
        else:
            await kv.delete(record.fund_id)

    async def allocated(self, allocation: Allocation) -> None:
        await self.bus.publish_acked("mts.v1.treasury.allocations.published", allocation)

    async def nav_struck(self, nav: FundNav) -> None:
        await self.bus.publish_acked("mts.v1.treasury.nav.struck", nav,
                                     msg_id=f"nav:{nav.fund_id}:{nav.session}:"
                                            f"{nav.outputs_sha256[:16]}")
