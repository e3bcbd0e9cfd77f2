import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from mts1b_foundation import (
    STREAMS,
    Alert,
    Bar,
    CancelOrder,
    Denial,
    InMemoryPublisher,
    OrderEvent,
    SubjectError,
    check_publishable,
    dlq_subject,
    domain_of,
    model_for_subject,
    stream_name,
    subject,
)
from mts1b_foundation.subjects import is_command, iter_subjects, matches, validate_subject

NOW = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
BAR = Bar(symbol="AAPL", ts=NOW, open=Decimal(1), high=Decimal(1), low=Decimal(1),
          close=Decimal(1), volume=Decimal(0))


def test_lookup_and_wildcards() -> None:
    assert model_for_subject("mts.v1.datalake.bars.AAPL") is Bar
    assert model_for_subject("mts.v1.oms.orders.filled") is OrderEvent
    assert model_for_subject("mts.v1.brokers.paper.cancel") is CancelOrder
    with pytest.raises(SubjectError, match="not registered"):
        model_for_subject("mts.v1.oms.orders.teleported")
    with pytest.raises(SubjectError, match="invalid token"):
        model_for_subject("mts.v1.datalake.bars.BRK B")
    with pytest.raises(SubjectError, match="must look like"):
        validate_subject("orders.filled")


def test_check_publishable() -> None:
    check_publishable("mts.v1.datalake.bars.AAPL", BAR)
    with pytest.raises(SubjectError, match="Bar may not be published"):
        check_publishable("mts.v1.operations.alerts.raised", BAR)
    denied = OrderEvent(event_id="e", order_id="o", fund_id="F", event_type="denied",
                        status="denied", ts=NOW,
                        denial=Denial(code="QUANTITY_EXCEEDS_MAXIMUM", gate="order_size",
                                      message="m"))
    check_publishable("mts.v1.oms.orders.denied", denied)
    with pytest.raises(SubjectError, match="type 'denied' may not be published"):
        check_publishable("mts.v1.oms.orders.filled", denied)


def test_matches_like_nats() -> None:
    assert matches("mts.v1.>", "mts.v1.oms.orders.filled")
    assert not matches("mts.v1.>", "mts.v1")
    assert matches("mts.v1.*.bars.*", "mts.v1.datalake.bars.X")
    assert not matches("mts.v1.datalake.bars.*", "mts.v1.datalake.bars.X.Y")


def test_streams_cover_stored_subjects_and_never_commands() -> None:
    for spec in iter_subjects():
        concrete = spec.pattern.replace("*", "X")
        covered = [d for d, pats in STREAMS.items() if any(matches(p, concrete) for p in pats)]
        if spec.stored:
            assert len(covered) == 1, spec.pattern
            assert domain_of(concrete) == covered[0] or covered[0] == "dlq"
        else:
            assert covered == [], f"command subject {spec.pattern} would be captured by a stream"
            assert is_command(concrete)


def test_helpers() -> None:
    assert subject("oms", "orders", "filled") == "mts.v1.oms.orders.filled"
    with pytest.raises(SubjectError):
        subject("oms", "orders", "nope")
    assert dlq_subject("oms") == "mts.v1.dlq.oms"
    assert model_for_subject(dlq_subject("oms")).__name__ == "DeadLetter"
    assert stream_name("oms") == "MTS_OMS"
    with pytest.raises(SubjectError, match="no stream"):
        stream_name("nothing")


def test_in_memory_publisher_checks_registry() -> None:
    # run without an async test plugin: foundation's own test extra has none
    async def scenario() -> None:
        pub = InMemoryPublisher()
        await pub.publish("mts.v1.datalake.bars.AAPL", BAR, msg_id="m1")
        assert pub.published == [("mts.v1.datalake.bars.AAPL", BAR, "m1")]
        alert = Alert(alert_id="a", labels={"alertname": "T"}, severity="warning", source="oms",
                      text="t", ts=NOW)
        with pytest.raises(SubjectError):
            await pub.publish("mts.v1.datalake.bars.AAPL", alert)
        with pytest.raises(SubjectError, match="AAPL"):
            await pub.publish("mts.v1.datalake.bars.MSFT", BAR)

    asyncio.run(scenario())
