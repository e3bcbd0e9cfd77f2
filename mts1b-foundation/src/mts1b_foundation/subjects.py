"""The subject registry: which model travels on which NATS subject.

Subjects read ``mts.v1.<domain>.<entity>.<event>``; a ``*`` in a registered pattern matches one
token (a symbol, a broker name). Every publisher checks the registry, so a consumer subscribed
to a subject can rely on the model it will decode, and a new subject is a reviewed change here.

Per-symbol subjects (``mts.v1.datalake.bars|quotes|trades|actions.<token>``) carry the symbol as
:func:`~mts1b_foundation.symbols.symbol_to_token` writes it (``BRK.B`` -> ``BRK_2EB``), built
by :func:`symbol_subject` and read back by :func:`symbol_of_subject`; a message published there
must be about that very symbol.

Events live in one JetStream stream per domain (:data:`STREAMS`). Commands
(``mts.v1.<domain>.commands.*`` and broker commands) are request/reply and are *not* stored:
a stream capturing a command subject would answer the request with its own publish ack.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mts1b_foundation.answers import CommandAnswered
from mts1b_foundation.commands import (
    BrokerQuery,
    CancelOrder,
    ConfigureFund,
    HaltTrading,
    OrderStatusQuery,
    ReduceTrading,
    ReplaceOrder,
    ResumeTrading,
    SetTradingState,
    StrategyCommand,
    SubmitOrder,
)
from mts1b_foundation.enums import OrderEventType
from mts1b_foundation.errors import SubjectError
from mts1b_foundation.market_data import Bar, ClockTick, CorporateAction, Quote, Trade
from mts1b_foundation.operations import (
    Alert,
    AuditCheckpoint,
    AuditRecord,
    DeadLetter,
    Heartbeat,
)
from mts1b_foundation.orders import ExecutionReport, Fill, OrderEvent, Position
from mts1b_foundation.portfolio import (
    AccountSnapshot,
    Allocation,
    FundConfig,
    FundNav,
    Signal,
    StrategyTransition,
    TargetPortfolio,
    TradingStateChange,
)
from mts1b_foundation.symbols import symbol_to_token, token_to_symbol
from mts1b_foundation.wire import WireModel

__all__ = [
    "PREFIX",
    "REPLAY_CLOCK_BUCKET",
    "STREAMS",
    "SYMBOL_ENTITIES",
    "TREASURY_FUNDS_BUCKET",
    "SubjectSpec",
    "check_publishable",
    "dlq_subject",
    "domain_of",
    "is_command",
    "iter_subjects",
    "matches",
    "model_for_subject",
    "stream_name",
    "subject",
    "symbol_of_subject",
    "symbol_subject",
    "validate_subject",
]

PREFIX = "mts.v1"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
REPLAY_CLOCK_BUCKET = "replay_clock"
"""The KV bucket where a lockstep replay keeps its current :class:`ClockTick` (key ``tick``)
before handing it out, so a service that restarts mid-replay starts on the replay's time."""
TREASURY_FUNDS_BUCKET = "treasury_funds"
"""The JetStream key/value bucket (namespaced like streams) where the treasury keeps each open
fund's current :class:`~mts1b_foundation.FundConfig` under its fund id (a closed fund's key is
deleted); the OMS loads its funds from it and follows its changes. A contract between two
layer-3 libraries that may not import each other, so it lives here."""
SYMBOL_ENTITIES = ("bars", "quotes", "trades", "actions")
"""Entities of ``mts.v1.datalake.<entity>.<symbol token>``: one subject per symbol."""


@dataclass(frozen=True, slots=True)
class SubjectSpec:
    """One registered subject pattern, its model, and whether it is stored in a stream."""

    pattern: str
    model: type[WireModel]
    stored: bool
    description: str


def _spec(pattern: str, model: type[WireModel], description: str, *, stored: bool = True) -> (
    SubjectSpec
):
    return SubjectSpec(pattern, model, stored, description)


