"""Composed targets in the OMS: rebalance a fund whose target several sleeves share, and take a
halted or removed strategy's share out of the open orders (issue #17).

Why apart from :mod:`mts1b_oms.oms`: both jobs are built from the order path's public steps
(submit, cancel, replace - each gated, stored and idempotent as any client's) and add no new
way for an order to change; keeping them here keeps the order path itself small.

**Identity of a rebalance** (issue #20): strategy, fund and rebalance time (the target's
``as_of``, to the microsecond). Every order's idempotency key is derived from them and the
symbol - :func:`~mts1b_oms.rebalance.rebalance_key` for a target of weights (its strategy is
its only source, else ``rebalance``), ``rbs-<uuid5(fund, as_of, symbol)>`` for a composed
target (one per fund: its strategies are the fund's sleeves, all in the one target) - so a new
``as_of`` makes new orders and a repeat of the same target is a duplicate: its replies carry
the original orders (``context["repeated"]`` counts them), also when an order has filled in
part since and the delta worked out again differs.

**Rebalance** (:meth:`SleeveDesk.rebalance`, the ``mts.v1.oms.commands.rebalance`` command):
a target with an :class:`~mts1b_foundation.SleeveAllocation` becomes one order per symbol whose
``sleeves`` carry each sleeve's delta (:mod:`mts1b_oms.allocation`); every sleeve must be one of
the fund's ``strategies`` (when the fund lists them) or nothing is sent
(``STRATEGY_NOT_ALLOWED`` naming the sleeve), and each order then passes the gates, which judge
its sleeves. A target without an allocation is turned into orders from its weights as before
(:func:`~mts1b_oms.rebalance.rebalance`), owned by its single ``sources`` entry if it has one.
A symbol whose sleeve deltas net to zero is booked as an internal transfer at the reference
price (:meth:`~mts1b_oms.oms.Oms.book_transfer`). The reply's ``payload`` is a
:class:`~mts1b_foundation.RebalanceReport`: the order or transfer per symbol, the code per
refused symbol, and what crossed between sleeves.

**Withdrawal** (:meth:`SleeveDesk.withdraw`): when a strategy is halted (strategy scope) or
removed from its fund's ``strategies``, its share leaves every open order (when it is REDUCING,
every share that would take its sleeve's position further from zero or across it; shares that
only reduce it stay): an order serving only it is canceled; one serving several is
cancel-replaced (through the gated replace path) down by the strategy's remaining share, the
strategy keeping in ``sleeves`` what fills already credited it. A withdrawal never makes an
order larger or turns it around: when taking the share out would (its sell was netting against
another sleeve's buy) the whole order is canceled and the other sleeves wait for the next
(re-composed) target. A replace the gates or the venue refuse is followed by a cancel of the
whole order. It runs again at start for every halted (and REDUCING) strategy and every strategy
a fund no longer lists, so a crash in the middle loses nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from mts1b_foundation import (
    CommandReply,
    FundConfig,
    Instrument,
    Order,
    OrderStatus,
    RebalanceReport,
    ReplaceRequest,
    ReplyCode,
    TargetPortfolio,
    TradingState,
    ValidationFailed,
    deterministic_id,
    fit_to_domain,
    parse_message,
)
from mts1b_foundation.wire import describe_errors
from mts1b_platform.logging import get_logger
from pydantic import ValidationError

from mts1b_oms.allocation import plan_allocation
from mts1b_oms.orderstore import Transfer
from mts1b_oms.rebalance import RebalanceError, rebalance
from mts1b_oms.sleeves import increasing_shares, withdrawal

if TYPE_CHECKING:
    from mts1b_oms.oms import Oms

__all__ = ["SleeveDesk", "Withdrawn"]

_RETRYABLE = frozenset({OrderStatus.DENIED, OrderStatus.REJECTED})
"""Ends of an order whose key a new attempt takes over (:meth:`OrderStore.create_order`)."""

_log = get_logger("mts1b_oms.composed")


@dataclass
class Withdrawn:
    """What a withdrawal did: orders canceled, orders reduced, and those whose cancel did not
    take (order id -> code: they filled first, or the venue refused)."""

    strategy_id: str
    canceled: list[str] = field(default_factory=list)
    reduced: list[str] = field(default_factory=list)
    failed: dict[str, ReplyCode] = field(default_factory=dict)


class SleeveDesk:
    """Composed targets and strategy withdrawals for one :class:`~mts1b_oms.oms.Oms`."""

    def __init__(self, oms: Oms) -> None:
        self.oms = oms
        # one rebalance at a time: two targets planned from the same holdings would both
        # trade the same deltas (each target's orders are idempotent, two targets' are not)
        self._rebalancing = asyncio.Lock()

    # --- rebalance ------------------------------------------------------------------------------

    async def rebalance(self, target: object) -> CommandReply:
        """Rebalance a fund to ``target`` (see the module docstring). Never raises: bad input is
        ``VALIDATION_FAILED`` (validated again in full), an unknown fund ``FUND_NOT_FOUND``, a
        sleeve the fund does not allow ``STRATEGY_NOT_ALLOWED``; a failure of the OMS itself
        is ``INTERNAL_ERROR`` naming only the exception's type."""
        now = self.oms.clock.now()
        try:
            async with self._rebalancing:
                return await self._rebalance(target)
        except Exception as exc:
            _log.exception("rebalance failed", error_type=type(exc).__name__)
            return CommandReply(ok=False, code=ReplyCode.INTERNAL_ERROR, ts=now,
                                message=f"the OMS failed ({type(exc).__name__}); its log has "
                                        "the details")

    async def _rebalance(self, raw: object) -> CommandReply:
        now = self.oms.clock.now()
        target = _valid_target(raw, now)
        if isinstance(target, CommandReply):
            return target
        fund = self.oms.funds.get(target.fund_id)
        if fund is None:
            return CommandReply(ok=False, code=ReplyCode.FUND_NOT_FOUND, ts=now,
                                message=f"unknown fund {target.fund_id!r}")
        allocation = target.allocation
        figures: dict[str, object] = {}
        refused: dict[str, str] = {}
        transfers: dict[str, dict[str, Decimal]] = {}
        if allocation is None:
            orders = self._weights_orders(target, fund)
            if isinstance(orders, CommandReply):
                return orders
        else:
            bad = [s for s in sorted(allocation.sleeves)
                   if fund.strategies and s not in fund.strategies]
            if bad:
                return CommandReply(
                    ok=False, code=ReplyCode.STRATEGY_NOT_ALLOWED, ts=now,
                    message=(f"sleeve {bad[0]} may not trade fund {fund.fund_id} (not among "
                             "its strategies); nothing was sent"),
                    context={"strategy_id": bad[0], "strategies": ",".join(bad)[:2000]})
            holdings = self._holdings(fund.fund_id)
            plan = plan_allocation(allocation, holdings=holdings, prices=self.oms.prices,
                                   instruments=self._instruments(
                                       allocation.symbols() | {sym for _s, sym in holdings}))
            try:
                figures = {"crossed": {k: fit_to_domain(v) for k, v in plan.crossed.items()},
                           "gross_shares": fit_to_domain(plan.gross_shares),
                           "net_shares": fit_to_domain(plan.net_shares),
                           "crossed_shares": fit_to_domain(plan.crossed_shares),
                           "crossed_notional": fit_to_domain(plan.crossed_notional)}
            except ValueError as exc:  # sleeves of huge opposite targets: no wire figure
                return CommandReply(
                    ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                    context={"field": "allocation.sleeves"},
                    message=f"allocation.sleeves: the turnover it asks for has no value on "
                            f"the wire ({exc}); nothing was sent"[:4000])
            orders, refused = plan.orders, plan.refused
            transfers = plan.transfers
        return await self._send_all(target, figures, orders, refused, transfers)

    async def _send_all(self, target: TargetPortfolio, figures: Mapping[str, object],
                        orders: list[Order], invalid: Mapping[str, str],
                        transfers: Mapping[str, dict[str, Decimal]]) -> CommandReply:
        """Submit ``orders`` one by one (sells first), book ``transfers``; the reply, its
        payload the report."""
        accepted: dict[str, str] = {}
        booked: dict[str, str] = {}
        codes: dict[str, ReplyCode] = dict.fromkeys(invalid, ReplyCode.VALIDATION_FAILED)
        messages: dict[str, str] = dict(invalid)
        repeated = 0
        for order in orders:
            sym = order.instrument.symbol
            reply = await self.oms.submit(order)
            if reply.ok and reply.order_id:
                accepted[sym] = reply.order_id
                repeated += reply.duplicate
            elif (reply.code is ReplyCode.IDEMPOTENCY_CONFLICT and reply.order_id
                  and reply.status not in _RETRYABLE):
                # The same rebalance (strategy, fund, as_of: the key says so) placed this
                # symbol's order before, and it has filled in part since, so the delta worked
                # out now differs. That order is this rebalance's order: a repeat is a
                # duplicate, never a conflict and never a second order (issue #20).
                accepted[sym] = reply.order_id
                repeated += 1
            else:
                codes[sym] = reply.code or ReplyCode.ORDER_DENIED
                messages[sym] = reply.message or codes[sym].value
        for sym, credits in sorted(transfers.items()):
            done = await self._transfer(target, sym, credits)
            if isinstance(done, str):
                booked[sym] = done
            else:
                codes[sym], messages[sym] = done
        report = parse_message(RebalanceReport, {
            "fund_id": target.fund_id, "as_of": target.as_of, "orders": accepted,
            "transfers": booked, "refused": codes, **figures})
        now = self.oms.clock.now()
        context: dict[str, str | int] = {"orders": len(accepted), "refused": len(codes),
                                         "crossed_shares": str(report.crossed_shares),
                                         "repeated": repeated}
        if not codes:
            return CommandReply(ok=True, payload=report.model_dump_json(), context=context,
                                ts=now)
        first = sorted(codes)[0]
        return CommandReply(
            ok=False, code=codes[first], payload=report.model_dump_json(), context=context,
            ts=now, message=(f"{len(codes)} of {len(codes) + len(accepted)} symbols refused; "
                             f"first {first}: {messages[first]}")[:4000])

    async def _transfer(self, target: TargetPortfolio, sym: str, credits: dict[str, Decimal]
                        ) -> str | tuple[ReplyCode, str]:
        """Book one symbol's internal transfer at the reference price: its id, or the code
        and reason it was refused (no reference price; a sleeve whose trading is not ACTIVE -
        a halted strategy's shares do not change owner either)."""
        price = self.oms.prices.get(sym)
        if price is None:
            return ReplyCode.NO_REFERENCE_PRICE, f"no reference price for {sym} to transfer at"
        state, (scope, scope_id) = self.oms.states.effective_for(target.fund_id,
                                                                 sorted(credits))
        if state is not TradingState.ACTIVE:
            code = (ReplyCode.TRADING_HALTED if state is TradingState.HALTED
                    else ReplyCode.TRADING_STATE_REDUCING)
            return code, f"trading is {state.value} for {scope} {scope_id}"
        stamp = target.as_of.strftime("%Y%m%dT%H%M%S.%f")
        transfer_id = deterministic_id("xfr", target.fund_id, stamp, sym)
        await self.oms.book_transfer(Transfer(transfer_id, target.fund_id, sym, price,
                                              self.oms.clock.now(), credits))
        return transfer_id

    def _weights_orders(self, target: TargetPortfolio, fund: FundConfig
                        ) -> list[Order] | CommandReply:
        """A target without an allocation: orders from its weights (as the rebalance module
        makes them), owned by the target's only source when it names one."""
        owner = target.sources[0] if len(target.sources) == 1 else None
        nav = target.nav or self.oms.nav.get(fund.fund_id)
        try:
            return rebalance(target, fund_id=fund.fund_id,
                             positions=self.oms.positions(fund.fund_id),
                             prices=self.oms.prices, nav=nav, strategy_id=owner,
                             instruments=self._instruments(set(target.weights)))
        except RebalanceError as exc:
            code = (ReplyCode.NO_REFERENCE_PRICE if "symbols" in exc.context
                    else ReplyCode.INVALID_ORDER)
            return CommandReply(ok=False, code=code, message=exc.message[:4000],
                                ts=self.oms.clock.now())
        except ValidationError as exc:  # an order the weights make is no valid order
            errors = describe_errors(exc)
            return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED,
                                ts=self.oms.clock.now(),
                                context={"field": str(errors[0]["field"])[:200]},
                                message="; ".join(f"{e['field']}={e['value']!r}: {e['reason']}"
                                                  for e in errors)[:4000])

    def _holdings(self, fund_id: str) -> dict[tuple[str, str], Decimal]:
        """Each sleeve's current shares: (strategy, symbol) -> signed quantity."""
        return {key: p.quantity for key, p in self.oms.position_states(fund_id).items()
                if p.quantity != 0}

    def _instruments(self, symbols: set[str]) -> dict[str, Instrument]:
        registry = self.oms.instruments
        return {s: registry[s].instrument for s in symbols if s in registry}

    # --- withdrawal -----------------------------------------------------------------------------

    async def withdraw(self, strategy_id: str, reason: str, *, fund_id: str | None = None,
                       swept: bool = False, increasing_only: bool = False) -> Withdrawn:
        """Take ``strategy_id``'s share out of the open orders (of ``fund_id``, or of every
        fund served here). ``swept``: a halt's (or REDUCING's) sweep cancels the orders whose
        ``strategy_id`` is the strategy itself, so they are left to it. ``increasing_only``
        (a strategy-scope REDUCING): only the orders whose share would take the strategy's
        sleeve position further from zero or across it
        (:func:`~mts1b_oms.sleeves.increasing_shares`); a share that only reduces it stays."""
        done = Withdrawn(strategy_id)
        outstanding = self.oms.killswitch.outstanding_order_ids()
        listed_orders = [st for st in self.oms.book.open_orders()
                         if (fund_id is None or st.order.fund_id == fund_id)
                         and st.order.fund_id in self.oms.funds]
        increasing: set[str] | None = None
        if increasing_only:
            book = self.oms.book
            increasing = {st.order_id for st in increasing_shares(
                listed_orders, strategy_id,
                lambda f, sym: book.position((f, strategy_id, sym)).quantity)}
        for listed in listed_orders:
            o = listed.order
            if listed.order_id in outstanding or (swept and o.strategy_id == strategy_id):
                continue
            if increasing is not None and listed.order_id not in increasing:
                continue
            # as it stands now (an earlier withdrawal's replace may have moved it); a fill
            # landing before the replace is judged makes the replace refused (the strategy
            # would still have a share working) and the order is then canceled whole
            state = await self.oms.load_order(listed.order_id)
            plan = None if state is None else withdrawal(state, strategy_id)
            if plan is None:
                continue
            why = f"strategy {strategy_id} withdrawn: {reason}"[:2000]
            if not plan.cancel and plan.quantity is not None:
                reply = await self.oms.replace(ReplaceRequest(
                    order_id=plan.order_id, quantity=plan.quantity, sleeves=plan.sleeves))
                if reply.ok:
                    done.reduced.append(plan.order_id)
                    continue
                _log.warning("withdrawal replace refused; canceling the order",
                             order_id=plan.order_id, code=str(reply.code))
            reply = await self.oms.cancel(plan.order_id, why)
            if reply.ok:
                done.canceled.append(plan.order_id)
            else:
                done.failed[plan.order_id] = reply.code or ReplyCode.CANCEL_REJECTED
        if done.canceled or done.reduced or done.failed:
            _log.warning("strategy withdrawn from open orders", strategy_id=strategy_id,
                         canceled=len(done.canceled), reduced=len(done.reduced),
                         failed=len(done.failed))
        return done

    async def withdraw_stopped(self) -> list[Withdrawn]:
        """Withdraw every halted strategy, the increasing shares of every REDUCING strategy
        and every strategy a fund no longer lists (at start: what a crash interrupted is
        finished)."""
        out = []
        for (scope, scope_id), state in self.oms.states:
            if scope == "strategy" and state is TradingState.HALTED:
                out.append(await self.withdraw(scope_id, "strategy halted", swept=True))
            elif scope == "strategy" and state is TradingState.REDUCING:
                out.append(await self.withdraw(scope_id, "strategy reducing", swept=True,
                                               increasing_only=True))
        for fund in list(self.oms.funds.values()):
            out += await self._withdraw_unlisted(fund)
        return out

    async def _withdraw_unlisted(self, fund: FundConfig) -> list[Withdrawn]:
        if not fund.strategies:
            return []
        names = {s for st in self.oms.book.open_orders() if st.order.fund_id == fund.fund_id
                 for s in (set(st.order.sleeves) or {st.order.strategy_id})}
        return [await self.withdraw(s, "no longer among the fund's strategies",
                                    fund_id=fund.fund_id)
                for s in sorted(names - set(fund.strategies))]

    async def update_fund(self, config: FundConfig) -> list[Withdrawn]:
        """Take a fund's new configuration; a strategy it no longer lists is withdrawn from
        the fund's open orders at once (the permissions gate refuses its new orders)."""
        if config.fund_id not in self.oms.funds:
            raise KeyError(f"fund {config.fund_id} is not served here")
        self.oms.funds[config.fund_id] = config
        return await self._withdraw_unlisted(config)


def _valid_target(raw: object, now: dt.datetime) -> TargetPortfolio | CommandReply:
    """``raw`` validated again in full (one built by ``model_construct`` is refused like bad
    JSON), or ``VALIDATION_FAILED`` naming the first field."""
    if not isinstance(raw, TargetPortfolio):
        return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                            message=f"expected a TargetPortfolio, got {type(raw).__name__}")
    try:
        return parse_message(TargetPortfolio, raw.model_dump(warnings=False))
    except ValidationFailed as exc:
        errors = exc.context.get("errors") or [{}]
        return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                            message=exc.message[:4000],
                            context={"field": str(errors[0].get("field", "<root>"))[:200]})
    except Exception as exc:  # fields that are not even the right types
        return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                            message=f"not a valid TargetPortfolio ({type(exc).__name__})")
