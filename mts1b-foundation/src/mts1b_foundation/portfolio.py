"""Research output and fund configuration: signals, targets, strategies, funds, risk limits."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mts1b_foundation.enums import ReplyCode, StrategyState, TaxLotMethod, TradingState
from mts1b_foundation.operations import Sha256Hex
from mts1b_foundation.sleeves import MAX_SLEEVES, exact_sum
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
    _domain_schema,
    _wire_decimal,
    check_wire_decimal,
)

__all__ = [
    "DEFAULT_ORDER_NOTIONAL_PCT_NAV",
    "UNLIMITED",
    "AccountSnapshot",
    "Allocation",
    "CountLimit",
    "FundConfig",
    "FundNav",
    "Limit",
    "RebalanceReport",
    "RiskEnvelope",
    "Signal",
    "SleeveAllocation",
    "StrategySpec",
    "StrategyTransition",
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
    """One strategy's target weights at one rebalance, with its research statistics.

    Version 3 adds the trailing statistics of the strategy's past signals against the realised
    ``horizon``-session returns over the last ``sessions`` sessions: ``ic`` (Pearson) and
    ``rank_ic`` (Spearman) averaged over those sessions, ``hit_rate`` (the share of names whose
    weight had the sign of their return), and ``t_stat`` of the mean IC with a Newey-West
    variance of lag ``horizon - 1`` (overlapping returns make neighbouring ICs correlated; the
    plain t-stat overstates significance by about the square root of the horizon);
    ``p_value`` the two-sided p-value of the mean IC over sessions ``horizon`` apart (their
    returns do not overlap), the significance call (``< 0.05``) that holds its size.
    ``mode`` says where it was published: ``live`` (mts.v1.research.signals.published, which the
    composer reads) or ``shadow`` (mts.v1.research.signals.shadow, which it never reads).
    Versions 1 and 2 read with ``mode`` live and no trailing statistics beyond ``ic``/``t_stat``.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    strategy_id: Identifier
    as_of: UtcDatetime
    weights: Weights
    ic: float | None = None
    rank_ic: float | None = None
    hit_rate: float | None = Field(default=None, ge=0, le=1)
    t_stat: float | None = None
    p_value: float | None = Field(default=None, ge=0, le=1)
    horizon: int = Field(default=1, ge=1, le=252)
    sessions: int = Field(default=0, ge=0)
    mode: Literal["live", "shadow"] = "live"
    strategy_version: int = Field(default=1, ge=1)
    metadata: Context = Field(default_factory=dict)


def _exact_totals(sleeves: dict[str, dict[str, Decimal]]) -> dict[str, Decimal]:
    per_symbol: dict[str, list[Decimal]] = {}
    for targets in sleeves.values():
        for symbol, shares in targets.items():
            per_symbol.setdefault(symbol, []).append(shares)
    return {symbol: exact_sum(values) for symbol, values in sorted(per_symbol.items())}


class SleeveAllocation(WireModel):
    """Who owns what in a composed fund: target shares per sleeve (strategy) per symbol.

    Why it travels with the target: weights say what the fund should hold, not which strategy
    holds it. With this, the OMS tags each order with the sleeves it serves and splits each
    fill across them, so positions, PnL and NAV can be split by strategy downstream, and a
    halted strategy's share can be found and canceled (issue #17).

    ``sleeves`` maps a strategy id to that sleeve's whole target: symbol -> signed shares
    (negative is short). A symbol a listed sleeve leaves out is a target of 0 for it (its
    holding is closed); a sleeve the allocation does not list is not traded at all (a halted
    or removed strategy keeps what it holds until someone decides otherwise). The fund's target
    in a symbol is the sum over sleeves (:meth:`total`, :meth:`totals`); each such sum must lie
    in the numeric domain too.
    """

    SCHEMA_VERSION = 1

    fund_id: Identifier
    as_of: UtcDatetime
    sleeves: Annotated[dict[Identifier, dict[Symbol, Money]],
                       Field(min_length=1, max_length=MAX_SLEEVES)]

    @field_validator("sleeves")
    @classmethod
    def _totals_in_domain(cls, sleeves: dict[str, dict[str, Decimal]]) -> dict[
            str, dict[str, Decimal]]:
        for symbol, amount in _exact_totals(sleeves).items():
            try:
                check_wire_decimal(amount)
            except ValueError as exc:
                raise ValueError(f"the fund's total of {symbol!r} over all sleeves ({amount}) "
                                 f"leaves the numeric domain: {exc}") from None
        return sleeves

    def totals(self) -> dict[str, Decimal]:
        """The fund's target shares per symbol: the sum over sleeves (sorted by symbol)."""
        return _exact_totals(self.sleeves)

    def total(self, symbol: str) -> Decimal:
        """The fund's target shares of ``symbol`` (0 when no sleeve names it)."""
        return exact_sum([t[symbol] for t in self.sleeves.values() if symbol in t])

    def symbols(self) -> set[str]:
        """Every symbol some sleeve names."""
        return {symbol for targets in self.sleeves.values() for symbol in targets}


