"""The alert router's Alertmanager semantics, on a real PostgreSQL schema and a clock the test
moves: dedupe, grouping (wait, interval), repeat, resolve timeout, inhibition, silences,
acknowledgements, flap suppression, missing heartbeats."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from mts1b_foundation import Alert, AlertStatus, Heartbeat, TradingState, TradingStateChange
from mts1b_operations.alerts.config import AlertsConfig, load_alerts_config
from mts1b_operations.alerts.errors import AlertsError, AlertsInputError
from mts1b_operations.alerts.router import Router, halt_alert
from mts1b_operations.alerts.store import AlertsDb

T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


def _config(**changes: Any) -> AlertsConfig:
    base: dict[str, Any] = {
        "group_wait": 30, "group_interval": 300, "repeat_interval": 3600,
        "resolve_timeout": 600, "flap_window": 600, "flap_threshold": 4,
        "receivers": [{"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:9/x"}]}
    base.update(changes)
    return load_alerts_config(None, environ={}, overrides=base)


async def _router(db: AlertsDb, **changes: Any) -> tuple[Router, Clock]:
    clock = Clock()
    return Router(db, _config(**changes), clock=clock), clock


def alert(name: str = "OrderRejected", status: str = "firing", at: dt.datetime = T0,
          severity: str = "error", **labels: str) -> Alert:
    return Alert(alert_id=f"alr-{uuid.uuid4().hex[:12]}",
                 labels={"alertname": name, "service": "mts1b-oms", **labels},
                 status=AlertStatus(status), severity=severity, source="mts1b-oms",
                 text=f"{name} {labels}", ts=at,
                 ends_at=at if status == "resolved" else None)


async def outbox(db: AlertsDb) -> list[list[tuple[str, str]]]:
    """Each queued notification as sorted [(alertname:fund:order_id, status)], in order."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT alerts FROM outbox ORDER BY id")
    return [sorted((f"{a['labels']['alertname']}:{a['labels'].get('fund', '')}:"
                    f"{a['labels'].get('order_id', '')}", a["status"])
                   for a in json.loads(r["alerts"])) for r in rows]


async def test_dedupe_and_group_wait_then_interval(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db)
    first = alert(fund="f1", order_id="o1")
    assert await router.ingest(first)
    assert not await router.ingest(first)  # a redelivery
    assert not await router.ingest(alert(fund="f1", order_id="o1"))  # raised again: no news
    await router.ingest(alert(fund="f1", order_id="o2"))
    assert await router.tick() == 0  # group_wait (30 s) gathers the group
    clock.advance(30)
    assert await router.tick() == 1
    assert await outbox(db) == [[("OrderRejected:f1:o1", "firing"),
                                 ("OrderRejected:f1:o2", "firing")]]
    # a third order joins the group: notified at the next interval, not after group_wait
    clock.advance(10)
    await router.ingest(alert(fund="f1", order_id="o3", at=clock.at))
    clock.advance(60)
    assert await router.tick() == 0
    clock.advance(240)
    assert await router.tick() == 1
    assert (await outbox(db))[-1] == [("OrderRejected:f1:o1", "firing"),
                                      ("OrderRejected:f1:o2", "firing"),
                                      ("OrderRejected:f1:o3", "firing")]
    # raised again and again, nothing new: no notification until the repeat interval (1 h)
    for _ in range(11):
        clock.advance(300)
        for order in ("o1", "o2", "o3"):
            await router.ingest(alert(fund="f1", order_id=order, at=clock.at))
        assert await router.tick() == 0
    clock.advance(300)
    assert await router.tick() == 1  # the hourly repeat
    assert len(await outbox(db)) == 3


async def test_another_fund_is_another_group_and_critical_skips_the_wait(
        alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db)
    await router.ingest(alert(fund="f1"))
    await router.ingest(alert(name="KillSwitch", severity="critical", fund="f2"))
    assert await router.tick() == 1  # the page went at once
    assert await outbox(db) == [[("KillSwitch:f2:", "firing")]]
    clock.advance(30)
    assert await router.tick() == 1
    assert (await outbox(db))[-1] == [("OrderRejected:f1:", "firing")]


