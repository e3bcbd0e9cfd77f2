"""The alert router: Alertmanager's semantics over the router's PostgreSQL state.

- **Dedupe**: an alert is its fingerprint (the hash of its labels). Raising it again updates
  it; only a change of status (firing <-> resolved) is news. A redelivered message (same
  ``alert_id``) or one older than what is held changes nothing.
- **Grouping**: alerts with the same values of ``group_by`` form a group, notified together.
  A new group waits ``group_wait`` (to gather its first alerts), then is evaluated every
  ``group_interval``; it notifies when one of its alerts changed since the last notification,
  or when ``repeat_interval`` passed with alerts still firing. A ``critical`` alert that fires
  skips the wait (a page must not sit 30 s in a queue).
- **Resolution**: a firing alert that is not raised again within ``resolve_timeout`` (or whose
  ``ends_at`` passed) is resolved by the router, as Alertmanager does; producers need not
  send the resolution themselves. The router's own alerts (``HeartbeatMissing``,
  ``AlertFlapping``, ``TradingHalted``) last until their cause ends instead.
- **Inhibition**: while an alert matching a rule's ``source`` fires, alerts matching its
  ``target`` with the same ``equal`` labels are muted (a fund's ``TradingHalted`` mutes that
  fund's per-order alerts).
- **Silences** mute the alerts their matchers match between two times; **acknowledgement**
  mutes one alert until it resolves (and its resolution is still sent).
- **Flap suppression**: an alert that changes status ``flap_threshold`` times within
  ``flap_window`` is muted and replaced by one ``AlertFlapping`` alert, resolved once it has
  been stable for a whole window (Alertmanager leaves this to Prometheus; its users keep
  asking for it - grafana/mimir#10989).
- **Heartbeats**: a service whose heartbeat is ``heartbeat_misses`` intervals late raises
  ``HeartbeatMissing`` (critical), resolved by its next heartbeat.

Notifications are rows of the outbox, written in the transaction that decides them; the
dispatcher delivers them (:mod:`~mts1b_operations.alerts.dispatch`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mts1b_foundation import (
    Alert,
    AlertStatus,
    Clock,
    Heartbeat,
    Severity,
    SystemClock,
    TradingState,
    TradingStateChange,
    parse_message,
)

from mts1b_operations.alerts.config import AlertsConfig
from mts1b_operations.alerts.errors import AlertsError, AlertsInputError
from mts1b_operations.alerts.matchers import Matcher, matches_all, parse_matchers
from mts1b_operations.alerts.store import AlertsDb

__all__ = ["SOURCE", "AlertView", "Router", "halt_alert"]

SOURCE = "mts1b-operations"
_FIRING, _RESOLVED = AlertStatus.FIRING.value, AlertStatus.RESOLVED.value


@dataclass(frozen=True)
class AlertView:
    """One alert as ``alerts list`` shows it."""

    alert: Alert
    status: str
    notified: str | None
    silenced_by: tuple[str, ...]
    inhibited: bool
    flapping: bool
    acked_by: str | None


@dataclass(frozen=True)
class _Silence:
    silence_id: str
    matchers: tuple[Matcher, ...]


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def halt_alert(change: TradingStateChange) -> Alert | None:
    """The ``TradingHalted`` alert a kill-switch change means: firing when a fund (or
    everything) is HALTED, resolved when it is not any more; None for a strategy's state."""
    if change.scope == "strategy":
        return None
    labels = {"alertname": "TradingHalted", "service": "mts1b-oms"}
    labels.update({"fund": change.scope_id} if change.scope == "fund" else {"scope": "global"})
    halted = change.state is TradingState.HALTED
    return Alert(alert_id=_new_id("halt"), labels=labels,
                 status=AlertStatus.FIRING if halted else AlertStatus.RESOLVED,
                 severity=Severity.CRITICAL if halted else Severity.INFO, source=SOURCE,
                 text=f"{change.scope} {change.scope_id} is {change.state.value} "
                      f"(by {change.actor}: {change.reason})"[:4000],
                 ts=change.ts, ends_at=None if halted else change.ts)


