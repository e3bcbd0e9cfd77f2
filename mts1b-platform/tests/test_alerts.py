"""``raise_alert``: an alert reaches ``mts.v1.operations.alerts.raised`` with its context, and a
failure to publish it never takes the caller down (real NATS JetStream)."""

from __future__ import annotations

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")

from mts1b_foundation import Alert, Severity, parse_message
from mts1b_platform.alerts import ALERT_SUBJECT, raise_alert
from mts1b_platform.bus import Bus

pytestmark = pytest.mark.integration


@pytest.fixture
def bus(fresh_bus: Bus) -> Bus:
    return fresh_bus


async def test_an_alert_is_stored_with_its_context(bus: Bus) -> None:
    await bus.declare_streams(["operations"])
    sent = await raise_alert(bus, "mts1b-portfolio", "x" * 5000, severity=Severity.WARNING,
                             context={"fund_id": "f1"})
    assert len(sent.text) == 4000 and sent.context == {"fund_id": "f1"}
    sub = await bus.js.subscribe(bus.wire_subject(ALERT_SUBJECT),
                                 stream=bus.stream_for("operations"), ordered_consumer=True)
    stored = parse_message(Alert, (await sub.next_msg(timeout=5)).data)
    assert stored == sent and stored.source == "mts1b-portfolio"
    await sub.unsubscribe()


async def test_an_alert_that_cannot_be_stored_is_logged_not_raised(bus: Bus) -> None:
    # no operations stream in this namespace: the publish is not acknowledged
    sent = await raise_alert(bus, "mts1b-treasury", "the strike failed")
    assert sent.severity is Severity.ERROR and sent.text == "the strike failed"
