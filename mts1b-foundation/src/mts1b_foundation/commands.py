"""Commands sent to services by request/reply, and the replies they get.

Commands are not stored in JetStream: a command is answered by the service that handles it, and
the *events* it causes are what is stored. Every reply says ``ok`` or gives a stable ``code``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from mts1b_foundation.enums import OrderStatus
from mts1b_foundation.orders import Context, Denial, Order, ReplaceRequest
from mts1b_foundation.portfolio import TradingScope
from mts1b_foundation.wire import Identifier, UtcDatetime, WireModel

__all__ = [
    "BrokerQuery",
    "CancelOrder",
    "CommandReply",
    "ReplaceOrder",
    "SetTradingState",
    "SubmitOrder",
]


class SubmitOrder(WireModel):
    """Ask the OMS (or a broker service) to accept an order."""

    order: Order


class CancelOrder(WireModel):
    order_id: Identifier
    fund_id: Identifier | None = None
    reason: str = Field(default="requested", min_length=1, max_length=2000)


class ReplaceOrder(WireModel):
    replace: ReplaceRequest


class SetTradingState(TradingScope):
    """Halt, reduce or resume trading for everything, one fund or one strategy."""


class BrokerQuery(WireModel):
    """Read-only questions to a broker service."""

    kind: Annotated[str, Field(pattern=r"^(open_orders|positions|account|connection)$")]
    account_id: Identifier | None = None


class CommandReply(WireModel):
    """The answer to any command. ``ok=False`` carries ``code`` and ``message``.

    ``duplicate`` is true when an idempotency key matched an earlier submission: the reply then
    names the original ``order_id``.
    """

    ok: bool
    order_id: Identifier | None = None
    status: OrderStatus | None = None
    duplicate: bool = False
    code: str | None = Field(default=None, max_length=128)
    message: str | None = Field(default=None, max_length=4000)
    denial: Denial | None = None
    context: Context = Field(default_factory=dict)
    payload: str | None = None
    ts: UtcDatetime | None = None

    @model_validator(mode="after")
    def _failure_has_code(self) -> CommandReply:
        if not self.ok and not self.code:
            raise ValueError("a failed reply needs code")
        return self
