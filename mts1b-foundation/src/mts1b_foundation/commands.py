"""Commands sent to services by request/reply, and the replies they get.

Commands are not stored in JetStream: a command is answered by the service that handles it, and
the *events* it causes are what is stored. Every reply says ``ok`` or gives a stable ``code``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from mts1b_foundation.enums import OrderStatus, ReplyCode
from mts1b_foundation.orders import _V1_GATE_CODES, Denial, Order, ReplaceRequest
from mts1b_foundation.portfolio import TradingScope
from mts1b_foundation.wire import (
    Context,
    Identifier,
    UtcDatetime,
    VenueCode,
    VenueMessage,
    WireModel,
)

__all__ = [
    "BrokerQuery",
    "CancelOrder",
    "CommandReply",
    "OrderStatusQuery",
    "ReplaceOrder",
    "SetTradingState",
    "SubmitOrder",
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
    """Ask the OMS (or a broker service) to accept an order."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    order: Order


class CancelOrder(WireModel):
    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    order_id: Identifier
    fund_id: Identifier | None = None
    reason: str = Field(default="requested", min_length=1, max_length=2000)


class ReplaceOrder(WireModel):
    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    replace: ReplaceRequest


class SetTradingState(TradingScope):
    """Halt, reduce or resume trading for everything, one fund or one strategy."""


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
