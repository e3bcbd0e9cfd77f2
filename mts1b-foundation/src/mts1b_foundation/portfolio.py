"""Research output and fund configuration: signals, targets, strategies, funds, risk limits."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Self

from pydantic import Field, model_validator

from mts1b_foundation.enums import StrategyState, TaxLotMethod, TradingState
from mts1b_foundation.symbols import Symbol
from mts1b_foundation.wire import (
    Context,
    ContextValue,
    Identifier,
    Money,
    NonNegativeDecimal,
    PositiveDecimal,
    ScopeId,
    UtcDatetime,
    WireModel,
)

__all__ = [
    "AccountSnapshot",
    "Allocation",
    "FundConfig",
    "RiskEnvelope",
    "Signal",
    "StrategySpec",
    "TargetPortfolio",
    "TradingStateChange",
]

Weights = dict[Symbol, Money]
"""Target weight per symbol as a fraction of NAV (signed: negative is short)."""

ParamValue = int | float | str | bool
JsonValue = ContextValue | list[ContextValue] | dict[str, ContextValue]


def _default_sizing() -> dict[str, JsonValue]:
    return {"method": "equal_weight_long"}


class Signal(WireModel):
    """One strategy's target weights at one rebalance, with its research statistics."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    strategy_id: Identifier
    as_of: UtcDatetime
    weights: Weights
    ic: float | None = None
    t_stat: float | None = None
    metadata: Context = Field(default_factory=dict)


class TargetPortfolio(WireModel):
    """A fund's combined target (all sleeves) that the OMS turns into order deltas."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    fund_id: Identifier
    as_of: UtcDatetime
    weights: Weights
    nav: PositiveDecimal | None = None
    sources: list[Identifier] = Field(default_factory=list)

    @property
    def gross(self) -> Decimal:
        return sum((abs(w) for w in self.weights.values()), Decimal(0))

    @property
    def net(self) -> Decimal:
        return sum(self.weights.values(), Decimal(0))


class StrategySpec(WireModel):
    """A named application of a factor: parameters, universe, sizing and rebalance schedule."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    name: Identifier
    factor: Annotated[str, Field(pattern=r"^f_[A-Za-z0-9_]+$")]
    params: dict[str, ParamValue] = Field(default_factory=dict)
    universe: Identifier | list[Identifier]
    sizing: dict[str, JsonValue] = Field(default_factory=_default_sizing)
    rebalance: Identifier = "daily"
    state: StrategyState = StrategyState.DISABLED

    @model_validator(mode="after")
    def _sizing_has_method(self) -> StrategySpec:
        if not isinstance(self.sizing.get("method"), str):
            raise ValueError("sizing needs a 'method' name, e.g. {'method': 'equal_weight_long'}")
        return self


class RiskEnvelope(WireModel):
    """Every limit the OMS's pre-trade gates read for one fund. ``None`` disables a limit.

    Percentages are fractions (``0.05`` is 5 %). Exposures are multiples of NAV.
    """

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    allowed_brokers: list[Identifier] = Field(default_factory=list)
    restricted_symbols: list[Symbol] = Field(default_factory=list)
    duplicate_window_seconds: NonNegativeDecimal = Decimal(5)
    price_collar_pct: PositiveDecimal | None = Decimal("0.05")
    max_order_quantity: PositiveDecimal | None = None
    max_order_notional: PositiveDecimal | None = None
    max_adv_pct: PositiveDecimal | None = None
    max_position_pct_nav: PositiveDecimal | None = None
    max_gross_exposure: PositiveDecimal | None = None
    max_net_exposure: PositiveDecimal | None = None
    max_drawdown_pct: PositiveDecimal | None = None
    drawdown_action: TradingState = TradingState.HALTED
    max_messages_per_window: int | None = Field(default=None, gt=0)
    message_window_seconds: PositiveDecimal = Decimal(1)
    max_repeated_executions: int | None = Field(default=None, gt=0)
    repeated_window_seconds: PositiveDecimal = Decimal(60)

    @model_validator(mode="after")
    def _drawdown_action(self) -> RiskEnvelope:
        if self.drawdown_action is TradingState.ACTIVE:
            raise ValueError("drawdown_action must be HALTED or REDUCING, not ACTIVE")
        return self

    @classmethod
    def unrestricted(cls) -> RiskEnvelope:
        """No limits at all: what a backtrader strategy implicitly assumes (see the migration
        guide). Useful to reproduce a backtest, never for live money."""
        return cls(price_collar_pct=None, duplicate_window_seconds=Decimal(0))


class FundConfig(WireModel):
    """A NAV-attributed sub-account: its broker, the strategies writing to it, its limits."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    fund_id: Identifier
    name: str = Field(min_length=1, max_length=200)
    target_nav_usd: PositiveDecimal
    broker: Identifier
    broker_account_id: Identifier
    strategies: list[Identifier] = Field(default_factory=list)
    risk: RiskEnvelope = Field(default_factory=RiskEnvelope)
    tax_lot_method: TaxLotMethod = TaxLotMethod.FIFO
    base_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class Allocation(WireModel):
    """Capital the treasury assigns to a fund (and optionally to one strategy sleeve)."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    fund_id: Identifier
    strategy_id: Identifier | None = None
    as_of: UtcDatetime
    amount_usd: NonNegativeDecimal
    reason: str | None = Field(default=None, max_length=2000)


class TradingScope(WireModel):
    """Who a kill-switch state applies to, and who set it why (shared by command and event).

    ``scope`` is ``global`` (with ``scope_id="*"``), ``fund`` or ``strategy`` (with its id).
    """

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    scope: Annotated[str, Field(pattern=r"^(global|fund|strategy)$")]
    scope_id: ScopeId = "*"
    state: TradingState
    actor: Identifier
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _scope_id(self) -> Self:
        if (self.scope == "global") != (self.scope_id == "*"):
            raise ValueError("scope_id must be '*' exactly when scope is 'global'")
        return self


class TradingStateChange(TradingScope):
    """A kill-switch change that happened (the event on ``mts.v1.oms.state.changed``)."""

    ts: UtcDatetime


class AccountSnapshot(WireModel):
    """A broker account's cash, buying power and positions at one instant."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    broker: Identifier
    account_id: Identifier
    cash: Money
    buying_power: Money
    equity: Money
    positions: dict[Symbol, Money] = Field(default_factory=dict)
    as_of: UtcDatetime
