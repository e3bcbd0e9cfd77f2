"""Alert v3 (labels, status, start and end), Heartbeat and the AlertSink contract."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence

import pytest
from mts1b_foundation import (
    Alert,
    AlertDeliveryError,
    AlertSink,
    AlertStatus,
    Heartbeat,
    ValidationFailed,
    alert_fingerprint,
    alert_labels,
    check_publishable,
    missing_members,
    model_for_subject,
    parse_message,
)

NOW = dt.datetime(2026, 3, 2, 14, 30, tzinfo=dt.UTC)


def _alert(**changes: object) -> Alert:
    data: dict[str, object] = {"alert_id": "alr-1", "labels": {"alertname": "X", "fund": "f1"},
                               "severity": "error", "source": "mts1b-oms", "text": "t", "ts": NOW}
    data.update(changes)
    return Alert.model_validate(data)


def test_the_fingerprint_is_the_sorted_labels_and_nothing_else() -> None:
    a = _alert(labels={"alertname": "X", "fund": "f1", "symbol": "AAPL"})
    b = _alert(labels={"symbol": "AAPL", "fund": "f1", "alertname": "X"}, alert_id="alr-2",
               severity="warning", text="other words", ts=NOW + dt.timedelta(minutes=5))
    assert a.fingerprint == b.fingerprint == alert_fingerprint(dict(a.labels))
    assert len(a.fingerprint) == 16
    assert _alert(labels={"alertname": "X", "fund": "f2", "symbol": "AAPL"}).fingerprint \
        != a.fingerprint
    # a value cannot pose as a name/value boundary: the separators are refused characters
    assert alert_fingerprint({"a": "b", "c": "d"}) != alert_fingerprint({"a": "bc", "": "d"})


def test_labels_must_name_the_alert_and_be_label_shaped() -> None:
    with pytest.raises(ValidationFailed, match="alertname"):
        parse_message(Alert, _alert().model_dump() | {"labels": {"fund": "f1"}})
    for bad in ({"alertname": "X", "bad-name": "v"}, {"alertname": "X", "k": ""},
                {"alertname": "X", "k": "line\nbreak"}, {"alertname": "X", "k": "v" * 257}):
        with pytest.raises(ValidationFailed) as err:
            parse_message(Alert, _alert().model_dump() | {"labels": bad})
        assert err.value.context["errors"][0]["field"].startswith("labels")


def test_status_and_times() -> None:
    firing = _alert()
    assert firing.status is AlertStatus.FIRING and firing.starts_at == NOW
    assert firing.ends_at is None
    with pytest.raises(ValidationFailed, match="ends_at"):
        parse_message(Alert, firing.model_dump() | {"status": "resolved"})
    with pytest.raises(ValidationFailed, match="before starts_at"):
        parse_message(Alert, firing.model_dump() | {"ends_at": NOW - dt.timedelta(seconds=1)})
    resolved = _alert(status="resolved", ends_at=NOW + dt.timedelta(minutes=1),
                      starts_at=NOW - dt.timedelta(hours=1))
    again = parse_message(Alert, resolved.to_json())
    assert again == resolved and again.status is AlertStatus.RESOLVED


@pytest.mark.parametrize("version", [1, 2])
def test_older_alerts_read_as_unlabelled_firing_ones(version: int) -> None:
    old = {"schema_version": version, "alert_id": "alr-old", "severity": "warning",
           "source": "oms", "text": "drawdown 4%", "context": {"fund": "core"},
           "ts": "2024-03-01T14:30:00Z"}
    alert = parse_message(Alert, json.dumps(old))
    assert alert.schema_version == 3
    assert alert.labels == {"alertname": "unlabelled", "alert_id": "alr-old", "service": "oms"}
    assert alert.status is AlertStatus.FIRING
    assert alert.starts_at == alert.ts and alert.ends_at is None
    assert parse_message(Alert, alert.to_json()) == alert


def test_alert_labels_keep_the_scope_and_drop_what_varies() -> None:
    labels = alert_labels("ReconciliationBreak", "mts1b-treasury",
                          {"fund_id": "f1", "symbol": "AAPL", "difference": "3", "tries": 2,
                           "order_id": "ord-1", "strategy_id": "", "broker": "ib\nx"})
    assert labels == {"alertname": "ReconciliationBreak", "service": "mts1b-treasury",
                      "fund": "f1", "symbol": "AAPL", "order_id": "ord-1", "broker": "ib x"}
    _alert(labels=labels)  # always a valid label set


def test_heartbeat_is_registered_per_service_and_bounded() -> None:
    beat = Heartbeat(service="mts1b-oms", interval_s=5, started_at=NOW, ts=NOW)
    assert beat.instance == "default"
    assert model_for_subject("mts.v1.operations.heartbeats.mts1b-oms") is Heartbeat
    check_publishable("mts.v1.operations.heartbeats.mts1b-oms", beat)
    for bad in (0, -1, 3601, float("inf")):
        with pytest.raises(ValidationFailed, match="interval_s"):
            parse_message(Heartbeat, beat.model_dump() | {"interval_s": bad})


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []

    @property
    def name(self) -> str:
        return "memory"

    async def send(self, key: str, alerts: Sequence[Alert]) -> None:
        self.sent.append((key, [a.fingerprint for a in alerts]))


def test_a_plugin_sink_meets_the_protocol() -> None:
    sink = _Sink()
    assert isinstance(sink, AlertSink) and missing_members(sink, AlertSink) == []
    assert "send" in missing_members(object(), AlertSink)
    asyncio.run(sink.send("n-1", [_alert()]))  # foundation's test extra has no async plugin
    assert sink.sent == [("n-1", [_alert().fingerprint])]


def test_a_delivery_error_says_when_to_try_again() -> None:
    err = AlertDeliveryError("429 from telegram", retry_after=7.0, chat="-100")
    assert err.retry_after == 7.0 and not err.permanent
    assert err.context["chat"] == "-100" and err.code == "OPERATIONS.ALERT_DELIVERY"
    assert AlertDeliveryError("no such chat", permanent=True).retry_after is None
