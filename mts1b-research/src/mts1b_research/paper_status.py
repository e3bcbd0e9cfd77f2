"""``paper status``: where a running paper loop is, read from what its services publish.

Why from the bus and not from each service's database: the events are the services' public
contract (the same ones the audit chain and the reports read), so the view works whatever
each service keeps inside, and reading it changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from mts1b_foundation import (
    FundNav,
    OrderEvent,
    Position,
    Signal,
    parse_message,
)

__all__ = ["PaperStatus", "gather", "render"]


@dataclasses.dataclass
class PaperStatus:
    """A snapshot of one loop."""

    namespace: str
    strategy: str
    fund_id: str
    processes: dict[str, bool]
    restarts: dict[str, int] = dataclasses.field(default_factory=dict)
    session: str | None = None
    sessions_done: int = 0
    sessions_total: int = 0
    nav: Decimal | None = None
    nav_session: str | None = None
    cash: Decimal | None = None
    positions: dict[str, Decimal] = dataclasses.field(default_factory=dict)
    working_orders: int = 0
    orders_seen: int = 0
    last_signal_at: str | None = None
    last_signal_names: int = 0

    def as_json(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Decimal) else
                    {s: str(q) for s, q in v.items()} if k == "positions" else v)
                for k, v in raw.items()}


async def _last(bus: Any, domain: str, subject: str) -> bytes | None:
    """The last message stored on ``subject`` (``None`` when there is none)."""
    try:
        msg = await bus.js.get_last_msg(bus.stream_for(domain), bus.wire_subject(subject))
    except Exception:  # no stream or no message yet: nothing to show
        return None
    return bytes(msg.data or b"")


async def gather(bus: Any, state: Any) -> PaperStatus:
    """The status of the loop ``state`` (a :class:`~mts1b_research.paper.PaperState`)."""
    from mts1b_platform.bus import BusError
    from mts1b_platform.follow import follow
    from mts1b_platform.replayclock import load_tick

    plan = state.plan
    out = PaperStatus(namespace=plan["namespace"], strategy=plan["strategy"],
                      fund_id=plan["fund_id"], processes=state.alive(),
                      restarts={n: int(p.get("restarts", 0))
                                for n, p in state.processes.items() if p.get("restarts")})
    tick = await load_tick(bus)
    if tick is not None:  # a session is done once its close tick is out (--as-backtest also
        # hands out its open); counted by the calendar, as the ticks of a phase are not
        out.session = tick.session
        out.sessions_done = _sessions(plan, tick.session) - (tick.phase == "open")
    out.sessions_total = _sessions(plan)
    if (data := await _last(bus, "treasury", "mts.v1.treasury.nav.struck")) is not None:
        nav = parse_message(FundNav, data)
        out.nav, out.nav_session, out.cash = nav.nav, nav.session, nav.cash
    if (data := await _last(bus, "research", "mts.v1.research.signals.published")) is not None:
        signal = parse_message(Signal, data)
        out.last_signal_at = signal.as_of.isoformat()
        out.last_signal_names = sum(1 for w in signal.weights.values() if w != 0)
    held: dict[tuple[str, str], Decimal] = {}
    status: dict[str, bool] = {}

    async def on_position(_subject: str, data: bytes) -> None:
        p = parse_message(Position, data)
        if p.fund_id == out.fund_id:
            held[(p.strategy_id or "", p.symbol)] = p.quantity

    async def on_order(_subject: str, data: bytes) -> None:
        event = parse_message(OrderEvent, data)
        if event.fund_id == out.fund_id:
            status[event.order_id] = event.status.is_terminal

    followers = []
    try:
        for subject, handler in (("mts.v1.oms.positions.updated", on_position),
                                 ("mts.v1.oms.orders.>", on_order)):
            followers.append(await follow(bus, "oms", subject, handler))
        for follower in followers:
            await follower.caught_up(10)
    except BusError:
        pass  # no OMS stream yet: nothing traded, the status shows no order and no position
    finally:
        for follower in followers:
            await follower.stop()
    for (_sleeve, symbol), qty in held.items():
        out.positions[symbol] = out.positions.get(symbol, Decimal(0)) + qty
    out.positions = {s: q for s, q in sorted(out.positions.items()) if q != 0}
    out.orders_seen = len(status)
    out.working_orders = sum(1 for done in status.values() if not done)
    return out


def _sessions(plan: dict[str, Any], until: str | None = None) -> int:
    """The loop's sessions, or those up to ``until`` (``YYYY-MM-DD``) included."""
    from mts1b_platform.calendars import MarketCalendar

    cal = MarketCalendar("XNYS")
    start = dt.date.fromisoformat(plan["start"])
    end = dt.date.fromisoformat(until or plan["end"])
    return len(cal.sessions(start, end))


def render(status: PaperStatus, *, top: int = 10) -> str:
    """Readable lines for a terminal."""
    lines = [f"paper loop {status.namespace}: strategy {status.strategy}, fund {status.fund_id}"]
    procs = ", ".join(
        f"{n} {'up' if ok else 'DOWN'}"
        + (f" (restarted {status.restarts[n]}x)" if status.restarts.get(n) else "")
        for n, ok in status.processes.items())
    lines.append(f"processes: {procs}")
    progress = (f"session {status.session} ({status.sessions_done} of "
                f"{status.sessions_total})" if status.session else "not started yet")
    lines.append(f"replay: {progress}")
    if status.nav is not None:
        lines.append(f"NAV {status.nav:,.2f} at the close of {status.nav_session} "
                     f"(cash {status.cash:,.2f})")
    else:
        lines.append("NAV: none struck yet")
    if status.last_signal_at:
        lines.append(f"last signal: {status.last_signal_at}, {status.last_signal_names} names")
    lines.append(f"orders: {status.orders_seen} in all, {status.working_orders} working")
    biggest = sorted(status.positions.items(), key=lambda kv: -abs(kv[1]))[:top]
    lines.append(f"positions: {len(status.positions)}" + (
        " (largest: " + ", ".join(f"{s} {q.normalize():f}" for s, q in biggest) + ")"
        if biggest else ""))
    return "\n".join(lines)