async def test_resolution_sent_and_resolve_timeout(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db)
    await router.ingest(alert(fund="f1", order_id="o1"))
    await router.ingest(alert(fund="f1", order_id="o2"))
    clock.advance(30)
    await router.tick()
    clock.advance(5)
    await router.ingest(alert(fund="f1", order_id="o1", status="resolved", at=clock.at))
    clock.advance(300)
    assert await router.tick() == 1
    assert (await outbox(db))[-1] == [("OrderRejected:f1:o1", "resolved"),
                                      ("OrderRejected:f1:o2", "firing")]
    # o2 is never raised again: after resolve_timeout (600 s since raised) the router resolves
    clock.advance(300)
    assert await router.tick() == 1
    assert (await outbox(db))[-1] == [("OrderRejected:f1:o2", "resolved")]
    views = await router.list_alerts(include_resolved=True)
    o2 = next(v for v in views if v.alert.labels.get("order_id") == "o2")
    assert o2.alert.ends_at == T0 + dt.timedelta(seconds=600)


async def test_a_halted_fund_inhibits_its_order_alerts_only(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db)
    halt = halt_alert(TradingStateChange(scope="fund", scope_id="f1", state=TradingState.HALTED,
                                         actor="ops", reason="drawdown", ts=T0))
    assert halt is not None and halt.labels["fund"] == "f1"
    await router.ingest(halt)
    await router.ingest(alert(fund="f1", order_id="o1"))
    await router.ingest(alert(fund="f2", order_id="o9"))
    clock.advance(30)
    await router.tick()
    sent = [item for n in await outbox(db) for item in n]
    assert ("TradingHalted:f1:", "firing") in sent
    assert ("OrderRejected:f2:o9", "firing") in sent
    assert ("OrderRejected:f1:o1", "firing") not in sent
    views = {v.alert.labels.get("order_id"): v for v in await router.list_alerts()}
    assert views["o1"].inhibited and not views["o9"].inhibited
    # the fund resumes: its order alert is no longer muted and goes out at the next interval
    resumed = halt_alert(TradingStateChange(scope="fund", scope_id="f1",
                                            state=TradingState.ACTIVE, actor="ops",
                                            reason="ok", ts=clock.at))
    assert resumed is not None
    await router.ingest(resumed)
    clock.advance(300)
    await router.tick()
    sent = [item for n in await outbox(db) for item in n]
    assert ("OrderRejected:f1:o1", "firing") in sent
    assert ("TradingHalted:f1:", "resolved") in sent


async def test_silence_and_unsilence(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db)
    with pytest.raises(AlertsInputError, match="matcher"):
        await router.silence(["fund"], duration=dt.timedelta(hours=1), created_by="me",
                             comment="x")
    with pytest.raises(AlertsInputError, match="comment"):
        await router.silence(["fund=f1"], duration=dt.timedelta(hours=1), created_by="me",
                             comment=" ")
    silence_id = await router.silence(["fund=f1", "alertname=~Order.*"],
                                      duration=dt.timedelta(hours=1), created_by="me",
                                      comment="maintenance")
    await router.ingest(alert(fund="f1", order_id="o1"))
    await router.ingest(alert(fund="f2", order_id="o2"))
    clock.advance(30)
    await router.tick()
    assert [n for n in await outbox(db)] == [[("OrderRejected:f2:o2", "firing")]]
    views = {v.alert.labels["fund"]: v for v in await router.list_alerts()}
    assert views["f1"].silenced_by == (silence_id,)
    await router.expire_silence(silence_id)
    with pytest.raises(AlertsError):
        await router.expire_silence(silence_id)
    clock.advance(300)
    await router.tick()
    assert (await outbox(db))[-1] == [("OrderRejected:f1:o1", "firing")]