_REGISTRY: tuple[SubjectSpec, ...] = (
    # datalake: market data (replay and live feeds), one subject per symbol
    _spec("mts.v1.datalake.bars.*", Bar, "OHLCV bar for the symbol in the last token"),
    _spec("mts.v1.datalake.quotes.*", Quote, "top of book for the symbol in the last token"),
    _spec("mts.v1.datalake.trades.*", Trade, "tape print for the symbol in the last token"),
    _spec("mts.v1.datalake.actions.*", CorporateAction,
          "a split or dividend of the symbol in the last token, effective at its ex-date's open"),
    # a lockstep replay's clock, handed to each service on it (the last token names it)
    _spec("mts.v1.clock.tick.*", ClockTick, "a replay session is over: finish it, then answer",
          stored=False),
    # research and portfolio
    _spec("mts.v1.research.signals.published", Signal, "a strategy's target weights"),
    _spec("mts.v1.research.signals.shadow", Signal,
          "a shadow strategy's target weights (never composed or traded)"),
    _spec("mts.v1.research.strategies.changed", StrategyTransition,
          "a strategy's state change in the research registry"),
    _spec("mts.v1.research.commands.strategy", StrategyCommand,
          "signed promote/enable of a strategy (risk role to go live)", stored=False),
    _spec("mts.v1.portfolio.targets.published", TargetPortfolio, "a fund's combined target"),
    _spec("mts.v1.treasury.allocations.published", Allocation, "capital assigned to a fund"),
    _spec("mts.v1.treasury.funds.updated", FundConfig,
          "a fund's configuration as the treasury (its system of record) now holds it"),
    _spec("mts.v1.treasury.nav.struck", FundNav, "a fund's NAV struck at a session close"),
    _spec("mts.v1.treasury.commands.configure", ConfigureFund,
          "signed fund configuration (role operations; risk to loosen a limit)", stored=False),
    # oms: order lifecycle events, one subject per event type
    *(
        _spec(f"mts.v1.oms.orders.{e.value}", OrderEvent, f"order event '{e.value}'")
        for e in OrderEventType
    ),
    _spec("mts.v1.oms.fills.recorded", Fill, "a fill applied to positions (once per trade_id)"),
    _spec("mts.v1.oms.positions.updated", Position, "a position after a fill or reconciliation"),
    _spec("mts.v1.oms.state.changed", TradingStateChange, "kill switch / trading state change"),
    _spec("mts.v1.oms.commands.submit", SubmitOrder, "submit an order", stored=False),
    _spec("mts.v1.oms.commands.cancel", CancelOrder, "cancel an order", stored=False),
    _spec("mts.v1.oms.commands.replace", ReplaceOrder, "replace an order", stored=False),
    _spec("mts.v1.oms.commands.rebalance", TargetPortfolio,
          "rebalance a fund to a (composed) target; the reply's payload is a RebalanceReport",
          stored=False),
    _spec("mts.v1.oms.commands.halt", HaltTrading, "signed halt (role operations)",
          stored=False),
    _spec("mts.v1.oms.commands.reduce", ReduceTrading,
          "signed REDUCING (role operations; risk from HALTED)", stored=False),
    _spec("mts.v1.oms.commands.resume", ResumeTrading, "signed resume (role risk)",
          stored=False),
    _spec("mts.v1.oms.commands.state", SetTradingState,
          "unsigned state change: always refused UNAUTHORIZED", stored=False),
    # brokers: commands per broker name, execution reports stored
    _spec("mts.v1.brokers.*.submit", SubmitOrder, "send an order to a broker", stored=False),
    _spec("mts.v1.brokers.*.cancel", CancelOrder, "cancel at a broker", stored=False),
    _spec("mts.v1.brokers.*.replace", ReplaceOrder, "replace at a broker", stored=False),
    _spec("mts.v1.brokers.*.query", BrokerQuery, "ask a broker for state", stored=False),
    _spec("mts.v1.brokers.*.order_status", OrderStatusQuery,
          "ask a broker for one order by client order id", stored=False),
    _spec("mts.v1.brokers.*.account", AccountSnapshot, "an account snapshot"),
    _spec("mts.v1.brokers.*.execution", ExecutionReport, "a broker's execution report"),
    # operations
    _spec("mts.v1.operations.audit.recorded", AuditRecord, "a link of the audit chain"),
    _spec("mts.v1.operations.audit.checkpoint", AuditCheckpoint,
          "a signed Merkle checkpoint of the audit chain"),
    _spec("mts.v1.operations.alerts.raised", Alert, "an alert for people"),
    _spec("mts.v1.operations.heartbeats.*", Heartbeat, "a service is alive (token: the service)"),
    # the answers services gave to commands (commands themselves are not stored)
    _spec("mts.v1.oms.answers.recorded", CommandAnswered, "the OMS answered a command"),
    _spec("mts.v1.treasury.answers.recorded", CommandAnswered,
          "the treasury answered a command"),
    _spec("mts.v1.research.answers.recorded", CommandAnswered,
          "the research service answered a command"),
    # dead letters, one subject per domain
    _spec("mts.v1.dlq.*", DeadLetter, "a message that could not be processed"),
)

