"""Which of a fund's limits a new configuration loosens.

Why this matters: the treasury accepts a fund's new configuration from anyone allowed to
configure funds, but a change that lets the fund take MORE risk - a higher limit, a limit
lifted to ``"unlimited"``, a larger target NAV (the order-notional default is 10 % of it), a
broker added, a restricted symbol freed, a shorter duplicate window, a drawdown that only
reduces instead of halting - needs the ``risk`` role, as resuming trading does in the OMS.
Tightening never needs it. The comparison is on the limits as the gates apply them.
"""

from __future__ import annotations

from decimal import Decimal

from mts1b_foundation import UNLIMITED, FundConfig, RiskEnvelope, TradingState

__all__ = ["NUMERIC_LIMITS", "loosened_limits"]

NUMERIC_LIMITS = ("price_collar_pct", "max_order_quantity", "max_order_notional", "max_adv_pct",
                  "max_position_pct_nav", "max_gross_exposure", "max_net_exposure",
                  "max_drawdown_pct", "max_messages_per_window", "max_repeated_executions")
"""The envelope's limits where a larger number lets more through ("unlimited" is largest)."""

_INFINITY = Decimal("Infinity")


def _applied(envelope: RiskEnvelope, name: str, target_nav: Decimal) -> Decimal:
    """The limit ``name`` as a number the gates compare against (infinite when unlimited)."""
    if name == "max_order_notional":
        amount = envelope.order_notional_limit(target_nav)
        return _INFINITY if amount is None else amount
    value = getattr(envelope, name)
    return _INFINITY if value == UNLIMITED else Decimal(value)


def _rate(envelope: RiskEnvelope, count: str, window: str) -> Decimal:
    """Messages (or executions) per second a throttle lets through."""
    limit = getattr(envelope, count)
    if limit == UNLIMITED:
        return _INFINITY
    return Decimal(limit) / Decimal(getattr(envelope, window))


def loosened_limits(old: FundConfig, new: FundConfig) -> list[str]:
    """The names of what ``new`` loosens compared with ``old`` (empty: nothing), sorted."""
    a, b = old.risk, new.risk
    out = [name for name in NUMERIC_LIMITS
           if _applied(b, name, new.target_nav_usd) > _applied(a, name, old.target_nav_usd)]
    if new.target_nav_usd > old.target_nav_usd:
        out.append("target_nav_usd")
    if a.allowed_brokers and (not b.allowed_brokers  # an empty list allows every broker
                              or set(b.allowed_brokers) - set(a.allowed_brokers)):
        out.append("allowed_brokers")
    if set(a.restricted_symbols) - set(b.restricted_symbols):
        out.append("restricted_symbols")
    if b.duplicate_window_seconds < a.duplicate_window_seconds:
        out.append("duplicate_window_seconds")
    if a.drawdown_action is TradingState.HALTED and b.drawdown_action is not TradingState.HALTED:
        out.append("drawdown_action")
    if _rate(b, "max_messages_per_window", "message_window_seconds") > _rate(
            a, "max_messages_per_window", "message_window_seconds"):
        out.append("message_window_seconds")
    if _rate(b, "max_repeated_executions", "repeated_window_seconds") > _rate(
            a, "max_repeated_executions", "repeated_window_seconds"):
        out.append("repeated_window_seconds")
    return sorted(set(out))
