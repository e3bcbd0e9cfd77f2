"""Commands sent to services by request/reply, and the replies they get.

Commands are not stored in JetStream: a command is answered by the service that handles it, and
the *events* it causes are what is stored. Every reply says ``ok`` or gives a stable ``code``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from mts1b_foundation.enums import OrderStatus, ReplyCode, TradingState
from mts1b_foundation.orders import _V1_GATE_CODES, Denial, Order, ReplaceRequest
from mts1b_foundation.portfolio import FundConfig, TradingScope
from mts1b_foundation.wire import (
    Context,
    Identifier,
    ScopeId,
    UtcDatetime,
    VenueCode,
    VenueMessage,
    WireModel,
)

__all__ = [
    "FUND_COMMAND_CONTEXT",
    "STATE_COMMAND_CONTEXT",
    "STRATEGY_COMMAND_CONTEXT",
    "BrokerQuery",
    "CancelOrder",
    "CommandReply",
    "ConfigureFund",
    "HaltTrading",
    "OrderStatusQuery",
    "ReduceTrading",
    "ReplaceOrder",
    "ResumeTrading",
    "SetTradingState",
    "SignedStateCommand",
    "StrategyCommand",
    "SubmitOrder",
    "state_command_bytes",
]


_V1_REPLY_CODES: dict[str, ReplyCode] = {
    **_V1_GATE_CODES,
    "FOUNDATION.VALIDATION": ReplyCode.VALIDATION_FAILED,
    "FOUNDATION.SUBJECT": ReplyCode.VALIDATION_FAILED,
    "BROKERS.UNKNOWN_COMMAND": ReplyCode.UNKNOWN_COMMAND,
    "BROKERS.INTERNAL": ReplyCode.INTERNAL_ERROR,
    "BROKER.REJECTED": ReplyCode.BROKER_REJECTED,
    "BROKER.TRANSPORT": ReplyCode.BROKER_TRANSPORT_ERROR,
    "BROKER.UNKNOWN_OUTCOME": ReplyCode.BROKER_UNKNOWN_OUTCOME,
    "OMS.UNKNOWN_FUND": ReplyCode.FUND_NOT_FOUND,
    "OMS.UNKNOWN_ORDER": ReplyCode.ORDER_NOT_FOUND,
    "OMS.NOT_OPEN": ReplyCode.ORDER_NOT_OPEN,
    "OMS.INVALID_TRANSITION": ReplyCode.INVALID_STATE_TRANSITION,
    "OMS.CANCEL_REJECTED": ReplyCode.CANCEL_REJECTED,
    "OMS.STORE": ReplyCode.INTERNAL_ERROR,
    "DENIED": ReplyCode.ORDER_DENIED,
}
"""The free-text codes version 1 replies carried, and the ReplyCode each one is now."""


class SubmitOrder(WireModel):
    """Ask the OMS (or a broker service) to accept an order.

    Version 3: its ``order`` is a version-3 :class:`Order` (``sleeves``); 1 and 2 read.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    order: Order


class CancelOrder(WireModel):
    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    order_id: Identifier
    fund_id: Identifier | None = None
    reason: str = Field(default="requested", min_length=1, max_length=2000)


