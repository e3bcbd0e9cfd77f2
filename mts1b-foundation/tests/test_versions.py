"""Versioning: every model writes schema_version 2 and still reads version 1 for one release.

``data/v1_messages.json`` holds messages written by the version-1 models (commit 4fad7bc, the
last one before version 2): one per model, and several replies with the free-text codes v1 used.
``data/schemas_v1.json`` is the JSON Schema snapshot committed with them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import (
    CommandReply,
    Denial,
    Order,
    OrderEvent,
    ReplyCode,
    ValidationFailed,
    parse_message,
)
from mts1b_foundation.schema import export_schemas, load_snapshot, wire_models

DATA = Path(__file__).parent / "data"
V1: dict[str, list[dict[str, Any]]] = json.loads((DATA / "v1_messages.json").read_text())
MODELS = wire_models()


# Models that moved on since: their version and the versions they read (test_dead_letter.py,
# test_risk_limits.py), and models born after version 1 (no v1 message exists).
LATER = {"AuditCheckpoint": (1, frozenset()),
         "DeadLetter": (3, frozenset({1, 2})), "AuditRecord": (3, frozenset({1, 2})),
         "Alert": (3, frozenset({1, 2})),
         "Heartbeat": (1, frozenset()), "RiskEnvelope": (3, frozenset({1, 2})),
         "FundConfig": (3, frozenset({1, 2})), "OrderStatusQuery": (1, frozenset()),
         "HaltTrading": (1, frozenset()), "ReduceTrading": (1, frozenset()),
         "ResumeTrading": (1, frozenset()),
         "Order": (3, frozenset({1, 2})), "SubmitOrder": (3, frozenset({1, 2})),
         "OrderEvent": (3, frozenset({1, 2})), "TargetPortfolio": (3, frozenset({1, 2})),
         "ReplaceRequest": (3, frozenset({1, 2})), "ReplaceOrder": (3, frozenset({1, 2})),
         "SleeveAllocation": (1, frozenset()), "RebalanceReport": (1, frozenset()),
         "FundNav": (1, frozenset()), "ConfigureFund": (1, frozenset()),
         "StrategySpec": (3, frozenset({1, 2})), "Signal": (3, frozenset({1, 2})),
         "StrategyTransition": (1, frozenset()), "StrategyCommand": (1, frozenset()),
         "ClockTick": (2, frozenset({1})), "CorporateAction": (2, frozenset({1})),
         "CommandAnswered": (1, frozenset())}
NEW = {"AuditCheckpoint", "Heartbeat",
       "OrderStatusQuery", "HaltTrading", "ReduceTrading", "ResumeTrading", "SleeveAllocation",
       "RebalanceReport", "FundNav", "ConfigureFund", "StrategyTransition",
       "StrategyCommand", "ClockTick", "CorporateAction", "CommandAnswered"}


def test_every_model_is_version_2_and_reads_version_1() -> None:
    for name, model in MODELS.items():
        version, readable = LATER.get(name, (2, frozenset({1})))
        assert version == model.SCHEMA_VERSION, name
        assert readable == model.READABLE_VERSIONS, name
    snapshot = load_snapshot()
    assert {k: v["schema_version"] for k, v in snapshot.items()} == {
        k: LATER.get(k, (2,))[0] for k in export_schemas()}


def test_there_is_a_v1_message_for_every_model() -> None:
    assert set(V1) == set(MODELS) - NEW


@pytest.mark.parametrize("name", sorted(set(MODELS) - NEW))
def test_v1_messages_still_parse(name: str) -> None:
    model = MODELS[name]
    for message in V1[name]:
        assert message["schema_version"] == 1
        parsed = parse_message(model, json.dumps(message))
        assert parsed.schema_version == model.SCHEMA_VERSION
        again = parse_message(model, parsed.to_json())  # re-written as the current version
        assert again == parsed
        assert json.loads(again.to_json())["schema_version"] == model.SCHEMA_VERSION


@pytest.mark.parametrize("name", sorted(set(MODELS) - NEW))
def test_v1_messages_match_the_v1_schema(name: str) -> None:
    """The fixtures are genuine version-1 shapes (not version-2 messages labelled 1)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DATA / "schemas_v1.json").read_text())[name]
    assert schema["schema_version"] == 1
    for message in V1[name]:
        jsonschema.validate(message, schema["schema"])


def test_v1_gate_codes_take_their_new_names() -> None:
    denial = parse_message(Denial, json.dumps(V1["Denial"][0]))
    assert V1["Denial"][0]["code"] == "MAX_QUANTITY"
    assert denial.code is ReplyCode.QUANTITY_EXCEEDS_MAXIMUM
    event = parse_message(OrderEvent, json.dumps(V1["OrderEvent"][0]))
    assert event.denial is not None
    assert event.denial.code is ReplyCode.QUANTITY_EXCEEDS_MAXIMUM
    assert event.order is not None and event.order.schema_version == 3
    for old, new in (("MAX_NOTIONAL", "NOTIONAL_EXCEEDS_MAXIMUM"),
                     ("REDUCE_ONLY", "TRADING_STATE_REDUCING"),
                     ("TRADING_HALTED", "TRADING_HALTED")):
        v1 = {"schema_version": 1, "code": old, "gate": "g", "message": "m"}
        assert parse_message(Denial, v1).code == new


