"""The signed trading-state commands on the wire: their exact signed bytes, their subjects, and
what their fields refuse. (Signing and verifying live in mts1b-oms; foundation only defines
what is signed, so a client in any language can build the same bytes.)"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from mts1b_foundation import (
    HaltTrading,
    ReduceTrading,
    ResumeTrading,
    SetTradingState,
    ValidationFailed,
    model_for_subject,
    parse_message,
    state_command_bytes,
)

SIG = "A" * 86 + "=="
NONCE = "0123456789abcdef0123456789abcdef"
TS = dt.datetime(2026, 7, 2, 12, 34, 56, 120000, tzinfo=dt.UTC)


def _fields(**over: object) -> dict[str, object]:
    return {"scope": "fund", "scope_id": "f1", "reason": "risk review done", "key_id": "risk-bob",
            "nonce": NONCE, "timestamp": TS.isoformat(), "signature": SIG, **over}


def test_the_signed_bytes_are_exactly_the_documented_lines() -> None:
    cmd = parse_message(ResumeTrading, _fields())
    assert cmd.signing_bytes() == (
        b"mts1b.oms.state-command.v1\nresume\nfund\nf1\nrisk-bob\n"
        b"0123456789abcdef0123456789abcdef\n2026-07-02T12:34:56.120000Z\nrisk review done")
    # the same instant written in another offset signs the same bytes
    other = parse_message(ResumeTrading, _fields(timestamp="2026-07-02T14:34:56.12+02:00"))
    assert other.signing_bytes() == cmd.signing_bytes()
    assert state_command_bytes("halt", "global", "*", "ops", NONCE, TS, "x").split(b"\n")[1:4] \
        == [b"halt", b"global", b"*"]


def test_the_command_is_the_model_not_a_field() -> None:
    """One payload read as a halt and as a resume signs different bytes: a halt's signature
    never verifies as a resume sent on the resume subject."""
    data = json.dumps(_fields())
    halt, resume = parse_message(HaltTrading, data), parse_message(ResumeTrading, data)
    assert halt.signing_bytes() != resume.signing_bytes()
    assert (HaltTrading.STATE.value, ReduceTrading.STATE.value, ResumeTrading.STATE.value) == (
        "HALTED", "REDUCING", "ACTIVE")
    with pytest.raises(ValidationFailed, match="actor"):
        parse_message(ResumeTrading, _fields(actor="chief-risk-officer"))


def test_halt_reduce_and_resume_have_their_own_subjects() -> None:
    assert model_for_subject("mts.v1.oms.commands.halt") is HaltTrading
    assert model_for_subject("mts.v1.oms.commands.reduce") is ReduceTrading
    assert model_for_subject("mts.v1.oms.commands.resume") is ResumeTrading
    assert model_for_subject("mts.v1.oms.commands.state") is SetTradingState


@pytest.mark.parametrize(("field", "value"), [
    ("reason", "two\nlines"), ("reason", ""), ("reason", "tab\there"),
    ("nonce", NONCE.upper()), ("nonce", NONCE[:-1]), ("signature", "A" * 88),
    ("signature", "A" * 85 + "==="), ("key_id", "../etc"), ("timestamp", "2026-07-02T12:34:56"),
    ("scope_id", "*"), ("scope", "account"),
])
def test_fields_that_would_make_the_signed_bytes_ambiguous_are_refused(field: str,
                                                                       value: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_message(HaltTrading, _fields(**{field: value}))
    assert info.value.context["errors"][0]["field"] in {field, "<root>"}


def test_a_lone_surrogate_in_the_reason_is_refused() -> None:
    """The signed bytes are UTF-8: a reason that has none is refused when it is read."""
    with pytest.raises(ValidationFailed, match="reason="):
        parse_message(HaltTrading, _fields(reason="bad \ud800 text"))


def test_global_scope_takes_star() -> None:
    cmd = parse_message(HaltTrading, _fields(scope="global", scope_id="*"))
    assert b"\nglobal\n*\n" in cmd.signing_bytes()
    assert parse_message(HaltTrading, cmd.to_json()) == cmd
