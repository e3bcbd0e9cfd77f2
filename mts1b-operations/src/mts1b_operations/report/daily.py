"""One fund's day, worked out from the events the services published: the figures of the page.

Why from events and not from the treasury's tables: operations must not import the treasury
(or the OMS); what the services *said* on the bus is also what an auditor sees. The NAV, its PnL
and its attribution are the treasury's ``FundNav`` as struck (nothing is recomputed, so the page
and the books cannot disagree); fills, denials and positions are the OMS's events; alerts are
what was raised. Money stays ``Decimal``; only ratios (usage of a limit, returns) are floats.

Which events belong to the day: those stamped within the report's calendar date in its time
zone (the exchange's, ``America/New_York`` by default), so a US session's events (14:30-21:00
UTC) and its after-close strike fall on the same day.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from mts1b_foundation import Alert, Fill, FundConfig, FundNav, OrderEvent, Position, Side

__all__ = ["DayInputs", "FundDay", "LimitUse", "day_bounds", "fund_days"]

NAV_HISTORY = 120
"""Sessions of NAV history the page charts, ending at the report's date."""


@dataclass(frozen=True, slots=True)
class DayInputs:
    """Everything stored on the bus that the report reads, for every fund (see ``gather``).

    ``navs``: every ``FundNav`` (all sessions: the chart and the drawdown need the history);
    ``funds``: each fund's latest ``FundConfig``; ``positions``: every ``Position`` event in
    stream order; ``fills``, ``denials``, ``alerts``: every one stored; ``marks``: a close per
    symbol with its session, for valuing positions; ``checkpoint``: the last audit checkpoint
    as a mapping (``None`` when none was published); ``missing``: streams that do not exist;
    ``unreadable``: stored messages that did not decode (skipped, counted on the page).
    """

    navs: Sequence[FundNav] = ()
    funds: Mapping[str, FundConfig] = field(default_factory=dict)
    positions: Sequence[Position] = ()
    fills: Sequence[Fill] = ()
    denials: Sequence[OrderEvent] = ()
    alerts: Sequence[Alert] = ()
    marks: Mapping[str, tuple[str, Decimal]] = field(default_factory=dict)
    checkpoint: Mapping[str, object] | None = None
    missing: Sequence[str] = ()
    unreadable: int = 0


@dataclass(frozen=True, slots=True)
class LimitUse:
    """How much of one envelope limit the fund used: ``used`` against ``limit`` (``None``:
    unlimited), ``share`` = used / limit when there is a limit."""

    name: str
    used: Decimal
    limit: Decimal | None

    @property
    def share(self) -> float | None:
        return None if self.limit is None or self.limit == 0 else float(self.used / self.limit)


@dataclass(frozen=True, slots=True)
class FundDay:
    """The page's section for one fund on one date."""

    fund_id: str
    name: str
    date: dt.date
    nav: FundNav | None
    history: tuple[tuple[str, Decimal], ...]
    drawdown: Decimal
    limits: tuple[LimitUse, ...]
    fills: tuple[Fill, ...]
    bought: Decimal
    sold: Decimal
    commissions: Decimal
    denials: tuple[tuple[str, int], ...]
    alerts: tuple[Alert, ...]
    unmarked: tuple[str, ...]
    positions: int

    @property
    def return_pct(self) -> float | None:
        """The day's PnL over the NAV before it (flows excluded), as a fraction."""
        if self.nav is None or self.nav.previous_nav <= 0:
            return None
        return float(self.nav.pnl / self.nav.previous_nav)


def day_bounds(date: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants that open and close ``date`` in the time zone ``tz``."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(date, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def fund_days(inputs: DayInputs, date: dt.date, *, tz: str = "America/New_York",
              fund: str | None = None) -> list[FundDay]:
    """One :class:`FundDay` per fund that has a configuration or a NAV (or only ``fund``),
    ordered by fund id."""
    start, end = day_bounds(date, tz)

    def today(ts: dt.datetime) -> bool:
        return start <= ts < end

    ids = sorted({n.fund_id for n in inputs.navs} | set(inputs.funds))
    if fund is not None:
        ids = [fund]
    holdings = _holdings(inputs.positions, end)
    out = []
    for fund_id in ids:
        navs = _navs_to(inputs.navs, fund_id, date)
        config = inputs.funds.get(fund_id)
        nav = navs[-1] if navs and navs[-1].session == date.isoformat() else None
        fills = tuple(f for f in inputs.fills if f.fund_id == fund_id and today(f.ts))
        bought = sum((f.quantity * f.price for f in fills if f.side is Side.BUY), Decimal(0))
        sold = sum((f.quantity * f.price for f in fills if f.side is not Side.BUY), Decimal(0))
        codes = Counter(_why_denied(e) for e in inputs.denials
                        if e.fund_id == fund_id and today(e.ts))
        values, unmarked = _values(holdings.get(fund_id, {}), inputs.marks)
        out.append(FundDay(
            fund_id=fund_id, name=config.name if config is not None else fund_id, date=date,
            nav=nav, history=tuple((n.session, n.nav) for n in navs[-NAV_HISTORY:]),
            drawdown=_drawdown([n.nav for n in navs]),
            limits=_limits(config, nav, values, fills, navs) if config is not None else (),
            fills=fills, bought=bought, sold=sold,
            commissions=sum((f.commission for f in fills), Decimal(0)),
            denials=tuple(sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))),
            alerts=tuple(a for a in inputs.alerts if today(a.ts) and _about(a, fund_id)),
            unmarked=unmarked, positions=len(values) + len(unmarked)))
    return out