class TargetPortfolio(WireModel):
    """A fund's combined target (all sleeves) that the OMS turns into order deltas.

    ``allocation`` (optional) says which sleeve owns which shares of the target. When it is
    present the OMS trades each listed sleeve to its shares (the weights then describe the
    result; they are not turned into quantities again). Its ``fund_id`` must be the target's.

    Versions: 3 added ``allocation``; 1 and 2 read without one.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    fund_id: Identifier
    as_of: UtcDatetime
    weights: Weights
    nav: PositiveDecimal | None = None
    sources: list[Identifier] = Field(default_factory=list)
    allocation: SleeveAllocation | None = None

    @field_validator("allocation")
    @classmethod
    def _allocation_of_this_fund(cls, allocation: SleeveAllocation | None,
                                 info: ValidationInfo) -> SleeveAllocation | None:
        fund_id = info.data.get("fund_id")
        if allocation is not None and fund_id is not None and allocation.fund_id != fund_id:
            raise ValueError(f"allocation.fund_id {allocation.fund_id!r} differs from "
                             f"fund_id {fund_id!r}")
        return allocation

    @property
    def gross(self) -> Decimal:
        return sum((abs(w) for w in self.weights.values()), Decimal(0))

    @property
    def net(self) -> Decimal:
        return sum(self.weights.values(), Decimal(0))


class RebalanceReport(WireModel):
    """What a rebalance of a composed target did: its orders, its refusals, what crossed.

    The payload of the OMS's reply to ``mts.v1.oms.commands.rebalance``. ``orders`` holds the
    order id accepted per symbol (a repeat of the same target names the same orders);
    ``transfers`` the internal transfer booked per symbol whose sleeve deltas net to zero (the
    shares change owner at the reference price, nothing goes to the venue); ``refused`` the
    code per symbol whose order or transfer a gate or the OMS refused.

    Crossing: when one sleeve buys what another sells, the fund trades only the net. Per
    symbol, ``crossed`` is the quantity netted away, ``(sum |sleeve delta| - |net|) / 2``
    shares (what each side would have traded with the venue and did not); ``gross_shares`` is
    the sleeves' summed ``|delta|``, ``net_shares`` the fund's summed ``|order quantity|``, and
    ``crossed_notional`` the crossed shares at the reference prices used (the turnover saved is
    twice that: both sides' trades). Exact decimals.
    """

    SCHEMA_VERSION = 1

    fund_id: Identifier
    as_of: UtcDatetime
    orders: dict[Symbol, Identifier] = Field(default_factory=dict)
    transfers: dict[Symbol, Identifier] = Field(default_factory=dict)
    refused: dict[Symbol, ReplyCode] = Field(default_factory=dict)
    crossed: dict[Symbol, NonNegativeDecimal] = Field(default_factory=dict)
    gross_shares: NonNegativeDecimal = Decimal(0)
    net_shares: NonNegativeDecimal = Decimal(0)
    crossed_shares: NonNegativeDecimal = Decimal(0)
    crossed_notional: NonNegativeDecimal = Decimal(0)


class StrategySpec(WireModel):
    """A named application of a factor: parameters, universe, sizing, rebalance schedule, and
    the fund and sleeve capital it trades with.

    Version 3: ``version`` (the registry numbers each registered change of a strategy),
    ``fund_id`` and ``capital_usd`` (the sleeve's capital in that fund), ``horizon`` (the
    sessions its signal is meant to predict; its statistics use it), and the registry's states
    (:class:`StrategyState`). Versions 1 and 2 read as version 1 of the strategy with no fund,
    their ``enabled`` state as ``live`` and ``disabled``/``shadow`` as they were.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    name: Identifier
    version: int = Field(default=1, ge=1)
    factor: Annotated[str, Field(pattern=r"^f_[A-Za-z0-9_]+$")]
    params: dict[str, ParamValue] = Field(default_factory=dict)
    universe: Identifier | list[Identifier]
    sizing: dict[str, JsonValue] = Field(default_factory=_default_sizing)
    rebalance: Identifier = "daily"
    horizon: int = Field(default=1, ge=1, le=252)
    fund_id: Identifier | None = None
    capital_usd: NonNegativeDecimal | None = None
    state: StrategyState = StrategyState.DRAFT

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """v1/v2 -> v3: ``enabled`` (the old "it trades") reads as ``live``; a spec of those
        versions that named no state was ``disabled``, as their default said."""
        state = data.get("state", "disabled")
        data["state"] = "live" if state == "enabled" else state
        return data

    @model_validator(mode="after")
    def _sizing_has_method(self) -> StrategySpec:
        if not isinstance(self.sizing.get("method"), str):
            raise ValueError("sizing needs a 'method' name, e.g. {'method': 'equal_weight_long'}")
        return self


class StrategyTransition(WireModel):
    """A strategy's state change as the research registry committed it, for the audit chain.

    ``actor`` is who the registry authenticated (a signed key's registered name, or the
    administrator of its database), ``roles`` what that actor held; ``transition_id`` numbers
    the registry's changes (a consumer can tell a repeat from a new one).
    """

    SCHEMA_VERSION = 1

    transition_id: int = Field(ge=1)
    strategy: Identifier
    version: int = Field(ge=1)
    from_state: StrategyState
    to_state: StrategyState
    actor: Identifier
    roles: list[Identifier] = Field(default_factory=list)
    reason: str | None = Field(default=None, max_length=2000)
    ts: UtcDatetime


UNLIMITED: Final = "unlimited"
"""The one way to lift a limit of a :class:`RiskEnvelope`: the literal text ``"unlimited"``."""

DEFAULT_ORDER_NOTIONAL_PCT_NAV: Final = Decimal("0.10")
"""``max_order_notional`` of a fund that sets none: 10 % of its ``target_nav_usd``."""

_NULL_REFUSED = ('null does not lift a limit: write "unlimited" to lift it, or leave the '
                 "field out for its default")


def _limit(value: object) -> Decimal | str:
    """A limit: a wire decimal above 0, or ``"unlimited"``. ``None`` is refused (it used to
    switch a limit off; now only the explicit word does)."""
    if isinstance(value, str) and value == UNLIMITED:
        return UNLIMITED
    if value is None:
        raise ValueError(_NULL_REFUSED)
    number = _wire_decimal(value)
    if number <= 0:
        raise ValueError('a limit must be > 0, or "unlimited"')
    return number


def _count_limit(value: object) -> int | str:
    """A count limit: a JSON integer from 1 to 2**63-1, or ``"unlimited"``."""
    if isinstance(value, str) and value == UNLIMITED:
        return UNLIMITED
    if value is None:
        raise ValueError(_NULL_REFUSED)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ValueError('a count limit is an integer from 1 to 2**63-1, or "unlimited"')
    return value


_UNLIMITED_SCHEMA = {"const": UNLIMITED, "type": "string"}
Limit = Annotated[
    Decimal | Literal["unlimited"],
    PlainValidator(_limit),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [*_domain_schema("").json_schema["anyOf"], _UNLIMITED_SCHEMA],
                    "description": 'A decimal > 0 in the numeric domain, or "unlimited"'}),
]
"""A limit of a :class:`RiskEnvelope`: a decimal above 0, or ``"unlimited"`` (never null)."""
CountLimit = Annotated[
    int | Literal["unlimited"],
    PlainValidator(_count_limit),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                              _UNLIMITED_SCHEMA],
                    "description": 'An integer >= 1, or "unlimited"'}),
]
"""A limit on a count (orders per window): an integer above 0, or ``"unlimited"``."""

