"""The fund book: what the OMS knows in memory about each of its funds.

Positions per (fund, strategy, symbol) and their net per symbol, the open orders with their
leaves per side, the quantities *reserved* by orders whose gates passed but which are not
committed yet, and each fund's gate memory (rate and duplicate windows, the cached exposure).

Why one module: the gates read these numbers without a database round trip, so they must
follow every change of every order exactly - a reservation taken when the gates pass and given
back when the write fails, leaves moved when an order fills or ends, a position taken in when
its fill commits - and the kill switch asks the same book which working orders add risk. Kept
in one class, each of those steps has one name and one test, instead of being spread over the
order path.

The book is per process: it is rebuilt from the store at start (see ``Oms.start``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from mts1b_foundation import FundConfig, Order, Side
from mts1b_foundation.plugins import Capabilities

from mts1b_oms.gates import FundMemory, GateContext
from mts1b_oms.instruments import InstrumentRegistry
from mts1b_oms.positions import PositionState
from mts1b_oms.state import OrderState
from mts1b_oms.tradingstate import TradingStates

__all__ = ["FundBook"]

ZERO = Decimal(0)
PositionKey = tuple[str, str, str]
"""``(fund_id, strategy_id, symbol)``."""


@dataclass
class _Fund:
    """One fund's numbers as the gates read them: net position and open leaves per symbol."""

    positions: dict[str, Decimal] = field(default_factory=dict)
    open_buy: dict[str, Decimal] = field(default_factory=dict)
    open_sell: dict[str, Decimal] = field(default_factory=dict)