class ReplaceOrder(WireModel):
    """Ask the OMS (or a broker service) to cancel-replace a working order.

    Version 3: its ``replace`` is a version-3 :class:`ReplaceRequest` (``sleeves``).
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    replace: ReplaceRequest


# Unsigned: the OMS uses it in-process (its drawdown gate, Oms.halt). On the bus its subject
# mts.v1.oms.commands.state is refused UNAUTHORIZED - its actor is whatever the sender wrote,
# so anyone who could publish could resume trading under any name; HaltTrading, ReduceTrading
# and ResumeTrading are the signed commands. (The docstring is part of the JSON Schema: kept.)
class SetTradingState(TradingScope):
    """Halt, reduce or resume trading for everything, one fund or one strategy."""


# --- signed trading-state commands ----------------------------------------------------------

STATE_COMMAND_CONTEXT = "mts1b.oms.state-command.v1"
"""The first line of every signed state command's bytes (:func:`state_command_bytes`): a
signature made for anything else - another protocol, a later version of this one - never
verifies as a state command."""

_Nonce = Annotated[str, Field(
    pattern=r"^[0-9a-f]{32}$",
    description="128 random bits as 32 lowercase hex digits, never used before by this key")]
_Signature = Annotated[str, Field(
    pattern=r"^[A-Za-z0-9+/]{86}==$",
    description="The Ed25519 signature (64 bytes, standard base64) of state_command_bytes()")]


_Reason = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00-\x1f\x7f]+$",
                               description="Why, in one line of text (no control characters)")]


def _timestamp_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state_command_bytes(command: str, scope: str, scope_id: str, key_id: str, nonce: str,
                        timestamp: dt.datetime, reason: str) -> bytes:
    """The exact bytes a signed trading-state command's Ed25519 signature covers.

    Eight fields, each rendered as text, joined by one LF (``\\n``, 0x0A), no trailing LF,
    encoded as UTF-8::

        mts1b.oms.state-command.v1      (STATE_COMMAND_CONTEXT)
        halt | reduce | resume          (the command: the model's COMMAND, never a payload field)
        global | fund | strategy        (scope)
        <scope_id>                      ("*" for global)
        <key_id>
        <nonce>                         (32 lowercase hex digits)
        <timestamp>                     (UTC: YYYY-MM-DDTHH:MM:SS.ffffffZ, 6 fraction digits)
        <reason>                        (verbatim)

    Why this shape: it is unambiguous without escaping - the models refuse a line break in every
    field (the reason, last, cannot hold one either), so two different commands never give the
    same bytes - and a client in any language can build it from the message it sends. Beside
    the command, scope, nonce and timestamp, the key id and the reason are signed too, so
    neither can be changed on the way without the signature failing.
    """
    return "\n".join((STATE_COMMAND_CONTEXT, command, scope, scope_id, key_id, nonce,
                      _timestamp_text(timestamp), reason)).encode("utf-8")


class _SignedStateCommand(WireModel):
    """A trading-state command signed by a key the OMS has registered.

    The command itself (halt, reduce, resume) is the model and its subject; the OMS records
    the registered name of the key whose signature verifies as the actor - there is no actor
    field to trust. ``timestamp`` must lie within the receiver's window (30 s by default) of its
    clock and ``nonce`` must not have been used by the key before: a copied message is refused.
    """

    COMMAND: ClassVar[str]
    STATE: ClassVar[TradingState]
    SCHEMA_VERSION = 1

    scope: Annotated[str, Field(pattern=r"^(global|fund|strategy)$")]
    scope_id: ScopeId = "*"
    reason: _Reason
    key_id: Annotated[Identifier, Field(
        description="The name under which the receiver registered the signing public key")]
    nonce: _Nonce
    timestamp: UtcDatetime
    signature: _Signature

    @model_validator(mode="after")
    def _scope_id(self) -> Self:
        if (self.scope == "global") != (self.scope_id == "*"):
            raise ValueError("scope_id must be '*' exactly when scope is 'global'")
        return self

    def signing_bytes(self) -> bytes:
        """What :attr:`signature` signs (:func:`state_command_bytes` of this command)."""
        return state_command_bytes(self.COMMAND, self.scope, self.scope_id, self.key_id,
                                   self.nonce, self.timestamp, self.reason)


class HaltTrading(_SignedStateCommand):
    """Stop new orders in a scope and cancel its working orders (HALTED). Role: operations."""

    COMMAND = "halt"
    STATE = TradingState.HALTED


class ReduceTrading(_SignedStateCommand):
    """Let only orders that reduce exposure through (REDUCING). Role: operations; from HALTED it
    raises the scope's limits and takes risk."""

    COMMAND = "reduce"
    STATE = TradingState.REDUCING


class ResumeTrading(_SignedStateCommand):
    """Trade normally again (ACTIVE): the only way out of a halt. Role: risk."""

    COMMAND = "resume"
    STATE = TradingState.ACTIVE


SignedStateCommand = HaltTrading | ReduceTrading | ResumeTrading
"""Any of the three signed trading-state commands."""

FUND_COMMAND_CONTEXT = "mts1b.treasury.configure-fund.v1"
"""The first line of a signed fund configuration's bytes (:meth:`ConfigureFund.signing_bytes`):
a signature made for a state command never verifies as one, nor the other way round."""


class ConfigureFund(WireModel):
    """A fund's new configuration for the treasury, signed by a key the treasury has registered.

    Sent on ``mts.v1.treasury.commands.configure``. The treasury applies it as a new version of
    the fund when every check of a signed command passes; a configuration that loosens any
    limit (a higher or lifted limit, a larger target NAV, a broker added, ...) needs a key
    with the ``risk`` role, any other change ``operations`` or ``risk``. The actor recorded is
    the key's registered name. ``nonce`` and ``timestamp`` work as for the state commands.

    The signature covers six lines joined by LF, UTF-8: :data:`FUND_COMMAND_CONTEXT`, the key
    id, the nonce, the timestamp (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), the reason, and the SHA-256
    (lowercase hex) of ``config.to_json()`` - the configuration as the validated model
    serialises it, so what the treasury rebuilds is what was signed.
    """

    COMMAND: ClassVar[str] = "configure"
    SCHEMA_VERSION = 1

    config: FundConfig
    reason: _Reason
    key_id: Annotated[Identifier, Field(
        description="The name under which the treasury registered the signing public key")]
    nonce: _Nonce
    timestamp: UtcDatetime
    signature: _Signature

    def signing_bytes(self) -> bytes:
        """What :attr:`signature` signs (see the class docstring)."""
        digest = hashlib.sha256(self.config.to_json()).hexdigest()
        return "\n".join((FUND_COMMAND_CONTEXT, self.key_id, self.nonce,
                          _timestamp_text(self.timestamp), self.reason, digest)).encode("utf-8")


STRATEGY_COMMAND_CONTEXT = "mts1b.research.strategy-command.v1"
"""The first line of a signed strategy command's bytes (:meth:`StrategyCommand.signing_bytes`)."""


class StrategyCommand(WireModel):
    """A signed change of a strategy's state, for the research service's registry.

    Sent on ``mts.v1.research.commands.strategy``. ``action`` ``promote`` moves the strategy to
    ``to_state`` (``paper`` or ``live``) when the registry's promotion rule accepts ``evidence``
    (``sessions``, ``mean_ic``, ``t_stat``, ``hit_rate``); ``enable`` restores the state held
    before a disable. Going live - by promotion, or by enabling a strategy that was live - needs
    a key with the ``risk`` role; the rest ``operations``. The actor recorded is the key's
    registered name. The signature covers, one per line (LF, UTF-8):
    :data:`STRATEGY_COMMAND_CONTEXT`, the action, the strategy, the target state (``-`` for
    enable), the key id, the nonce, the timestamp (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), the reason,
    and the SHA-256 (hex) of the evidence as sorted-key JSON.
    """

    COMMAND: ClassVar[str] = "strategy"
    SCHEMA_VERSION = 1

    action: Literal["promote", "enable"]
    strategy: Identifier
    to_state: Literal["paper", "live"] | None = None
    evidence: dict[str, float] = Field(default_factory=dict)
    reason: _Reason
    key_id: Identifier
    nonce: _Nonce
    timestamp: UtcDatetime
    signature: _Signature

    @model_validator(mode="after")
    def _target(self) -> Self:
        if (self.action == "promote") != (self.to_state is not None):
            raise ValueError("to_state is given exactly when the action is promote")
        unknown = set(self.evidence) - {"sessions", "mean_ic", "t_stat", "hit_rate"}
        if unknown:
            raise ValueError(f"evidence holds unknown fields {sorted(unknown)} (sessions, "
                             "mean_ic, t_stat, hit_rate)")
        return self

    def signing_bytes(self) -> bytes:
        """What :attr:`signature` signs (see the class docstring)."""
        evidence = hashlib.sha256(json.dumps(self.evidence, sort_keys=True).encode()
                                  ).hexdigest()
        return "\n".join((STRATEGY_COMMAND_CONTEXT, self.action, self.strategy,
                          self.to_state or "-", self.key_id, self.nonce,
                          _timestamp_text(self.timestamp), self.reason, evidence)
                         ).encode("utf-8")


class BrokerQuery(WireModel):
    """Read-only questions to a broker service."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    kind: Annotated[str, Field(pattern=r"^(open_orders|positions|account|connection)$")]
    account_id: Identifier | None = None


class OrderStatusQuery(WireModel):
    """Ask a broker what it knows of one of our orders, by our client order id.

    The OMS asks this when a submit's outcome is unknown (a timeout after sending): the
    answer decides whether the order may be sent again. The reply carries the broker's latest
    ``ExecutionReport`` of the order in ``payload``, or ``ok=False`` with
    ``code=ORDER_NOT_FOUND`` when the broker proves it never received it.
    """

    SCHEMA_VERSION = 1

    order_id: Identifier
    account_id: Identifier | None = None


class CommandReply(WireModel):
    """The answer to any command. ``ok=False`` carries ``code`` and ``message``.

    ``code`` is a :class:`ReplyCode`: a closed set, so a client can branch on it and an unknown
    code is refused when the reply is read. ``venue_code`` / ``venue_message`` carry what a
    venue said in its own terms when the failure comes from one. ``duplicate`` is true when an
    idempotency key matched an earlier submission: the reply then names the original
    ``order_id``.
    """

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    ok: bool
    order_id: Identifier | None = None
    status: OrderStatus | None = None
    duplicate: bool = False
    code: ReplyCode | None = None
    message: str | None = Field(default=None, max_length=4000)
    venue_code: VenueCode | None = None
    venue_message: VenueMessage | None = None
    denial: Denial | None = None
    context: Context = Field(default_factory=dict)
    payload: str | None = None
    ts: UtcDatetime | None = None

    @model_validator(mode="after")
    def _failure_has_code(self) -> CommandReply:
        if not self.ok and not self.code:
            raise ValueError("a failed reply needs code")
        return self

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """v1 -> v2: ``code`` was free text. The codes the stack wrote map to their ReplyCode
        (``OMS.UNKNOWN_ORDER`` -> ``ORDER_NOT_FOUND``, ...); any other one becomes
        ``INTERNAL_ERROR`` and keeps its text in ``context["v1_code"]``, so nothing is lost."""
        code = data.get("code")
        if not isinstance(code, str) or code in ReplyCode.__members__:
            return data
        if code in _V1_REPLY_CODES:
            data["code"] = _V1_REPLY_CODES[code].value
            return data
        context = data.get("context")
        data["context"] = {**(context if isinstance(context, dict) else {}), "v1_code": code}
        data["code"] = ReplyCode.INTERNAL_ERROR.value
        return data