def test_v1_reply_codes_map_and_unknown_ones_are_kept() -> None:
    codes = [(m["code"], parse_message(CommandReply, json.dumps(m))) for m in V1["CommandReply"]]
    mapped = {old: (reply.code, dict(reply.context)) for old, reply in codes}
    assert mapped[None] == (None, {})
    assert mapped["MAX_QUANTITY"][0] is ReplyCode.QUANTITY_EXCEEDS_MAXIMUM
    assert mapped["OMS.UNKNOWN_ORDER"][0] is ReplyCode.ORDER_NOT_FOUND
    assert mapped["OMS.NOT_OPEN"][0] is ReplyCode.ORDER_NOT_OPEN
    assert mapped["FOUNDATION.VALIDATION"] == (ReplyCode.VALIDATION_FAILED,
                                               {"field": "quantity"})
    assert mapped["BROKER.TRANSPORT"][0] is ReplyCode.BROKER_TRANSPORT_ERROR
    assert mapped["REDUCE_ONLY"][0] is ReplyCode.TRADING_STATE_REDUCING
    assert mapped["SOMETHING.ELSE"] == (ReplyCode.INTERNAL_ERROR, {"v1_code": "SOMETHING.ELSE"})


def test_a_version_2_reply_gets_no_v1_mapping() -> None:
    with pytest.raises(ValidationFailed, match=re.escape("code='OMS.NOT_OPEN'")):
        parse_message(CommandReply, {"schema_version": 2, "ok": False, "code": "OMS.NOT_OPEN"})


def test_v1_messages_meet_the_new_rules() -> None:
    """Reading version 1 upgrades the shape, it does not relax the checks."""
    order = dict(V1["Order"][0])
    with pytest.raises(ValidationFailed, match="quantity='1E\\+308'"):
        parse_message(Order, {**order, "quantity": "1E+308"})
    with pytest.raises(ValidationFailed, match=re.escape("instrument.equity.symbol")):
        parse_message(Order, {**order, "instrument": {**order["instrument"],
                                                      "symbol": "../../etc/passwd"}})


@pytest.mark.parametrize("version", [0, 4, 99, -1])
def test_versions_neither_written_nor_readable_are_refused(version: int) -> None:
    message = {**V1["Order"][0], "schema_version": version}
    with pytest.raises(ValidationFailed) as info:
        parse_message(Order, json.dumps(message))
    error = info.value.context["errors"][0]
    assert error["field"] == "schema_version" and error["value"] == version
    assert "not supported by Order (writes 3, and reads 1, 2)" in error["reason"]


def test_corporate_action_v2_adds_the_delisting_and_reads_v1() -> None:
    """Version 2 of CorporateAction added ``delisting`` (issue #20): a version-1 split or
    dividend reads unchanged and is re-written as version 2; a kind neither version knows is
    refused naming the field."""
    from mts1b_foundation import CorporateAction

    v1 = {"schema_version": 1, "action_id": "ca-AAA-2016-01-05-split-v1", "symbol": "AAA",
          "ex_date": "2016-01-05", "kind": "split", "value": "2"}
    split = parse_message(CorporateAction, json.dumps(v1))
    assert (split.kind, split.value, split.schema_version) == ("split", 2, 2)
    assert json.loads(split.to_json())["schema_version"] == 2
    gone = parse_message(CorporateAction, {**v1, "schema_version": 2, "kind": "delisting",
                                           "value": "12.34"})
    assert gone.kind == "delisting" and str(gone.value) == "12.34"
    with pytest.raises(ValidationFailed) as info:
        parse_message(CorporateAction, {**v1, "schema_version": 2, "kind": "merger"})
    assert info.value.context["errors"][0]["field"] == "kind"


def test_a_version_1_clock_tick_is_a_close() -> None:
    """ClockTick 2 added ``phase`` (issue #20: a session's open tick, for sizing at the open);
    a version-1 tick is the session's end, as it always was."""
    from mts1b_foundation import ClockTick

    v1 = {"schema_version": 1, "replay_id": "rp-1", "seq": 3, "session": "2016-01-05",
          "ts": "2016-01-05T21:00:00Z", "bars": 20}
    tick = parse_message(ClockTick, json.dumps(v1))
    assert (tick.phase, tick.schema_version) == ("close", 2)
    opened = parse_message(ClockTick, {**v1, "schema_version": 2, "phase": "open"})
    assert opened.phase == "open"
    with pytest.raises(ValidationFailed) as err:
        parse_message(ClockTick, {**v1, "schema_version": 2, "phase": "lunch"})
    assert err.value.context["errors"][0]["field"] == "phase"


def test_a_command_answer_names_its_command_and_is_bounded() -> None:
    """CommandAnswered (new, version 1): a service's answer to a command, stored so that the
    audit chain holds refused commands too."""
    from mts1b_foundation import CommandAnswered, answers_subject

    base = {"answer_id": "ans-1", "service": "oms",
            "command_subject": "mts.v1.oms.commands.resume", "request_sha256": "a" * 64,
            "request": {"scope": "fund", "nested": {"ids": [1, 2]}}, "ok": False,
            "code": "UNAUTHORIZED", "ts": "2026-12-06T12:00:00Z"}
    answer = parse_message(CommandAnswered, base)
    assert answer.request["nested"] == {"ids": [1, 2]} and answer.reply == {}
    for field, value in (("command_subject", "mts.v1.oms.orders.filled"),
                         ("request_sha256", "xyz"), ("code", "lower case"),
                         ("request", {"big": "x" * 300_000})):
        with pytest.raises(ValidationFailed) as err:
            parse_message(CommandAnswered, {**base, field: value})
        assert err.value.context["errors"][0]["field"].startswith(field), field
    assert answers_subject("mts.v1.treasury.commands.configure") == \
        "mts.v1.treasury.answers.recorded"
    with pytest.raises(ValueError, match="not a command subject"):
        answers_subject("mts.v1.datalake.bars.AAPL")
