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
        kv = await self._bucket()
        if record.is_open:
            current = await kv.get(record.fund_id)
            if current != record.config.to_json():
                await kv.put(record.fund_id, record.config)
        elif await kv.get(record.fund_id) is not None:
            await kv.delete(record.fund_id)
        await self.bus.publish_acked("mts.v1.treasury.funds.updated", record.config,
                                     msg_id=f"fund:{record.fund_id}:v{record.version}")

    async def allocated(self, allocation: Allocation) -> None:
        await self.bus.publish_acked("mts.v1.treasury.allocations.published", allocation)

    async def nav_struck(self, nav: FundNav) -> None:
        await self.bus.publish_acked("mts.v1.treasury.nav.struck", nav,
                                     msg_id=f"nav:{nav.fund_id}:{nav.session}:"
                                            f"{nav.outputs_sha256[:16]}")