_LIMITS = ("price_collar_pct", "max_order_quantity", "max_order_notional", "max_adv_pct",
           "max_position_pct_nav", "max_gross_exposure", "max_net_exposure",
           "max_drawdown_pct", "max_messages_per_window", "max_repeated_executions")


class RiskEnvelope(WireModel):
    """Every limit the OMS's pre-trade gates read for one fund.

    Every limit is a positive number or the literal ``"unlimited"``, the only way to lift one;
    ``null`` is refused (it used to mean "off"). The sanity limits are finite by default, so
    a fund configured with ``{}`` cannot send an absurd order: at most 1,000,000 units
    (``max_order_quantity``), a notional of at most 10 % of the fund's target NAV
    (``max_order_notional``; its default is relative, written ``None``), a position of at most
    25 % of NAV (``max_position_pct_nav``), prices within 5 % of the reference
    (``price_collar_pct``). The other limits need data the OMS may not have (average daily
    volume, a NAV history) or a fund's own policy (exposure, throttles): they are
    ``"unlimited"`` until a fund sets them.

    Percentages are fractions (``0.05`` is 5 %). Exposures are multiples of NAV.

    Versions: 3 made the limits above finite by default and replaced ``null`` with
    ``"unlimited"``. A version 1 or 2 envelope is read with each ``null`` limit taken as
    *the version-3 default* - the finite one where there is one (``null`` quantity, notional,
    position or collar limits become 1,000,000 units, 10 % of target NAV, 25 % and 5 %) and
    never as "unlimited" unless that is the default (ADV, exposure, drawdown and the
    throttles, which ``null`` switched off before too).
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    allowed_brokers: list[Identifier] = Field(default_factory=list)
    restricted_symbols: list[Symbol] = Field(default_factory=list)
    duplicate_window_seconds: NonNegativeDecimal = Decimal(5)
    price_collar_pct: Limit = Decimal("0.05")
    max_order_quantity: Limit = Decimal(1_000_000)
    max_order_notional: Limit | None = None
    """Largest notional of one order; ``None`` (the default): 10 % of the fund's
    ``target_nav_usd`` (:meth:`order_notional_limit`)."""
    max_adv_pct: Limit = UNLIMITED
    max_position_pct_nav: Limit = Decimal("0.25")
    max_gross_exposure: Limit = UNLIMITED
    max_net_exposure: Limit = UNLIMITED
    max_drawdown_pct: Limit = UNLIMITED
    drawdown_action: TradingState = TradingState.HALTED
    max_messages_per_window: CountLimit = UNLIMITED
    message_window_seconds: PositiveDecimal = Decimal(1)
    max_repeated_executions: CountLimit = UNLIMITED
    repeated_window_seconds: PositiveDecimal = Decimal(60)

    @model_validator(mode="after")
    def _drawdown_action(self) -> RiskEnvelope:
        if self.drawdown_action is TradingState.ACTIVE:
            raise ValueError("drawdown_action must be HALTED or REDUCING, not ACTIVE")
        return self

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """v1/v2 -> v3: a ``null`` limit meant "off"; it now reads as the version-3 default
        (the key is dropped; ``max_order_notional: null`` is that default already), so an
        old configuration never gains an unlimited limit it did not ask for by name."""
        for name in _LIMITS:
            if name != "max_order_notional" and name in data and data[name] is None:
                del data[name]
        return data

    @classmethod
    def unrestricted(cls) -> RiskEnvelope:
        """No limits at all: what a backtrader strategy implicitly assumes (see the migration
        guide). Useful to reproduce a backtest, never for live money."""
        return cls(duplicate_window_seconds=Decimal(0), **dict.fromkeys(_LIMITS, UNLIMITED))

    def order_notional_limit(self, target_nav: Decimal) -> Decimal | None:
        """The largest notional of one order for a fund whose target NAV is ``target_nav``:
        ``max_order_notional``, by default 10 % of ``target_nav``; ``None`` when unlimited."""
        limit = self.max_order_notional
        if limit is None:
            return target_nav * DEFAULT_ORDER_NOTIONAL_PCT_NAV
        return None if limit == UNLIMITED else Decimal(limit)

    def effective(self, target_nav: Decimal) -> dict[str, str]:
        """Each limit as it applies to a fund of ``target_nav`` (for logs and reports):
        the number, ``"unlimited"``, or the notional default worked out."""
        out: dict[str, str] = {}
        for name in _LIMITS:
            value = getattr(self, name)
            if name == "max_order_notional":
                amount = self.order_notional_limit(target_nav)
                out[name] = (UNLIMITED if amount is None else
                             f"{amount} (10% of target NAV {target_nav})" if value is None
                             else str(amount))
            else:
                out[name] = str(value)
        return out


class FundConfig(WireModel):
    """A NAV-attributed sub-account: its broker, the strategies writing to it, its limits.

    Version 3: its ``risk`` is a version-3 :class:`RiskEnvelope` (finite default limits);
    versions 1 and 2 read as they were, their envelopes upgraded as that class says.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    fund_id: Identifier
    name: str = Field(min_length=1, max_length=200)
    target_nav_usd: PositiveDecimal
    broker: Identifier
    broker_account_id: Identifier
    strategies: list[Identifier] = Field(default_factory=list)
    risk: RiskEnvelope = Field(default_factory=RiskEnvelope)
    tax_lot_method: TaxLotMethod = TaxLotMethod.FIFO
    base_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"

    def effective_limits(self) -> dict[str, str]:
        """The fund's limits as the gates apply them (:meth:`RiskEnvelope.effective`)."""
        return self.risk.effective(self.target_nav_usd)


