"""mts1b-oms: order lifecycle, idempotent submission, pre-trade risk gates, a durable kill
switch with signed trading-state commands, positions, rebalancing, a PostgreSQL (or in-memory)
store with an outbox, and the NATS service.

>>> oms = Oms(await Store.open(dsn), broker, [fund])
>>> await oms.start()
>>> reply = await oms.submit(order)   # CommandReply: order_id, status, or a coded denial
"""

from mts1b_oms.book import FundBook
from mts1b_oms.gates import DEFAULT_GATES, Decision, FundMemory, GateContext, GatePipeline
from mts1b_oms.killswitch import DEFAULT_CANCEL_RATE, KillSwitch, Pacer
from mts1b_oms.memstore import InMemoryStore
from mts1b_oms.oms import DEFAULT_IDEMPOTENCY_WINDOW, Oms
from mts1b_oms.orderstore import (
    CancelOutcome,
    FundLock,
    OrderStore,
    OutboxItem,
    StaleState,
    StoreError,
    Sweep,
    SweepOrder,
)
from mts1b_oms.outbox import OutboxRelay
from mts1b_oms.positions import Mismatch, PositionState, apply_fill, reconcile, replay
from mts1b_oms.rebalance import RebalanceError, rebalance
from mts1b_oms.signing import CommandVerifier, KeyRegistry, Role, SigningKey
from mts1b_oms.state import TRANSITIONS, OrderState, Outcome, Rule, apply_event, new_order_state
from mts1b_oms.store import Store
from mts1b_oms.tradingstate import TradingStates, make_change, make_command

__all__ = [
    "DEFAULT_CANCEL_RATE",
    "DEFAULT_GATES",
    "DEFAULT_IDEMPOTENCY_WINDOW",
    "TRANSITIONS",
    "CancelOutcome",
    "CommandVerifier",
    "Decision",
    "FundBook",
    "FundLock",
    "FundMemory",
    "GateContext",
    "GatePipeline",
    "InMemoryStore",
    "KeyRegistry",
    "KillSwitch",
    "Mismatch",
    "Oms",
    "OrderState",
    "OrderStore",
    "OutboxItem",
    "OutboxRelay",
    "Outcome",
    "Pacer",
    "PositionState",
    "RebalanceError",
    "Role",
    "Rule",
    "SigningKey",
    "StaleState",
    "Store",
    "StoreError",
    "Sweep",
    "SweepOrder",
    "TradingStates",
    "apply_event",
    "apply_fill",
    "make_change",
    "make_command",
    "new_order_state",
    "rebalance",
    "reconcile",
    "replay",
]
