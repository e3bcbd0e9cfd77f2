"""Raise an alert for people: logged, and published on ``mts.v1.operations.alerts.raised``.

Why one helper: every service tells a person the same way (an ``Alert`` with a unique id that
JetStream deduplicates on, labels that say which condition it is, its text capped at the
model's limit, the context as strings), and a failure to publish it must never take the
service down - the log line stays as the record.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping

from mts1b_foundation import Alert, Clock, MtsError, Severity, SystemClock, alert_labels

from mts1b_platform.bus import Bus
from mts1b_platform.logging import get_logger

__all__ = ["ALERT_SUBJECT", "raise_alert"]

ALERT_SUBJECT = "mts.v1.operations.alerts.raised"
_TEXT_LIMIT = 4000


async def raise_alert(bus: Bus, source: str, text: str, *, severity: Severity = Severity.ERROR,
                      clock: Clock | None = None, context: Mapping[str, str] | None = None,
                      alertname: str = "ServiceAlert") -> Alert:
    """Log ``text`` at the severity's level and publish it as an :class:`Alert` from
    ``source`` (e.g. ``mts1b-portfolio``) with ``context`` (what a person filters on: the
    fund, the strategy; its scope keys become the alert's labels, with ``alertname``, so a
    condition raised again is the same alert to the router); returns the alert. A publish that
    fails is logged and swallowed."""
    context = dict(context or {})
    alert = Alert(alert_id=f"alr-{uuid.uuid4().hex[:20]}", severity=severity, source=source,
                  labels=alert_labels(alertname, source, context),
                  text=text[:_TEXT_LIMIT], context=context,
                  ts=(clock or SystemClock()).now())
    log = get_logger(source.replace("-", "_"))
    level = log.warning if severity in (Severity.INFO, Severity.WARNING) else log.error
    level("alert raised", text=text, severity=severity.value, **context)
    try:
        await bus.publish_acked(ALERT_SUBJECT, alert, msg_id=alert.alert_id)
    except MtsError as exc:
        with contextlib.suppress(Exception):
            log.error("alert not published", alert_id=alert.alert_id, error=exc.code)
    return alert