class FundNav(WireModel):
    """A fund's net asset value struck at one session close, and why it moved.

    The treasury strikes it from the fund's cash and positions (not its tax lots) at the
    calendar's close with the datalake's marks. ``nav = cash + positions_value``; the change
    from ``previous_nav`` is ``pnl + flows`` exactly, where ``pnl`` is market moves, realised
    gains, dividends less ``fees`` (commissions, borrow), and ``flows`` the capital that came in
    (positive) or went out. ``pnl_by_strategy`` attributes ``pnl`` to the sleeves that owned the
    shares (the composer's ownership); ``unattributed`` is what no sleeve owned. The
    ``inputs_sha256`` / ``outputs_sha256`` digests make a strike reproducible: striking the same
    day again from the same inputs gives the same bits.
    """

    SCHEMA_VERSION = 1

    fund_id: Identifier
    session: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    as_of: UtcDatetime
    nav: Money
    previous_nav: Money
    cash: Money
    positions_value: Money
    pnl: Money
    fees: Money = Decimal(0)
    flows: Money = Decimal(0)
    pnl_by_strategy: dict[Identifier, Money] = Field(default_factory=dict)
    unattributed: Money = Decimal(0)
    positions: int = Field(default=0, ge=0)
    inputs_sha256: Sha256Hex
    outputs_sha256: Sha256Hex

    @model_validator(mode="after")
    def _adds_up(self) -> Self:
        if self.cash + self.positions_value != self.nav:
            raise ValueError(f"nav {self.nav} differs from cash {self.cash} + positions_value "
                             f"{self.positions_value}")
        if self.previous_nav + self.pnl + self.flows != self.nav:
            raise ValueError(f"nav {self.nav} differs from previous_nav {self.previous_nav} + "
                             f"pnl {self.pnl} + flows {self.flows}")
        attributed = sum(self.pnl_by_strategy.values(), Decimal(0)) + self.unattributed
        if attributed != self.pnl:
            raise ValueError(f"pnl_by_strategy and unattributed sum to {attributed}, "
                             f"not pnl {self.pnl}")
        return self


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