class FundBook:
    """See the module docstring."""

    def __init__(self) -> None:
        self._funds: defaultdict[str, _Fund] = defaultdict(_Fund)
        self._positions: dict[PositionKey, PositionState] = {}
        self._open: dict[str, OrderState] = {}
        self._memory: defaultdict[str, FundMemory] = defaultdict(FundMemory)

    # --- what the gates read ------------------------------------------------------------------

    def context(self, fund: FundConfig, now: dt.datetime, *, nav: Decimal,
                states: TradingStates, prices: Mapping[str, Decimal],
                adv: Mapping[str, Decimal], peak_nav: Decimal | None,
                instruments: InstrumentRegistry,
                capabilities: Capabilities | None = None) -> GateContext:
        """The gates' view of ``fund`` now (live mappings, not copies: building it is cheap),
        with the OMS's instrument registry the gates read every instrument's terms from and
        the capabilities its broker declares."""
        f = self._funds[fund.fund_id]
        return GateContext(fund=fund, now=now, nav=nav, states=states, positions=f.positions,
                           open_buy=f.open_buy, open_sell=f.open_sell, prices=prices, adv=adv,
                           peak_nav=peak_nav, memory=self._memory[fund.fund_id],
                           instruments=instruments, capabilities=capabilities)

    def prices_changed(self) -> None:
        """A reference price moved: every fund's cached exposure used the old one."""
        for memory in self._memory.values():
            memory.exposure = None

    # --- open orders --------------------------------------------------------------------------

    def reserve(self, state: OrderState, sign: int) -> None:
        """Add (+1) or remove (-1) a not-yet-committed order's quantity to its fund's open
        leaves, so that a concurrent submission's gates count it before its commit."""
        self.hold(state.order, sign * state.open_quantity)

    def hold(self, order: Order, quantity: Decimal) -> None:
        """Add ``quantity`` (negative: take it back) to the open leaves of ``order``'s side:
        a reservation for a change whose gates passed and that is not committed yet (a new
        order, or the growth a replace asks for), taken back by the same amount once the
        committed change is tracked or the write failed."""
        f = self._funds[order.fund_id]
        self._memory[order.fund_id].exposure = None
        side = f.open_buy if order.side is Side.BUY else f.open_sell
        sym = order.instrument.symbol
        side[sym] = side.get(sym, ZERO) + quantity
        if side[sym] == 0:
            del side[sym]

    def track(self, before: OrderState | None, after: OrderState) -> None:
        """Take a committed change in: the open-order cache and the fund's open leaves follow
        ``after`` (``before`` None: the order is new to this book). An order counts with its
        :attr:`~mts1b_oms.state.OrderState.open_quantity` (a pending replace's larger leaves
        included), taken out again by the same measure of the cached state."""
        o = after.order
        f = self._funds[o.fund_id]
        self._memory[o.fund_id].exposure = None
        sym = o.instrument.symbol
        side = f.open_buy if o.side is Side.BUY else f.open_sell
        if before is not None and before.order_id in self._open:
            side[sym] = side.get(sym, ZERO) - self._open[before.order_id].open_quantity
        if after.is_open:
            self._open[after.order_id] = after
            side[sym] = side.get(sym, ZERO) + after.open_quantity
        else:
            self._open.pop(after.order_id, None)
        if side.get(sym) == 0:
            side.pop(sym, None)

    def forget(self, order_id: str) -> None:
        """Drop an order this book no longer can vouch for (it vanished from the store)."""
        self._open.pop(order_id, None)

    def open_order(self, order_id: str) -> OrderState | None:
        return self._open.get(order_id)

    def open_orders(self) -> list[OrderState]:
        return list(self._open.values())

    # --- positions ----------------------------------------------------------------------------

    def position(self, key: PositionKey) -> PositionState:
        return self._positions.get(key, PositionState())

    def set_position(self, key: PositionKey, pos: PositionState) -> None:
        """Take a committed position in (a fill, a bust, a correction, or a load at start)."""
        fund_id, _strategy_id, symbol = key
        old = self._positions.get(key, PositionState())
        self._positions[key] = pos
        self._memory[fund_id].exposure = None
        f = self._funds[fund_id]
        f.positions[symbol] = f.positions.get(symbol, ZERO) - old.quantity + pos.quantity

    def positions(self, fund_id: str) -> dict[str, Decimal]:
        """Net quantity per symbol across the fund's strategies (flat symbols left out)."""
        return {s: q for s, q in self._funds[fund_id].positions.items() if q != 0}

    def position_states(self, fund_id: str) -> dict[tuple[str, str], PositionState]:
        return {(st, sym): p for (f, st, sym), p in self._positions.items() if f == fund_id}

    # --- risk for the kill switch ---------------------------------------------------------------

    def risk_increasing(self, orders: Iterable[OrderState]) -> list[OrderState]:
        """The orders among ``orders`` that a REDUCING scope must not keep working: per fund,
        symbol and side, the oldest orders are kept while together they still only shrink
        the position; the first that would overshoot and every later one are not."""
        out: list[OrderState] = []
        groups: dict[tuple[str, str, Side], list[OrderState]] = defaultdict(list)
        for st in orders:
            o = st.order
            groups[(o.fund_id, o.instrument.symbol, o.side)].append(st)
        for (fund_id, symbol, side), group in groups.items():
            pos = self._funds[fund_id].positions.get(symbol, ZERO)
            room = pos if side is Side.SELL else -pos  # how much this side may still reduce
            for st in sorted(group, key=lambda x: x.order_id):  # order ids grow with time
                if st.open_quantity <= room:
                    room -= st.open_quantity
                else:
                    out.append(st)
                    room = ZERO  # nothing after an increasing order may stay either
        return out

    def adds_risk(self, state: OrderState) -> bool:
        """Whether ``state`` is among the orders a REDUCING scope would cancel, judged with
        the other open orders of its fund, symbol and side as :meth:`risk_increasing` judges
        them."""
        o = state.order
        side: Sequence[OrderState] = [
            st for st in self._open.values() if st.order_id != state.order_id
            and st.order.fund_id == o.fund_id and st.order.side is o.side
            and st.order.instrument.symbol == o.instrument.symbol]
        return any(st.order_id == state.order_id
                   for st in self.risk_increasing([*side, state]))
