"""ReplyCode: one closed vocabulary for gates, the OMS and brokers; what a venue said travels
beside it in venue_code / venue_message."""

from __future__ import annotations

import datetime as dt

import pytest
from mts1b_foundation import (
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    CommandReply,
    Denial,
    DenialCode,
    ExecutionReport,
    MtsError,
    OrderEvent,
    ReplyCode,
    SubjectError,
    ValidationFailed,
    parse_message,
)

NOW = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)

# What issue #15 asks for, so that the OMS work after it needs no wire change.
NEEDED = {
    "IDEMPOTENCY_CONFLICT", "INSTRUMENT_MISMATCH", "INSTRUMENT_NOT_FOUND", "UNAUTHORIZED",
    "SIGNATURE_INVALID", "REPLAY_REFUSED", "STALE_COMMAND", "INTERNAL_ERROR",
    "VALIDATION_FAILED", "TRADING_HALTED", "TRADING_STATE_REDUCING", "QUANTITY_EXCEEDS_MAXIMUM",
    "NOTIONAL_EXCEEDS_MAXIMUM", "QUANTITY_BELOW_MINIMUM", "LOT_SIZE", "TICK_SIZE",
}


def test_the_codes_the_issue_names_exist_and_values_equal_names() -> None:
    assert set(ReplyCode.__members__) >= NEEDED
    assert all(code.value == name for name, code in ReplyCode.__members__.items())
    assert len(set(ReplyCode)) == len(ReplyCode.__members__)  # no aliases inside the enum


def test_denial_code_is_reply_code() -> None:
    """One source of truth: the gates' name for the enum is the enum itself."""
    assert DenialCode is ReplyCode


@pytest.mark.parametrize("code", ["MAX_QUANTITY", "OMS.NOT_OPEN", "made_up", "trading_halted"])
def test_unknown_codes_are_refused_everywhere(code: str) -> None:
    with pytest.raises(ValidationFailed, match="code="):
        parse_message(CommandReply, {"ok": False, "code": code})
    with pytest.raises(ValidationFailed, match="code="):
        parse_message(Denial, {"code": code, "gate": "g", "message": "m"})
    with pytest.raises(ValidationFailed, match="code="):
        parse_message(ExecutionReport, {"broker": "paper", "account_id": "A", "order_id": "o",
                                        "exec_type": "reject", "ts": "2024-03-01T00:00:00Z",
                                        "reason": "r", "code": code})
    with pytest.raises(ValidationFailed, match="code="):
        parse_message(OrderEvent, {"event_id": "e", "order_id": "o", "fund_id": "F",
                                   "event_type": "rejected", "status": "rejected",
                                   "ts": "2024-03-01T00:00:00Z", "reason": "r", "code": code})


def test_a_venue_reject_carries_its_own_words() -> None:
    reply = CommandReply(ok=False, code=ReplyCode.BROKER_REJECTED, message="rejected",
                         venue_code="201", venue_message="Order rejected - reason: margin")
    back = parse_message(CommandReply, reply.to_json())
    assert back == reply and back.code is ReplyCode.BROKER_REJECTED
    report = ExecutionReport(broker="ib", account_id="U1", order_id="o", exec_type="reject",
                             ts=NOW, reason="margin", code=ReplyCode.INSUFFICIENT_BUYING_POWER,
                             venue_code="201", venue_message="Order rejected - reason: margin")
    assert parse_message(ExecutionReport, report.to_json()) == report


@pytest.mark.parametrize(("field", "value"), [
    ("venue_code", ""), ("venue_code", "has space"), ("venue_code", "x" * 65),
    ("venue_code", "tab\t"), ("venue_code", "é"), ("venue_message", ""),
    ("venue_message", "x" * 2001),
])
def test_venue_fields_are_bounded(field: str, value: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_message(CommandReply, {"ok": False, "code": "BROKER_REJECTED", field: value})
    assert info.value.context["errors"][0]["field"] == field


def test_a_denied_event_code_is_the_denials() -> None:
    denial = Denial(code=ReplyCode.TRADING_HALTED, gate="trading_state", message="halted")
    ok = OrderEvent(event_id="e", order_id="o", fund_id="F", event_type="denied",
                    status="denied", ts=NOW, denial=denial, code=ReplyCode.TRADING_HALTED)
    assert ok.code is ReplyCode.TRADING_HALTED
    with pytest.raises(ValueError, match="differs from the denial's code"):
        OrderEvent(event_id="e", order_id="o", fund_id="F", event_type="denied",
                   status="denied", ts=NOW, denial=denial, code=ReplyCode.DRAWDOWN_HALT)


def test_errors_say_which_code_answers_them() -> None:
    assert MtsError.reply_code is ReplyCode.INTERNAL_ERROR
    assert ValidationFailed.reply_code is ReplyCode.VALIDATION_FAILED
    assert SubjectError.reply_code is ReplyCode.VALIDATION_FAILED
    assert BrokerRejected.reply_code is ReplyCode.BROKER_REJECTED
    assert BrokerTransportError.reply_code is ReplyCode.BROKER_TRANSPORT_ERROR
    assert BrokerUnknownOutcome.reply_code is ReplyCode.BROKER_UNKNOWN_OUTCOME