STREAMS: Mapping[str, tuple[str, ...]] = {
    "datalake": ("mts.v1.datalake.>",),
    "research": ("mts.v1.research.signals.>", "mts.v1.research.strategies.>",
                 "mts.v1.research.answers.>"),
    "portfolio": ("mts.v1.portfolio.>",),
    # not "mts.v1.treasury.>": that would capture mts.v1.treasury.commands.* (request/reply)
    "treasury": ("mts.v1.treasury.allocations.>", "mts.v1.treasury.funds.>",
                 "mts.v1.treasury.nav.>", "mts.v1.treasury.answers.>"),
    "oms": ("mts.v1.oms.orders.>", "mts.v1.oms.fills.>", "mts.v1.oms.positions.>",
            "mts.v1.oms.state.>", "mts.v1.oms.answers.>"),
    "brokers": ("mts.v1.brokers.*.execution", "mts.v1.brokers.*.account"),
    "operations": ("mts.v1.operations.>",),
    "dlq": ("mts.v1.dlq.>",),
}
"""Domain -> subject filters of its JetStream stream (see :func:`stream_name`)."""


def validate_subject(value: str, *, allow_wildcards: bool = False) -> list[str]:
    """Split a subject into tokens, raising SubjectError naming the bad part."""
    if not isinstance(value, str) or not value:
        raise SubjectError("subject must be a non-empty string", field="subject", value=value)
    tokens = value.split(".")
    if tokens[:2] != ["mts", "v1"] or len(tokens) < 4:
        raise SubjectError(f"subject {value!r} must look like mts.v1.<domain>.<entity>[.<event>]",
                           field="subject", value=value)
    for i, tok in enumerate(tokens):
        wildcard = tok == "*" or (tok == ">" and i == len(tokens) - 1)
        if wildcard and allow_wildcards:
            continue
        if not _TOKEN.match(tok):
            raise SubjectError(f"subject {value!r} has an invalid token {tok!r}",
                               field="subject", value=value, token=tok)
    return tokens


def matches(pattern: str, value: str) -> bool:
    """NATS matching: ``*`` matches one token, a final ``>`` one or more."""
    p, s = pattern.split("."), value.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


@functools.lru_cache(maxsize=4096)
def _spec_for(value: str) -> SubjectSpec:
    """The registry entry for ``value``. Cached: the registry is fixed at import, and services
    look up the same few subjects for every message they publish or decode."""
    validate_subject(value)
    for spec in _REGISTRY:
        if matches(spec.pattern, value):
            return spec
    raise SubjectError(f"subject {value!r} is not registered", field="subject", value=value)


