"""Pre-trade risk gates: small units, each returning ``None`` (pass) or a coded :class:`Denial`.

Every gate reads its limits from the fund's :class:`~mts1b_foundation.RiskEnvelope` (a number,
or ``"unlimited"``: the only way to lift a limit; the sanity limits are finite by default) and
the numbers it needs from a :class:`GateContext` snapshot. What an instrument *is* - tick size,
lot size, minimum and maximum quantity, multiplier - comes from the OMS's instrument registry
(:mod:`mts1b_oms.instruments`), never from the order. The :class:`GatePipeline` evaluates the
gates in this order and stops at the first denial:

1. ``trading_state`` - kill switch: HALTED denies everything (``TRADING_HALTED``); REDUCING allows
   only risk-reducing orders (``TRADING_STATE_REDUCING``). Global, fund and strategy scopes
   combine, most restrictive first; an order serving sleeves answers to each sleeve's scope.
2. ``permissions`` - the order's fund matches, its strategy - for an order serving sleeves,
   every sleeve with a share still to trade in it - may write to the fund
   (``STRATEGY_NOT_ALLOWED``, naming the first refused), its broker is on the allowlist
   (``BROKER_NOT_ALLOWED``), its symbol is not restricted (``INSTRUMENT_RESTRICTED``).
2a. ``capabilities`` - when the OMS's broker declares a capability manifest
   (:class:`~mts1b_foundation.plugins.Capabilities`), the order's type, time in force and
   instrument asset class are among those it declares, and a replace needs it to declare
   replace (``UNSUPPORTED``, naming the field and the value): refused here rather than sent
   to learn it from the venue's reject. A broker that declares nothing is not checked.
3. ``instrument`` - the symbol is registered (``INSTRUMENT_NOT_FOUND``) and the order's
   instrument is the registered one (``INSTRUMENT_MISMATCH``, naming the differing fields);
   the quantity is at least the registered ``min_quantity`` (``QUANTITY_BELOW_MINIMUM``), a
   multiple of its ``lot_size`` (``LOT_SIZE``) and at most its ``max_quantity``
   (``QUANTITY_EXCEEDS_MAXIMUM``); limit and stop prices lie on its ``tick_size``
   (``TICK_SIZE``).
4. ``duplicate`` - the same terms (strategy, symbol, side, quantity, type, prices) under another
   idempotency key inside ``duplicate_window_seconds`` (``DUPLICATE_ORDER``).
5. ``price_collar`` - a limit/stop price more than ``price_collar_pct`` away from the reference
   price (``PRICE_COLLAR``); no reference price when one is needed (``NO_REFERENCE_PRICE``).
6. ``order_size`` - ``max_order_quantity`` (``QUANTITY_EXCEEDS_MAXIMUM``; default 1,000,000),
   ``max_order_notional`` (``NOTIONAL_EXCEEDS_MAXIMUM``; default 10 % of the fund's target
   NAV), ``max_adv_pct`` of average daily volume (``MAX_ADV_PCT``).
7. ``position_cap`` - the position after this order *and every open order on the same side*
   above ``max_position_pct_nav`` of NAV (``POSITION_CAP``; default 25 %).
8. ``exposure`` - gross and net exposure (multiples of NAV) after the order
   (``GROSS_EXPOSURE``, ``NET_EXPOSURE``).
9. ``drawdown`` - NAV below its peak by more than ``max_drawdown_pct`` (``DRAWDOWN_HALT``); the
   decision asks the OMS to switch the fund to ``drawdown_action`` (HALTED or REDUCING).
10. ``message_rate`` - more than ``max_messages_per_window`` orders from the fund inside
    ``message_window_seconds`` (``MESSAGE_RATE``). *Every* order reaching the pipeline counts,
    denied ones included.
11. ``repeated_execution`` - more than ``max_repeated_executions`` passed orders on the same
    strategy, symbol and side inside ``repeated_window_seconds`` (``REPEATED_EXECUTION``).

Gates 7 and 8 never deny an order that reduces the measure they guard, so a fund over a limit
can always trade back inside it. Limits are inclusive: a value exactly at the limit passes.

A cancel-replace is judged by the same gates as the order it would make
(:meth:`GatePipeline.evaluate_replace`, with :attr:`GateContext.replacing` set): its new
quantity and prices against the registry and the limits, and, where open orders count (gates
1, 7, 8, 9), the order's own open quantity *replaced* by its new one rather than added to it -
otherwise an order would crowd itself out of its own room. A replace that does not take the
worst case further from zero than the order as it stands is never denied by gates 7 and 8.
Gates 4 and 11 are about a new order arriving (a second copy, one execution more) and are not
run for a replace; it counts as a message for gate 10, as it does at a venue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from mts1b_foundation import (
    Denial,
    DenialCode,
    FundConfig,
    Order,
    Side,
    TradingState,
)
from mts1b_foundation.instruments import Instrument
from mts1b_foundation.orders import ContextValue
from mts1b_foundation.plugins import Capabilities

from mts1b_oms.instruments import InstrumentRegistry, is_multiple
from mts1b_oms.sleeves import live_strategies
from mts1b_oms.tradingstate import TradingStates

__all__ = [
    "DEFAULT_GATES",
    "Decision",
    "FundMemory",
    "GateContext",
    "GateFn",
    "GatePipeline",
    "Replacing",
    "is_risk_reducing",
]

ZERO = Decimal(0)


@dataclass
class FundMemory:
    """What the stateful gates remember about one fund (in process; rebuilt after a restart).

    ``messages``: times of every order that reached the pipeline; ``recent``: fingerprint ->
    (time, idempotency key) of passed orders; ``executions``: (strategy, symbol, side) -> times of
    passed orders.
    """

    messages: deque[dt.datetime] = field(default_factory=deque)
    recent: dict[tuple[object, ...], tuple[dt.datetime, str]] = field(default_factory=dict)
    executions: dict[tuple[str, str, str], deque[dt.datetime]] = field(default_factory=dict)
    prune_at: int = 10_000
    exposure: tuple[Decimal, Decimal, dict[str, Decimal]] | None = None
    """Cached (gross, net, value per symbol) of the book; the OMS clears it on any change."""


@dataclass(frozen=True, slots=True)
class Replacing:
    """The working order a replace would change, as the fund's book counts it now.

    ``open_quantity``: what its side's open quantity (``open_buy`` / ``open_sell``) holds for
    it; ``filled_quantity``: what has filled, already in the position. The order the gates
    judge carries the replace's new *total* quantity (what the venue will be told), so what
    it adds to its side is that total less the filled quantity less ``open_quantity``.
    """

    open_quantity: Decimal
    filled_quantity: Decimal
    credited: Mapping[str, Decimal] = field(default_factory=dict)
    """What the order's fills credited each sleeve so far: a sleeve whose new share is all
    credited (a withdrawn strategy's) no longer trades through the order."""


@dataclass
class GateContext:
    """A snapshot of what the gates need for one fund.

    ``positions``: symbol -> signed quantity; ``open_buy`` / ``open_sell``: symbol -> leaves
    quantity of open orders (positive); ``prices``: reference price per symbol; ``adv``: average
    daily volume per symbol (shares/contracts); ``peak_nav``: the high-water mark for drawdown;
    ``instruments``: the OMS's instrument registry (empty: every symbol is unknown);
    ``replacing``: set when the order judged is a replace of a working order (see
    :class:`Replacing`), ``None`` for a new order; ``capabilities``: what the OMS's broker
    declares (``None``: it declares nothing, and the ``capabilities`` gate passes everything).
    """

    fund: FundConfig
    now: dt.datetime
    nav: Decimal
    states: TradingStates = field(default_factory=TradingStates)
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    open_buy: Mapping[str, Decimal] = field(default_factory=dict)
    open_sell: Mapping[str, Decimal] = field(default_factory=dict)
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    adv: Mapping[str, Decimal] = field(default_factory=dict)
    peak_nav: Decimal | None = None
    memory: FundMemory = field(default_factory=FundMemory)
    instruments: InstrumentRegistry = field(default_factory=InstrumentRegistry)
    replacing: Replacing | None = None
    capabilities: Capabilities | None = None


GateFn = Callable[[Order, "GateContext"], Denial | None]
"""A gate: ``None`` to pass, a :class:`Denial` to refuse."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The pipeline's verdict. ``state_change``: a trading state the OMS must now set on the
    order's fund (drawdown breach)."""

    denial: Denial | None
    state_change: TradingState | None = None

    @property
    def allowed(self) -> bool:
        return self.denial is None


def _s(value: Decimal | None) -> ContextValue:
    return None if value is None else str(value)


def _deny(code: DenialCode, gate: str, message: str, **context: ContextValue) -> Denial:
    return Denial(code=code, gate=gate, message=message, context=context)


def _limit_of(value: Decimal | int | str | None) -> Decimal | int | None:
    """A RiskEnvelope limit as a number, or ``None`` when it is ``"unlimited"``.

    Anything but a number (a ``None`` slipped in by ``model_copy``, which skips validation)
    is refused here rather than read as "no limit": only the word lifts a limit.
    """
    if type(value) is str and value == "unlimited":  # the usual limit, recognised first
        return None
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return value
    if value == "unlimited":
        return None
    raise ValueError(f'a limit is a number or "unlimited", not {value!r}')


def _dec_limit(value: Decimal | str | None) -> Decimal | None:
    found = _limit_of(value)
    if found is None or type(found) is Decimal:  # a Decimal is immutable: no copy needed
        return found
    return Decimal(found)


def _count_limit(value: int | str | None) -> int | None:
    found = _limit_of(value)
    return None if found is None else int(found)


def _price(order: Order, ctx: GateContext) -> Decimal | None:
    """The price used for notional checks: the limit price, else the reference price."""
    if order.limit_price is not None:
        return order.limit_price
    ref = ctx.prices.get(order.instrument.symbol)
    if ref is None and order.stop_price is not None:
        return order.stop_price
    return ref


_ONE = Decimal(1)


_HAS_MULTIPLIER: dict[type, bool] = {}


def _registered(order: Order, ctx: GateContext) -> Instrument:
    """The registered instrument of the order's symbol; the order's own only for a symbol the
    registry lacks, which the ``instrument`` gate has denied already unless a custom pipeline
    left that gate out."""
    entry = ctx.instruments.get(order.instrument.symbol)
    return order.instrument if entry is None else entry.instrument


def _multiplier(order: Order, ctx: GateContext) -> Decimal:
    inst = _registered(order, ctx)
    cls = type(inst)
    has = _HAS_MULTIPLIER.get(cls)
    if has is None:
        has = _HAS_MULTIPLIER[cls] = "multiplier" in cls.model_fields
    if not has:
        return _ONE
    m = inst.__dict__.get("multiplier")
    return m if isinstance(m, Decimal) else _ONE


def _book_exposure(ctx: GateContext) -> tuple[Decimal, Decimal, dict[str, Decimal]]:
    cached = ctx.memory.exposure
    if cached is not None:
        return cached
    values: dict[str, Decimal] = {}
    for s in set(ctx.positions) | set(ctx.open_buy) | set(ctx.open_sell):
        p = ctx.prices.get(s)
        if p is None:
            continue
        q = ctx.positions.get(s, ZERO) + ctx.open_buy.get(s, ZERO) - ctx.open_sell.get(s, ZERO)
        values[s] = q * p
    gross = sum((abs(v) for v in values.values()), ZERO)
    net = sum(values.values(), ZERO)
    ctx.memory.exposure = (gross, net, values)
    return ctx.memory.exposure


def _adds(order: Order, ctx: GateContext) -> Decimal:
    """What the order adds to the open quantity of its side: all of it for a new order; for a
    replace, its new leaves less what the book holds for it now (negative when it shrinks)."""
    r = ctx.replacing
    if r is None:
        return order.quantity
    return order.quantity - r.filled_quantity - r.open_quantity


def is_risk_reducing(order: Order, ctx: GateContext) -> bool:
    """True when the order (with open orders on its side) only shrinks the position, never flips
    it. This is what REDUCING allows. A replace is judged with its new leaves in place of the
    order's open quantity."""
    sym = order.instrument.symbol
    pos = ctx.positions.get(sym, ZERO)
    if order.side is Side.SELL:
        return pos > 0 and ctx.open_sell.get(sym, ZERO) + _adds(order, ctx) <= pos
    return pos < 0 and ctx.open_buy.get(sym, ZERO) + _adds(order, ctx) <= -pos


# --- the gates, in pipeline order ------------------------------------------------------------


def _strategies(order: Order, ctx: GateContext) -> tuple[str, ...]:
    """The strategies the gates judge an order for: its ``strategy_id``, or the sleeves with
    a share still to trade in it (issue #17) - never the ``multi-sleeve`` label."""
    return live_strategies(order, ctx.replacing.credited if ctx.replacing else None)


def trading_state(order: Order, ctx: GateContext) -> Denial | None:
    state, (scope, scope_id) = ctx.states.effective_for(order.fund_id,
                                                        _strategies(order, ctx))
    if state is TradingState.ACTIVE:
        return None
    if state is TradingState.HALTED:
        return _deny(DenialCode.TRADING_HALTED, "trading_state",
                     f"trading is HALTED for {scope} {scope_id}", scope=scope, scope_id=scope_id)
    if is_risk_reducing(order, ctx):
        return None
    return _deny(DenialCode.TRADING_STATE_REDUCING, "trading_state",
                 f"{scope} {scope_id} is REDUCING: only risk-reducing orders are allowed",
                 scope=scope, scope_id=scope_id,
                 position=_s(ctx.positions.get(order.instrument.symbol, ZERO)))


def permissions(order: Order, ctx: GateContext) -> Denial | None:
    fund, risk = ctx.fund, ctx.fund.risk
    if order.fund_id != fund.fund_id:
        return _deny(DenialCode.INVALID_ORDER, "permissions",
                     f"order fund {order.fund_id} evaluated against fund {fund.fund_id}",
                     fund_id=order.fund_id)
    if fund.strategies:
        refused = [s for s in _strategies(order, ctx) if s not in fund.strategies]
        if refused:
            return _deny(DenialCode.STRATEGY_NOT_ALLOWED, "permissions",
                         f"strategy {refused[0]} may not trade fund {fund.fund_id}",
                         strategy_id=refused[0], strategies=",".join(refused)[:2000])
    broker = order.broker or fund.broker
    if risk.allowed_brokers and broker not in risk.allowed_brokers:
        return _deny(DenialCode.BROKER_NOT_ALLOWED, "permissions",
                     f"broker {broker} is not on the fund's allowlist", broker=broker,
                     allowed=",".join(risk.allowed_brokers))
    sym = order.instrument.symbol
    if sym in risk.restricted_symbols:
        return _deny(DenialCode.INSTRUMENT_RESTRICTED, "permissions",
                     f"{sym} is on the fund's restricted list", symbol=sym)
    return None


def capabilities(order: Order, ctx: GateContext) -> Denial | None:
    caps = ctx.capabilities
    if caps is None:
        return None
    broker = order.broker or ctx.fund.broker
    features = (("order_type", order.order_type.value,
                 {t.value for t in caps.order_types}),
                ("time_in_force", order.time_in_force.value,
                 {t.value for t in caps.time_in_force}),
                ("instrument.asset_class", order.instrument.asset_class.value,
                 {a.value for a in caps.asset_classes}))
    for name, value, declared in features:
        if value not in declared:
            return _deny(DenialCode.UNSUPPORTED, "capabilities",
                         f"{name} {value} is not supported by broker {broker}: it declares "
                         f"{', '.join(sorted(declared)) or 'none'}",
                         field=name, value=value, broker=broker,
                         declared=",".join(sorted(declared)))
    if ctx.replacing is not None and not caps.supports_replace:
        return _deny(DenialCode.UNSUPPORTED, "capabilities",
                     f"broker {broker} does not declare replace: cancel the order and submit "
                     "a new one", field="replace", value="true", broker=broker)
    return None


def instrument(order: Order, ctx: GateContext) -> Denial | None:
    sym = order.instrument.symbol
    entry = ctx.instruments.get(sym)
    if entry is None:
        return _deny(DenialCode.INSTRUMENT_NOT_FOUND, "instrument",
                     f"{sym} is not in the OMS's instrument registry", symbol=sym)
    differ = entry.mismatch(order.instrument)
    if differ:
        return _deny(DenialCode.INSTRUMENT_MISMATCH, "instrument",
                     f"the order's {sym} differs from the registered instrument in "
                     f"{', '.join(differ)}", symbol=sym, fields=",".join(differ))
    inst, q = entry.instrument, order.quantity
    if q < inst.min_quantity:
        return _deny(DenialCode.QUANTITY_BELOW_MINIMUM, "instrument",
                     f"quantity {q} below the minimum {inst.min_quantity} of {sym}",
                     quantity=_s(q), minimum=_s(inst.min_quantity))
    if not is_multiple(q, inst.lot_size):
        return _deny(DenialCode.LOT_SIZE, "instrument",
                     f"quantity {q} is not a multiple of the lot size {inst.lot_size} of {sym}",
                     quantity=_s(q), lot_size=_s(inst.lot_size))
    if entry.max_quantity is not None and q > entry.max_quantity:
        return _deny(DenialCode.QUANTITY_EXCEEDS_MAXIMUM, "instrument",
                     f"quantity {q} above the maximum {entry.max_quantity} of {sym}",
                     quantity=_s(q), limit=_s(entry.max_quantity))
    for name, px in (("limit_price", order.limit_price), ("stop_price", order.stop_price)):
        if px is not None and not is_multiple(px, inst.tick_size):
            return _deny(DenialCode.TICK_SIZE, "instrument",
                         f"{name} {px} is off the tick size {inst.tick_size} of {sym}",
                         field=name, price=_s(px), tick_size=_s(inst.tick_size))
    return None


def _fingerprint(order: Order) -> tuple[object, ...]:
    return (order.strategy_id, order.instrument.symbol, order.side, order.quantity,
            order.order_type, order.limit_price, order.stop_price,
            tuple(sorted(order.sleeves.items())) if order.sleeves else ())


def duplicate(order: Order, ctx: GateContext) -> Denial | None:
    window = ctx.fund.risk.duplicate_window_seconds
    if window <= 0:
        return None
    seen = ctx.memory.recent.get(_fingerprint(order))
    if seen is None:
        return None
    at, key = seen
    age = Decimal(str((ctx.now - at).total_seconds()))
    if age <= window and key != order.idempotency_key:
        return _deny(DenialCode.DUPLICATE_ORDER, "duplicate",
                     f"same order terms seen {age}s ago under idempotency key {key}",
                     previous_idempotency_key=key, age_seconds=_s(age), window=_s(window))
    return None


def price_collar(order: Order, ctx: GateContext) -> Denial | None:
    risk = ctx.fund.risk
    pct = _dec_limit(risk.price_collar_pct)
    needs_ref = pct is not None or risk.max_order_notional != "unlimited" or any(
        v != "unlimited" for v in (risk.max_position_pct_nav, risk.max_gross_exposure,
                                   risk.max_net_exposure))
    sym = order.instrument.symbol
    ref = ctx.prices.get(sym)
    if ref is None:
        if needs_ref and order.limit_price is None:
            return _deny(DenialCode.NO_REFERENCE_PRICE, "price_collar",
                         f"no reference price for {sym}", symbol=sym)
        if pct is not None:
            return _deny(DenialCode.NO_REFERENCE_PRICE, "price_collar",
                         f"no reference price for {sym} to collar against", symbol=sym)
        return None
    if pct is None:
        return None
    for name, px in (("limit_price", order.limit_price), ("stop_price", order.stop_price)):
        if px is None:
            continue
        away = abs(px - ref) / ref
        if away > pct:
            return _deny(DenialCode.PRICE_COLLAR, "price_collar",
                         f"{name} {px} is {away:.4%} from reference {ref} (collar {pct:.4%})",
                         field=name, price=_s(px), reference=_s(ref), collar_pct=_s(pct))
    return None


def order_size(order: Order, ctx: GateContext) -> Denial | None:
    risk = ctx.fund.risk
    q = order.quantity
    max_q = _dec_limit(risk.max_order_quantity)
    if max_q is not None and q > max_q:
        return _deny(DenialCode.QUANTITY_EXCEEDS_MAXIMUM, "order_size",
                     f"quantity {q} above max {max_q}", quantity=_s(q), limit=_s(max_q))
    max_notional = risk.order_notional_limit(ctx.fund.target_nav_usd)
    if max_notional is not None:
        px = _price(order, ctx)
        if px is None:
            return _deny(DenialCode.NO_REFERENCE_PRICE, "order_size",
                         f"no price to value {order.instrument.symbol}")
        notional = q * px * _multiplier(order, ctx)
        if notional > max_notional:
            return _deny(DenialCode.NOTIONAL_EXCEEDS_MAXIMUM, "order_size",
                         f"notional {notional} above max {max_notional}",
                         notional=_s(notional), limit=_s(max_notional))
    max_adv = _dec_limit(risk.max_adv_pct)
    if max_adv is not None:
        adv = ctx.adv.get(order.instrument.symbol)
        if adv is None or adv <= 0:
            return _deny(DenialCode.MAX_ADV_PCT, "order_size",
                         f"no average daily volume known for {order.instrument.symbol}",
                         adv=None)
        pct = q / adv
        if pct > max_adv:
            return _deny(DenialCode.MAX_ADV_PCT, "order_size",
                         f"quantity is {pct:.4%} of ADV {adv} (max {max_adv:.4%})",
                         quantity=_s(q), adv=_s(adv), limit=_s(max_adv))
    return None


def _projected(order: Order, ctx: GateContext) -> tuple[Decimal, Decimal, Decimal]:
    """(position now, worst-case position with the open orders on the order's side as they
    stand, and the same after this order)."""
    sym = order.instrument.symbol
    pos = ctx.positions.get(sym, ZERO)
    if order.side is Side.BUY:
        now = pos + ctx.open_buy.get(sym, ZERO)
        return pos, now, now + _adds(order, ctx)
    now = pos - ctx.open_sell.get(sym, ZERO)
    return pos, now, now - _adds(order, ctx)


def position_cap(order: Order, ctx: GateContext) -> Denial | None:
    cap = _dec_limit(ctx.fund.risk.max_position_pct_nav)
    if cap is None:
        return None
    px = _price(order, ctx)
    if px is None:
        return _deny(DenialCode.NO_REFERENCE_PRICE, "position_cap",
                     f"no price to value {order.instrument.symbol}")
    pos, now, after = _projected(order, ctx)
    # Not further from zero than the position, or than the side as it stands: the second
    # admits only a replace that does not grow its order (a new order always grows the side).
    if abs(after) <= abs(pos) or abs(after) <= abs(now):
        return None
    value = abs(after) * px * _multiplier(order, ctx)
    most = cap * ctx.nav
    if value > most:
        return _deny(DenialCode.POSITION_CAP, "position_cap",
                     f"position {after} worth {value} (with open orders) above "
                     f"{cap:.4%} of NAV {ctx.nav}",
                     position_after=_s(after), value=_s(value), limit=_s(most))
    return None


def exposure(order: Order, ctx: GateContext) -> Denial | None:
    risk = ctx.fund.risk
    max_gross, max_net = _dec_limit(risk.max_gross_exposure), _dec_limit(risk.max_net_exposure)
    if max_gross is None and max_net is None:
        return None
    sym = order.instrument.symbol
    book_gross, book_net, values = _book_exposure(ctx)
    v_sym = values.get(sym, ZERO)
    gross, net = book_gross - abs(v_sym), book_net - v_sym
    px = _price(order, ctx)
    if px is None:
        return _deny(DenialCode.NO_REFERENCE_PRICE, "exposure", f"no price to value {sym}")
    m = _multiplier(order, ctx)
    mine = (ctx.positions.get(sym, ZERO) + ctx.open_buy.get(sym, ZERO)
            - ctx.open_sell.get(sym, ZERO)) * px * m
    added = _adds(order, ctx)
    mine_after = mine + (added if order.side is Side.BUY else -added) * px * m
    nav = ctx.nav
    if max_gross is not None and abs(mine_after) > abs(mine):
        g = (gross + abs(mine_after)) / nav
        if g > max_gross:
            return _deny(DenialCode.GROSS_EXPOSURE, "exposure",
                         f"gross exposure {g:.4f}x NAV above {max_gross}x",
                         gross=_s(g), limit=_s(max_gross))
    if max_net is not None:
        before, after = (net + mine) / nav, (net + mine_after) / nav
        if abs(after) > max_net and abs(after) > abs(before):
            return _deny(DenialCode.NET_EXPOSURE, "exposure",
                         f"net exposure {after:.4f}x NAV above {max_net}x",
                         net=_s(after), limit=_s(max_net))
    return None


def drawdown(order: Order, ctx: GateContext) -> Denial | None:
    max_dd = _dec_limit(ctx.fund.risk.max_drawdown_pct)
    if max_dd is None or ctx.peak_nav is None or ctx.peak_nav <= 0:
        return None
    dd = (ctx.peak_nav - ctx.nav) / ctx.peak_nav
    if dd <= max_dd:
        return None
    action = ctx.fund.risk.drawdown_action
    if action is TradingState.REDUCING and is_risk_reducing(order, ctx):
        return None
    return _deny(DenialCode.DRAWDOWN_HALT, "drawdown",
                 f"drawdown {dd:.4%} beyond {max_dd:.4%}: fund switches to {action.value}",
                 drawdown=_s(dd), limit=_s(max_dd), nav=_s(ctx.nav), peak_nav=_s(ctx.peak_nav),
                 action=action.value)


def message_rate(order: Order, ctx: GateContext) -> Denial | None:
    most = _count_limit(ctx.fund.risk.max_messages_per_window)
    if most is None:
        return None
    # the pipeline appended this order's own time before evaluating: it counts as one message
    n = len(ctx.memory.messages)
    if n > most:
        return _deny(DenialCode.MESSAGE_RATE, "message_rate",
                     f"{n} orders within {ctx.fund.risk.message_window_seconds}s "
                     f"(max {most})", count=n, limit=most)
    return None


def repeated_execution(order: Order, ctx: GateContext) -> Denial | None:
    most = _count_limit(ctx.fund.risk.max_repeated_executions)
    if most is None:
        return None
    key = (order.strategy_id, order.instrument.symbol, order.side.value)
    times = ctx.memory.executions.get(key)
    n = len(times) if times else 0
    if n >= most:
        return _deny(DenialCode.REPEATED_EXECUTION, "repeated_execution",
                     f"{n} orders on {key[1]} {key[2]} by {key[0]} within "
                     f"{ctx.fund.risk.repeated_window_seconds}s (max {most})",
                     count=n, limit=most)
    return None



DEFAULT_GATES: Sequence[tuple[str, GateFn]] = (
    ("trading_state", trading_state),
    ("permissions", permissions),
    ("capabilities", capabilities),
    ("instrument", instrument),
    ("duplicate", duplicate),
    ("price_collar", price_collar),
    ("order_size", order_size),
    ("position_cap", position_cap),
    ("exposure", exposure),
    ("drawdown", drawdown),
    ("message_rate", message_rate),
    ("repeated_execution", repeated_execution),
)
"""(name, gate) in evaluation order; the module docstring explains each."""

_NOT_FOR_REPLACES = frozenset({"duplicate", "repeated_execution"})
"""Gates about a new order arriving, which a replace is not (see
:meth:`GatePipeline.evaluate_replace`)."""


@functools.lru_cache(maxsize=64)
def _seconds(value: Decimal) -> dt.timedelta:
    return dt.timedelta(seconds=float(value))


def _prune(times: deque[dt.datetime], cutoff: dt.datetime) -> None:
    while times and times[0] < cutoff:
        times.popleft()


class GatePipeline:
    """Runs the gates in order; remembers message times (all orders) and passed orders."""

    def __init__(self, gates: Sequence[tuple[str, GateFn]] = DEFAULT_GATES) -> None:
        self.gates = tuple(gates)

    def evaluate(self, order: Order, ctx: GateContext) -> Decision:
        risk, mem, now = ctx.fund.risk, ctx.memory, ctx.now
        _prune(mem.messages, now - _seconds(risk.message_window_seconds))
        mem.messages.append(now)
        rep_window = _seconds(risk.repeated_window_seconds)
        key = (order.strategy_id, order.instrument.symbol, order.side.value)
        times = mem.executions.get(key)
        if times is not None:
            _prune(times, now - rep_window)
        for _name, gate in self.gates:
            denial = gate(order, ctx)
            if denial is not None:
                change = (risk.drawdown_action if denial.code is DenialCode.DRAWDOWN_HALT
                          else None)
                return Decision(denial, change)
        if risk.duplicate_window_seconds > 0:
            fp = _fingerprint(order)
            mem.recent[fp] = (now, order.idempotency_key)
            if len(mem.recent) > mem.prune_at:  # amortised: scan only when the map doubled
                horizon = now - dt.timedelta(seconds=float(risk.duplicate_window_seconds))
                for k in [k for k, (t, _) in mem.recent.items() if t < horizon]:
                    del mem.recent[k]
                mem.prune_at = max(10_000, 2 * len(mem.recent))
        mem.executions.setdefault(key, deque()).append(now)
        return Decision(None)

    def evaluate_replace(self, order: Order, ctx: GateContext) -> Decision:
        """Judge a replace: ``order`` is the working order with the replace's new terms and
        ``ctx.replacing`` says what the book holds for it now.

        The replace counts as a message for the message-rate gate, as it does at a venue.
        The gates named ``duplicate`` and ``repeated_execution`` are left out and remember
        nothing: they guard against a new order arriving twice or too often, and a replace
        is neither a second copy of an order nor one execution more.
        """
        if ctx.replacing is None:
            raise ValueError("evaluate_replace needs ctx.replacing")
        risk, mem, now = ctx.fund.risk, ctx.memory, ctx.now
        _prune(mem.messages, now - _seconds(risk.message_window_seconds))
        mem.messages.append(now)
        for name, gate in self.gates:
            if name in _NOT_FOR_REPLACES:
                continue
            denial = gate(order, ctx)
            if denial is not None:
                change = (risk.drawdown_action if denial.code is DenialCode.DRAWDOWN_HALT
                          else None)
                return Decision(denial, change)
        return Decision(None)

    def forget(self, order: Order, ctx: GateContext) -> None:
        """Take back the execution :meth:`evaluate` remembered for a passed ``order`` that
        turned out to be a repeat of an earlier submission (same idempotency key): a retry is
        not a second execution for the repeated-execution throttle."""
        times = ctx.memory.executions.get(
            (order.strategy_id, order.instrument.symbol, order.side.value))
        if times:
            with contextlib.suppress(ValueError):
                times.remove(ctx.now)