class Router:
    """The router's decisions over an :class:`AlertsDb` (see the module)."""

    def __init__(self, db: AlertsDb, config: AlertsConfig, *, clock: Clock | None = None,
                 on_notify: Callable[[], None] | None = None) -> None:
        self.db = db
        self.config = config
        self.clock = clock or SystemClock()
        self.on_notify = on_notify
        self._inhibit = [(parse_matchers(r.source), parse_matchers(r.target), r.equal)
                         for r in config.inhibit]
        self._receivers = [(r.name, r.matchers, r.send_resolved) for r in config.receivers]

    # --- grouping ------------------------------------------------------------------------

    def group_of(self, labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """The group key and labels of an alert: its values of ``group_by`` (``...``: all)."""
        names = sorted(labels) if "..." in self.config.group_by else self.config.group_by
        chosen = {n: labels[n] for n in names if n in labels}
        return json.dumps(chosen, sort_keys=True, separators=(",", ":")), chosen

    # --- ingest --------------------------------------------------------------------------

    async def ingest(self, alert: Alert, *, count_flip: bool = True) -> bool:
        """Take one alert (raised or resolved); True when it changed what the router holds.
        ``count_flip`` False: a change the router inferred (a timeout), not the producer's
        flapping."""
        now = self.clock.now()
        fingerprint = alert.fingerprint
        group_key, group_labels = self.group_of(alert.labels)
        flapping_started: Alert | None = None
        async with self.db.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT status, updated_at, last_alert_id, flips, flapping, alert, acked_at, "
                "acked_by FROM alerts WHERE fingerprint = $1 FOR UPDATE", fingerprint)
            if row is not None and (row["last_alert_id"] == alert.alert_id
                                    or alert.ts < row["updated_at"]):
                return False
            status = alert.status.value
            changed = row is None or row["status"] != status
            flips: list[float] = json.loads(row["flips"]) if row is not None else []
            flapping = bool(row["flapping"]) if row is not None else False
            acked_at = row["acked_at"] if row is not None else None
            acked_by = row["acked_by"] if row is not None else None
            if row is not None:
                held = parse_message(Alert, row["alert"])
                if row["status"] == _FIRING and status == _FIRING:
                    alert = alert.model_copy(update={"starts_at": held.starts_at})
            if row is not None and changed and status == _FIRING:
                acked_at = acked_by = None  # a new occurrence: an old acknowledgement is spent
            if row is not None and changed and count_flip:
                horizon = now.timestamp() - self.config.flap_window
                flips = [t for t in flips if t > horizon] + [now.timestamp()]
                if not flapping and len(flips) >= self.config.flap_threshold:
                    flapping = True
                    flapping_started = self._flapping_alert(alert, len(flips), firing=True)
            await conn.execute(
                "INSERT INTO alerts (fingerprint, group_key, labels, alert, status, updated_at, "
                "last_alert_id, flips, flapping, acked_at, acked_by) VALUES "
                "($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8::jsonb, $9, $10, $11) "
                "ON CONFLICT (fingerprint) DO UPDATE SET alert = EXCLUDED.alert, "
                "status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, "
                "last_alert_id = EXCLUDED.last_alert_id, flips = EXCLUDED.flips, "
                "flapping = EXCLUDED.flapping, acked_at = EXCLUDED.acked_at, "
                "acked_by = EXCLUDED.acked_by",
                fingerprint, group_key, json.dumps(dict(alert.labels)),
                alert.model_dump_json(), status, max(alert.ts, now), alert.alert_id,
                json.dumps(flips), flapping, acked_at, acked_by)
            if changed:
                urgent = status == _FIRING and alert.severity is Severity.CRITICAL
                await self._schedule(conn, group_key, group_labels, now, urgent=urgent)
        if flapping_started is not None:
            await self.ingest(flapping_started)
        return changed

    async def _schedule(self, conn: Any, group_key: str, labels: Mapping[str, str],
                        now: dt.datetime, *, urgent: bool) -> None:
        """A group with news is evaluated at its next tick; a group without one (new, or
        emptied) after ``group_wait``; an urgent one now."""
        first = now if urgent else now + dt.timedelta(seconds=self.config.group_wait)
        await conn.execute(
            "INSERT INTO alert_groups (group_key, labels, next_flush_at) VALUES "
            "($1, $2::jsonb, $3) ON CONFLICT (group_key) DO UPDATE SET next_flush_at = CASE "
            "WHEN alert_groups.next_flush_at IS NULL THEN EXCLUDED.next_flush_at "
            "WHEN $4 THEN LEAST(alert_groups.next_flush_at, EXCLUDED.next_flush_at) "
            "ELSE alert_groups.next_flush_at END",
            group_key, json.dumps(dict(labels)), first, urgent)

    def _flapping_alert(self, alert: Alert, changes: int, *, firing: bool) -> Alert:
        now = self.clock.now()
        labels = {**alert.labels, "alertname": "AlertFlapping", "flapping": alert.alertname}
        return Alert(alert_id=_new_id("flap"), labels=labels, severity=alert.severity,
                     status=AlertStatus.FIRING if firing else AlertStatus.RESOLVED,
                     source=SOURCE, ts=now, ends_at=None if firing else now,
                     text=(f"{alert.alertname} changed state {changes} times within "
                           f"{self.config.flap_window:g} s; its own notifications are held "
                           "until it stays put for that long") if firing else
                          f"{alert.alertname} is stable again")

    async def heartbeat(self, beat: Heartbeat) -> None:
        """Record a service's heartbeat; one that was missing resolves its alert."""
        async with self.db.pool.acquire() as conn, conn.transaction():
            was_missing = await conn.fetchval(
                "SELECT missing FROM heartbeats WHERE service = $1 AND instance = $2 "
                "FOR UPDATE", beat.service, beat.instance)
            await conn.execute(
                "INSERT INTO heartbeats (service, instance, interval_s, last_ts, started_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (service, instance) DO UPDATE SET "
                "interval_s = EXCLUDED.interval_s, last_ts = GREATEST(heartbeats.last_ts, "
                "EXCLUDED.last_ts), started_at = EXCLUDED.started_at, missing = false",
                beat.service, beat.instance, beat.interval_s, beat.ts, beat.started_at)
        if was_missing:
            await self.ingest(self._heartbeat_alert(beat.service, beat.instance, beat.ts,
                                                    missing=False))

    def _heartbeat_alert(self, service: str, instance: str, last: dt.datetime, *,
                         missing: bool) -> Alert:
        now = self.clock.now()
        return Alert(alert_id=_new_id("hb"),
                     labels={"alertname": "HeartbeatMissing", "service": service,
                             "instance": instance},
                     status=AlertStatus.FIRING if missing else AlertStatus.RESOLVED,
                     severity=Severity.CRITICAL if missing else Severity.INFO, source=SOURCE,
                     text=(f"no heartbeat from {service} ({instance}) since "
                           f"{last:%Y-%m-%d %H:%M:%S}Z") if missing else
                          f"{service} ({instance}) is beating again",
                     ts=now, ends_at=None if missing else now)

    # --- the periodic work ---------------------------------------------------------------

    async def tick(self) -> int:
        """Resolve what timed out, raise missing heartbeats, end flapping, evaluate the groups
        that are due and drop notifications delivered before ``outbox_retention``; return how
        many notifications were queued."""
        await self._resolve_timed_out()
        await self._check_heartbeats()
        await self._end_flapping()
        queued = await self._flush_due()
        async with self.db.pool.acquire() as conn:  # delivered long ago: no longer needed
            await conn.execute("DELETE FROM outbox WHERE delivered_at < $1", self.clock.now()
                               - dt.timedelta(seconds=self.config.outbox_retention))
        return queued

    async def _resolve_timed_out(self) -> None:
        now = self.clock.now()
        cutoff = now - dt.timedelta(seconds=self.config.resolve_timeout)
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT alert, updated_at FROM alerts WHERE status = 'firing' AND "
                "(((alert->>'ends_at') IS NOT "
                "NULL AND (alert->>'ends_at')::timestamptz <= $1) OR ((alert->>'ends_at') IS "
                "NULL AND updated_at <= $2 AND alert->>'source' <> $3))",
                now, cutoff, SOURCE)
        for row in rows:
            held = parse_message(Alert, row["alert"])
            ends = held.ends_at or row["updated_at"] + dt.timedelta(
                seconds=self.config.resolve_timeout)
            await self.ingest(held.model_copy(update={
                "alert_id": _new_id("timeout"), "status": AlertStatus.RESOLVED,
                "ends_at": max(ends, held.starts_at), "ts": now}), count_flip=False)

    async def _check_heartbeats(self) -> None:
        now = self.clock.now()
        async with self.db.pool.acquire() as conn:
            late = await conn.fetch(
                "UPDATE heartbeats SET missing = true WHERE NOT missing AND last_ts + "
                "make_interval(secs => interval_s * $2) < $1 "
                "RETURNING service, instance, last_ts", now, self.config.heartbeat_misses)
        for row in late:
            await self.ingest(self._heartbeat_alert(row["service"], row["instance"],
                                                    row["last_ts"], missing=True))

    async def _end_flapping(self) -> None:
        now = self.clock.now()
        horizon = now.timestamp() - self.config.flap_window
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch("SELECT fingerprint, group_key, alert, flips FROM alerts "
                                    "WHERE flapping")
        for row in rows:
            if any(t > horizon for t in json.loads(row["flips"])):
                continue
            held = parse_message(Alert, row["alert"])
            async with self.db.pool.acquire() as conn, conn.transaction():
                await conn.execute("UPDATE alerts SET flapping = false, flips = '[]' "
                                   "WHERE fingerprint = $1", row["fingerprint"])
                group_key, labels = self.group_of(held.labels)
                await self._schedule(conn, group_key, labels, now, urgent=True)
            await self.ingest(self._flapping_alert(held, 0, firing=False))

    async def _flush_due(self) -> int:
        now = self.clock.now()
        async with self.db.pool.acquire() as conn:
            due = await conn.fetch("SELECT group_key FROM alert_groups WHERE next_flush_at <= $1 "
                                   "ORDER BY next_flush_at", now)
        queued = 0
        for row in due:
            queued += await self.flush(row["group_key"])
        if queued and self.on_notify is not None:
            self.on_notify()
        return queued

    # --- muting --------------------------------------------------------------------------

    async def _silences(self, conn: Any, now: dt.datetime) -> list[_Silence]:
        rows = await conn.fetch("SELECT silence_id, matchers FROM silences WHERE starts_at <= $1 "
                                "AND ends_at > $1", now)
        return [_Silence(r["silence_id"], parse_matchers(json.loads(r["matchers"])))
                for r in rows]

    async def _inhibitors(self, conn: Any) -> list[Mapping[str, str]]:
        rows = await conn.fetch("SELECT labels FROM alerts WHERE status = 'firing'")
        return [json.loads(r["labels"]) for r in rows]

    def _inhibited(self, labels: Mapping[str, str],
                   firing: Sequence[Mapping[str, str]]) -> bool:
        for source, target, equal in self._inhibit:
            if not matches_all(target, labels):
                continue
            for other in firing:
                if other == labels or not matches_all(source, other):
                    continue
                if all(other.get(n, "") == labels.get(n, "") for n in equal):
                    return True
        return False

    # --- notifying -----------------------------------------------------------------------

    async def flush(self, group_key: str) -> int:
        """Evaluate one group now: queue its notification if it has news or is due a repeat;
        return the outbox rows written."""
        now = self.clock.now()
        queued = 0
        async with self.db.pool.acquire() as conn, conn.transaction():
            group = await conn.fetchrow("SELECT last_notified_at FROM alert_groups WHERE "
                                        "group_key = $1 FOR UPDATE", group_key)
            if group is None:
                return 0
            rows = await conn.fetch("SELECT fingerprint, alert, status, notified, flapping, "
                                    "acked_at FROM alerts WHERE group_key = $1 ORDER BY "
                                    "alert->>'starts_at', fingerprint FOR UPDATE", group_key)
            silences = await self._silences(conn, now)
            firing = await self._inhibitors(conn)
            send: list[tuple[str, Alert]] = []
            keep_evaluating = False
            for row in rows:
                alert = parse_message(Alert, row["alert"])
                muted = (row["flapping"] or (row["acked_at"] is not None
                                            and row["status"] == _FIRING)
                         or any(matches_all(s.matchers, alert.labels) for s in silences)
                         or self._inhibited(alert.labels, firing))
                if row["status"] == _FIRING:
                    keep_evaluating = True
                if not muted and (row["status"] == _FIRING or row["notified"] == _FIRING):
                    send.append((row["notified"], alert))
            last = group["last_notified_at"]
            news = any(notified != alert.status.value for notified, alert in send)
            repeat = (last is not None and any(a.status is AlertStatus.FIRING for _, a in send)
                      and (now - last).total_seconds() >= self.config.repeat_interval)
            if send and (news or repeat):
                alerts = [a for _, a in send]
                for name, matchers, send_resolved in self._receivers:
                    chosen = [a for a in alerts if matches_all(matchers, a.labels)
                              and (send_resolved or a.status is AlertStatus.FIRING)]
                    if not chosen:
                        continue
                    await conn.execute(
                        "INSERT INTO outbox (receiver, group_key, alerts, created_at, "
                        "next_attempt_at) VALUES ($1, $2, $3::jsonb, $4, $4)", name, group_key,
                        json.dumps([json.loads(a.model_dump_json()) for a in chosen]), now)
                    queued += 1
                await conn.executemany(
                    "UPDATE alerts SET notified = $2 WHERE fingerprint = $1",
                    [(a.fingerprint, a.status.value) for a in alerts])
                last = now
            # resolved alerts nobody is owed a word about, and stable for a flap window, go
            await conn.execute(
                "DELETE FROM alerts WHERE group_key = $1 AND status = 'resolved' AND "
                "notified IS DISTINCT FROM 'firing' AND NOT flapping AND "
                "updated_at < $2", group_key,
                now - dt.timedelta(seconds=self.config.flap_window))
            pending = keep_evaluating or any(a.status is AlertStatus.RESOLVED
                                             and n == _FIRING for n, a in send)
            await conn.execute(
                "UPDATE alert_groups SET next_flush_at = $2, last_notified_at = $3 "
                "WHERE group_key = $1", group_key,
                now + dt.timedelta(seconds=self.config.group_interval) if pending else None,
                last)
        return queued

    # --- what people do ------------------------------------------------------------------

    async def silence(self, matchers: Sequence[str], *, duration: dt.timedelta,
                      created_by: str, comment: str,
                      starts_at: dt.datetime | None = None) -> str:
        """Mute the alerts ``matchers`` match for ``duration``; return the silence's id."""
        parsed = parse_matchers(matchers)
        if not parsed:
            raise AlertsInputError("matchers", list(matchers), "a silence needs at least one "
                                                               "matcher")
        if duration.total_seconds() <= 0:
            raise AlertsInputError("duration", str(duration), "must be positive")
        if not comment.strip():
            raise AlertsInputError("comment", comment, "say why (it is what others read)")
        start = starts_at or self.clock.now()
        silence_id = _new_id("sil")
        async with self.db.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO silences (silence_id, matchers, starts_at, ends_at, created_by, "
                "comment) VALUES ($1, $2::jsonb, $3, $4, $5, $6)", silence_id,
                json.dumps([str(m) for m in parsed]), start, start + duration, created_by,
                comment)
        return silence_id

    async def expire_silence(self, silence_id: str) -> None:
        """End a silence now; the alerts it muted are notified at their group's next tick."""
        now = self.clock.now()
        async with self.db.pool.acquire() as conn:
            done = await conn.execute("UPDATE silences SET ends_at = $2 WHERE silence_id = $1 "
                                      "AND ends_at > $2", silence_id, now)
        if done.endswith(" 0"):
            raise AlertsError(f"no active silence {silence_id!r}", silence_id=silence_id)

    async def silences(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM silences WHERE ends_at > $1 ORDER BY "
                                    "starts_at", now)
        return [{**dict(r), "matchers": json.loads(r["matchers"])} for r in rows]

    async def ack(self, fingerprint: str, *, by: str) -> Alert:
        """Acknowledge a firing alert (a fingerprint or a unique prefix of one, at least 6
        characters): no more notifications of it until it resolves."""
        if len(fingerprint) < 6 or not fingerprint.isalnum():
            raise AlertsInputError("fingerprint", fingerprint, "give at least its first 6 "
                                                               "characters")
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch(
                "UPDATE alerts SET acked_at = $2, acked_by = $3 WHERE fingerprint IN ("
                "SELECT fingerprint FROM alerts WHERE fingerprint LIKE $1 || '%' AND "
                "status = 'firing' AND (SELECT count(*) FROM alerts WHERE fingerprint LIKE "
                "$1 || '%') = 1) RETURNING alert", fingerprint, self.clock.now(), by)
        if not rows:
            raise AlertsError(f"no single firing alert with fingerprint {fingerprint}*",
                              fingerprint=fingerprint)
        return parse_message(Alert, rows[0]["alert"])

    async def list_alerts(self, *, include_resolved: bool = False) -> list[AlertView]:
        now = self.clock.now()
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM alerts ORDER BY updated_at DESC")
            silences = await self._silences(conn, now)
            firing = await self._inhibitors(conn)
        views = []
        for row in rows:
            if row["status"] == _RESOLVED and not include_resolved:
                continue
            alert = parse_message(Alert, row["alert"])
            views.append(AlertView(
                alert, row["status"], row["notified"],
                tuple(s.silence_id for s in silences if matches_all(s.matchers, alert.labels)),
                self._inhibited(alert.labels, firing), row["flapping"], row["acked_by"]))
        return views

