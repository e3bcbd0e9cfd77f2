"""Read what the daily report needs from the services' JetStream streams.

Why the streams: they keep every event the treasury, the OMS and operations published, so the
report of any past day can be drawn again, and operations needs no access to another
library's database. A stream that does not exist (a service that never ran in this namespace)
is named in the page rather than failing it; a message that does not decode is skipped and
counted, never shown raw.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from typing import Any, TypeVar

import nats.js.errors
from mts1b_foundation import (
    Alert,
    Bar,
    Fill,
    FundConfig,
    FundNav,
    OrderEvent,
    Position,
    ValidationFailed,
    WireModel,
    parse_message,
)
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.follow import history

from mts1b_operations.report.daily import DayInputs

__all__ = ["CHECKPOINT_SUBJECT", "gather"]

CHECKPOINT_SUBJECT = "mts.v1.operations.audit.checkpoint"
"""Where the audit recorder publishes its signed checkpoints."""

M = TypeVar("M", bound=WireModel)


class _Reader:
    """Reads subjects' histories, remembering missing streams and undecodable messages."""

    def __init__(self, bus: Bus, timeout: float) -> None:
        self.bus = bus
        self.timeout = timeout
        self.missing: list[str] = []
        self.unreadable = 0

    async def raw(self, domain: str, subject: str, *, last_per_subject: bool = False
                  ) -> list[tuple[str, bytes]]:
        try:
            return await history(self.bus, domain, subject, timeout=self.timeout,
                                 last_per_subject=last_per_subject)
        except BusError:
            stream = self.bus.stream_for(domain)
            try:
                await self.bus.js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                if domain not in self.missing:
                    self.missing.append(domain)
                return []
            raise  # the stream exists: a history that could not be read is an error

    async def models(self, model: type[M], domain: str, subject: str, *,
                     last_per_subject: bool = False) -> list[M]:
        out: list[M] = []
        for _subject, data in await self.raw(domain, subject,
                                             last_per_subject=last_per_subject):
            try:
                out.append(parse_message(model, data))
            except ValidationFailed:
                self.unreadable += 1
        return out


async def gather(bus: Bus, *, until: dt.datetime, timeout: float = 60.0) -> DayInputs:
    """Every stored event the report reads, up to the instant ``until`` (UTC) for the marks."""
    reader = _Reader(bus, timeout)
    funds: dict[str, FundConfig] = {}
    for config in await reader.models(FundConfig, "treasury", "mts.v1.treasury.funds.updated"):
        funds[config.fund_id] = config  # stream order: the last one is the fund as it is
    inputs = DayInputs(
        navs=await reader.models(FundNav, "treasury", "mts.v1.treasury.nav.struck"),
        funds=funds,
        positions=await reader.models(Position, "oms", "mts.v1.oms.positions.updated"),
        fills=await reader.models(Fill, "oms", "mts.v1.oms.fills.recorded"),
        denials=await reader.models(OrderEvent, "oms", "mts.v1.oms.orders.denied"),
        alerts=await reader.models(Alert, "operations", "mts.v1.operations.alerts.raised"),
        marks=await _marks(reader, until),
        checkpoint=await _checkpoint(reader),
        missing=tuple(reader.missing))
    return dataclasses.replace(inputs, unreadable=reader.unreadable)


async def _marks(reader: _Reader, until: dt.datetime) -> dict[str, tuple[str, Decimal]]:
    """Each symbol's last stored close before ``until``, with its date: the stream keeps
    every bar, but only each symbol's last is read (a past day's report marks a symbol whose
    later bars are stored as unmarked rather than at a later price)."""
    marks: dict[str, tuple[str, Decimal]] = {}
    for bar in await reader.models(Bar, "datalake", "mts.v1.datalake.bars.*",
                                   last_per_subject=True):
        if bar.ts < until:
            marks[bar.symbol] = (bar.ts.date().isoformat(), bar.close)
    return marks


async def _checkpoint(reader: _Reader) -> dict[str, Any] | None:
    """The last audit checkpoint published, as its JSON fields (``None``: none yet)."""
    stored = await reader.raw("operations", CHECKPOINT_SUBJECT)
    for _subject, data in reversed(stored):
        try:
            value = json.loads(data)
        except ValueError:
            reader.unreadable += 1
            continue
        if isinstance(value, dict):
            return value
    return None