def _navs_to(navs: Sequence[FundNav], fund_id: str, date: dt.date) -> list[FundNav]:
    """The fund's NAVs up to ``date``, one per session (a restated session: its last strike),
    in session order."""
    last: dict[str, FundNav] = {}
    for n in navs:
        if n.fund_id == fund_id and n.session <= date.isoformat():
            kept = last.get(n.session)
            if kept is None or n.as_of >= kept.as_of:
                last[n.session] = n
    return [last[s] for s in sorted(last)]


def _drawdown(navs: Sequence[Decimal]) -> Decimal:
    """How far the last NAV is below the highest before it, as a fraction (0 at a peak)."""
    if not navs:
        return Decimal(0)
    peak = max(navs)
    return Decimal(0) if peak <= 0 else (peak - navs[-1]) / peak


def _holdings(positions: Sequence[Position], end: dt.datetime) -> dict[str, dict[str, Decimal]]:
    """Each fund's quantity per symbol at ``end``: the sleeves' last positions added up."""
    last: dict[tuple[str, str | None, str], Decimal] = {}
    for p in positions:
        if p.as_of < end:
            last[(p.fund_id, p.strategy_id, p.symbol)] = p.quantity
    out: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for (fund_id, _sleeve, symbol), qty in last.items():
        out[fund_id][symbol] = out[fund_id].get(symbol, Decimal(0)) + qty
    return {f: {s: q for s, q in held.items() if q != 0} for f, held in out.items()}


def _values(held: Mapping[str, Decimal], marks: Mapping[str, tuple[str, Decimal]]
            ) -> tuple[dict[str, Decimal], tuple[str, ...]]:
    """Signed value per held symbol at its mark, and the symbols without one."""
    values = {s: q * marks[s][1] for s, q in held.items() if s in marks}
    return values, tuple(sorted(s for s in held if s not in marks))


def _limits(config: FundConfig, nav: FundNav | None, values: Mapping[str, Decimal],
            fills: Sequence[Fill], navs: Sequence[FundNav]) -> tuple[LimitUse, ...]:
    """The envelope's limits that the day's events can measure, with what was used."""
    risk = config.risk
    uses: list[LimitUse] = []
    equity = nav.nav if nav is not None else None
    if equity is not None and equity > 0:
        gross = sum((abs(v) for v in values.values()), Decimal(0))
        net = sum(values.values(), Decimal(0))
        largest = max((abs(v) for v in values.values()), default=Decimal(0))
        uses += [LimitUse("max_position_pct_nav", largest / equity, _limit(
                          risk.max_position_pct_nav)),
                 LimitUse("max_gross_exposure", gross / equity, _limit(risk.max_gross_exposure)),
                 LimitUse("max_net_exposure", abs(net) / equity, _limit(risk.max_net_exposure))]
    uses.append(LimitUse("max_drawdown_pct", _drawdown([n.nav for n in navs]),
                         _limit(risk.max_drawdown_pct)))
    by_order: dict[str, tuple[Decimal, Decimal]] = {}
    for f in fills:
        qty, notional = by_order.get(f.order_id, (Decimal(0), Decimal(0)))
        by_order[f.order_id] = (qty + f.quantity, notional + f.quantity * f.price)
    uses.append(LimitUse("max_order_quantity",
                         max((q for q, _ in by_order.values()), default=Decimal(0)),
                         _limit(risk.max_order_quantity)))
    uses.append(LimitUse("max_order_notional",
                         max((n for _, n in by_order.values()), default=Decimal(0)),
                         risk.order_notional_limit(config.target_nav_usd)))
    return tuple(uses)


def _limit(value: object) -> Decimal | None:
    """A limit as a number, ``None`` for ``"unlimited"``."""
    return value if isinstance(value, Decimal) else None


def _why_denied(event: OrderEvent) -> str:
    code = event.denial.code if event.denial is not None else event.code
    return code.value if code is not None else "unknown"


def _about(alert: Alert, fund_id: str) -> bool:
    """Whether an alert concerns the fund: it names it in its labels or context, or it names
    no fund at all (a service's alert concerns every fund it serves)."""
    named = {str(v) for k, v in _alert_fields(alert).items() if k in {"fund", "fund_id"}}
    return not named or fund_id in named


def _alert_fields(alert: Alert) -> dict[str, object]:
    fields: dict[str, object] = dict(alert.context)
    fields.update(alert.labels)
    return fields