async def test_ack_mutes_until_resolved(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db, repeat_interval=600, resolve_timeout=7200)
    await router.ingest(alert(fund="f1"))
    clock.advance(30)
    await router.tick()
    fingerprint = alert(fund="f1").fingerprint
    with pytest.raises(AlertsInputError):
        await router.ack("abc", by="me")
    acked = await router.ack(fingerprint[:8], by="me")
    assert acked.fingerprint == fingerprint
    clock.advance(900)  # past the repeat interval: no repeat of an acknowledged alert
    await router.tick()
    assert len(await outbox(db)) == 1
    await router.ingest(alert(fund="f1", status="resolved", at=clock.at))
    clock.advance(300)
    await router.tick()
    assert (await outbox(db))[-1] == [("OrderRejected:f1:", "resolved")]


async def test_flapping_alert_is_held_and_reported_once(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db, group_wait=0, group_interval=60)
    statuses = ["firing", "resolved", "firing", "resolved", "firing", "resolved", "firing"]
    for status in statuses:
        await router.ingest(alert(fund="f1", status=status, at=clock.at))
        await router.tick()
        clock.advance(61)
    sent = [item for n in await outbox(db) for item in n]
    assert sent.count(("AlertFlapping:f1:", "firing")) == 1
    own = [s for s in sent if s[0] == "OrderRejected:f1:"]
    assert len(own) < len(statuses) - 1  # held once flapping (at the 4th change)
    views = {v.alert.alertname: v for v in await router.list_alerts()}
    assert views["OrderRejected"].flapping
    clock.advance(700)  # stable for a whole window
    await router.tick()
    clock.advance(61)
    await router.tick()
    sent = [item for n in await outbox(db) for item in n]
    assert ("AlertFlapping:f1:", "resolved") in sent
    views = {v.alert.alertname: v for v in await router.list_alerts(include_resolved=True)}
    assert not views["OrderRejected"].flapping


async def test_missing_heartbeat_fires_and_the_next_one_resolves(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db, group_wait=0, heartbeat_misses=3)
    await router.heartbeat(Heartbeat(service="mts1b-oms", interval_s=10, started_at=T0, ts=T0))
    clock.advance(29)
    await router.tick()
    assert await outbox(db) == []
    clock.advance(2)
    await router.tick()
    assert await outbox(db) == [[("HeartbeatMissing::", "firing")]]
    clock.advance(3600)  # still missing: not resolved by the resolve timeout
    await router.tick()
    assert all(n[0][1] == "firing" for n in await outbox(db))
    await router.heartbeat(Heartbeat(service="mts1b-oms", interval_s=200, started_at=clock.at,
                                     ts=clock.at))  # (beats slower now: not missing again)
    clock.advance(300)  # the group's next interval
    await router.tick()
    assert (await outbox(db))[-1] == [("HeartbeatMissing::", "resolved")]


async def test_receivers_route_by_matchers(alerts_db: AlertsDb) -> None:
    db = alerts_db
    router, clock = await _router(db, receivers=[
        {"kind": "webhook", "name": "all", "url": "http://127.0.0.1:9/a"},
        {"kind": "webhook", "name": "f2-only", "url": "http://127.0.0.1:9/b",
         "match": ["fund=f2"], "send_resolved": False}])
    await router.ingest(alert(fund="f1"))
    await router.ingest(alert(fund="f2"))
    clock.advance(30)
    await router.tick()
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT receiver, count(*) AS n FROM outbox GROUP BY receiver")
    assert {r["receiver"]: r["n"] for r in rows} == {"all": 2, "f2-only": 1}


async def test_producers_alerts_deduplicate(alerts_db: AlertsDb, fresh_bus: Any) -> None:
    """``raise_alert`` (a new random id each time) raised twice for one fund's condition is one
    alert to the router; another fund's is another."""
    from mts1b_platform.alerts import raise_alert

    await fresh_bus.declare_streams(["operations"])
    router, _clock = await _router(alerts_db)
    raised = [await raise_alert(fresh_bus, "mts1b-portfolio", f"fund {fund} not composed ({i})",
                                alertname="FundNotComposed", context={"fund_id": fund})
              for i, fund in enumerate(["f1", "f1", "f2"])]
    assert raised[0].alert_id != raised[1].alert_id
    assert raised[0].labels == {"alertname": "FundNotComposed", "service": "mts1b-portfolio",
                                "fund": "f1"}
    assert [await router.ingest(a) for a in raised] == [True, False, True]
    assert len(await router.list_alerts()) == 2
