"""Market data on the wire: bars, quotes and trades for one instrument symbol, and the replay's
clock."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mts1b_foundation.symbols import Symbol
from mts1b_foundation.wire import (
    Identifier,
    NonNegativeDecimal,
    PositiveDecimal,
    UtcDatetime,
    WireModel,
)

__all__ = ["Bar", "ClockTick", "CorporateAction", "Quote", "Trade"]


class Bar(WireModel):
    """An OHLCV bar. ``ts`` is the bar's *end* (a daily bar ends at the session close)."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    symbol: Symbol
    ts: UtcDatetime
    interval: str = "1d"
    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    volume: NonNegativeDecimal
    vwap: PositiveDecimal | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Bar:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        for name in ("open", "close"):
            value: Decimal = getattr(self, name)
            if not self.low <= value <= self.high:
                raise ValueError(
                    f"{name} {value} lies outside the low-high range [{self.low}, {self.high}]"
                )
        return self


class Quote(WireModel):
    """Top of book."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    symbol: Symbol
    ts: UtcDatetime
    bid: PositiveDecimal
    ask: PositiveDecimal
    bid_size: NonNegativeDecimal = Decimal(0)
    ask_size: NonNegativeDecimal = Decimal(0)

    @model_validator(mode="after")
    def _not_crossed(self) -> Quote:
        if self.bid > self.ask:
            raise ValueError(f"crossed quote: bid {self.bid} above ask {self.ask}")
        return self

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


class Trade(WireModel):
    """A print on the tape (not our own fill: see :class:`mts1b_foundation.orders.Fill`)."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    symbol: Symbol
    ts: UtcDatetime
    price: PositiveDecimal
    size: PositiveDecimal
    venue: Identifier | None = None


class ClockTick(WireModel):
    """One step of a replay's clock: the session ``session`` is over at ``ts``.

    A lockstep replay publishes a session's ``bars`` bars, then hands this tick to each service
    that runs on its clock, in turn, and moves on only when every one has answered that it is
    done with the session (so ``--speed`` is a maximum, and nothing trades on a later bar than
    it would live). A service sets its clock to ``ts`` first: its duplicate, rate and
    idempotency windows run on replay time. ``seq`` counts the ticks of one replay from 1; a
    tick whose ``seq`` a service has finished already is answered at once (a replay that
    timed out asks again). ``replay_id`` tells two replays apart.

    ``phase`` (version 2): ``close`` is the session's end, as above. A replay may also hand an
    ``open`` tick, at the session's open (``ts``), to the services that act before the
    session trades - after its corporate actions and bars are published, before the venue
    fills anything on them: the composer sizing its orders at the open prices, the OMS
    applying the session's corporate actions first. Version 1 ticks read as ``close``.
    """

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    replay_id: Identifier
    seq: int = Field(ge=1)
    session: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    phase: Literal["open", "close"] = "close"
    ts: UtcDatetime
    bars: int = Field(default=0, ge=0)
    actions: int = Field(default=0, ge=0)
    """How many :class:`CorporateAction` events take effect at this session's open: the replay
    publishes them before the session's bars."""
    last: bool = False
    """The replay's last session: nothing follows it."""


class CorporateAction(WireModel):
    """A corporate action of one symbol, effective at the open of ``ex_date``.

    ``split``: ``value`` new shares per old one (``2`` for 2-for-1, ``0.1`` for a 1-for-10
    reverse split); positions are multiplied by it, prices and average costs divided.
    ``dividend``: ``value`` in cash per share, paid to whoever held the shares at the previous
    close (the pay date's delay is not modelled).
    ``delisting``: the symbol's last session is the one before ``ex_date`` (the first session
    without it, the date the datalake records the delisting on); ``value`` is that last
    session's close, in the shares of then. Every position in the symbol is closed at
    ``value`` into cash (no commission: the holder is paid out, nothing trades) and its working
    orders end (cancelled), at the open of ``ex_date`` - the same cash at the same marks as the
    in-process paper loop's sale at the last close (with a commission of 0), one session later.
    A venue, an OMS and a treasury each apply it to what they hold, so their books stay equal;
    ``action_id`` lets each apply it once.

    Version 2 added ``delisting``; a version-1 message (a split or a dividend) reads unchanged.
    """

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    action_id: Identifier
    symbol: Symbol
    ex_date: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    kind: Literal["split", "dividend", "delisting"]
    value: PositiveDecimal