def model_for_subject(value: str) -> type[WireModel]:
    """The model that travels on ``value``; SubjectError if the subject is unknown."""
    return _spec_for(value).model


def is_command(value: str) -> bool:
    """True for request/reply subjects that no stream stores."""
    return not _spec_for(value).stored


def check_publishable(value: str, message: WireModel) -> None:
    """Refuse to publish ``message`` on ``value`` unless the registry says it belongs there.

    For order events the subject's last token must also equal the event's ``event_type``.
    """
    expected = model_for_subject(value)
    if type(message) is not expected:
        raise SubjectError(
            f"{type(message).__name__} may not be published on {value!r} "
            f"(it carries {expected.__name__})",
            field="subject", value=value, model=type(message).__name__,
        )
    if isinstance(message, OrderEvent) and value.rsplit(".", 1)[-1] != message.event_type.value:
        raise SubjectError(
            f"order event of type {message.event_type.value!r} may not be published on {value!r}",
            field="subject", value=value, event_type=message.event_type.value,
        )
    if isinstance(message, Bar | Quote | Trade) and (
            value.rsplit(".", 1)[-1] != symbol_to_token(message.symbol)):
        raise SubjectError(
            f"{type(message).__name__} of {message.symbol!r} may not be published on {value!r} "
            f"(its subject is {symbol_subject(_entity_of(message), message.symbol)!r})",
            field="subject", value=value, symbol=message.symbol,
        )


def subject(domain: str, entity: str, event: str) -> str:
    """Build ``mts.v1.<domain>.<entity>.<event>`` and check that it is registered."""
    value = f"{PREFIX}.{domain}.{entity}.{event}"
    _spec_for(value)
    return value


def _entity_of(message: Bar | Quote | Trade) -> str:
    return {Bar: "bars", Quote: "quotes", Trade: "trades"}[type(message)]


def symbol_subject(entity: str, symbol: str) -> str:
    """``mts.v1.datalake.<entity>.<token>`` for one symbol (entity: bars, quotes, trades).

    The one way to put a symbol in a subject: SubjectError if ``symbol`` is not a valid
    :data:`~mts1b_foundation.symbols.Symbol` (it can then travel nowhere) or the entity has no
    per-symbol subjects.
    """
    if entity not in SYMBOL_ENTITIES:
        raise SubjectError(f"no per-symbol subjects for {entity!r}; known: {SYMBOL_ENTITIES}",
                           field="entity", value=entity)
    return f"{PREFIX}.datalake.{entity}.{symbol_to_token(symbol)}"


def symbol_of_subject(value: str) -> str:
    """The symbol a per-symbol subject is about (``...bars.BRK_2EB`` -> ``BRK.B``)."""
    tokens = validate_subject(value)
    if len(tokens) != 5 or tokens[2] != "datalake" or tokens[3] not in SYMBOL_ENTITIES:
        raise SubjectError(f"{value!r} is not a per-symbol subject "
                           "(mts.v1.datalake.<bars|quotes|trades|actions>.<symbol token>)",
                           field="subject", value=value)
    return token_to_symbol(tokens[4])


def domain_of(value: str) -> str:
    """The ``<domain>`` token of a subject."""
    return validate_subject(value, allow_wildcards=True)[2]


def dlq_subject(domain: str) -> str:
    """Where undeliverable messages of ``domain`` go."""
    if not _TOKEN.match(domain):
        raise SubjectError(f"invalid domain {domain!r}", field="domain", value=domain)
    return f"{PREFIX}.dlq.{domain}"


def stream_name(domain: str) -> str:
    """JetStream stream name of a domain: ``MTS_<DOMAIN>``."""
    if domain not in STREAMS:
        raise SubjectError(f"no stream for domain {domain!r}; known: {sorted(STREAMS)}",
                           field="domain", value=domain)
    return f"MTS_{domain.upper()}"


def iter_subjects() -> tuple[SubjectSpec, ...]:
    """Every registered subject pattern, for docs and tooling."""
    return _REGISTRY
