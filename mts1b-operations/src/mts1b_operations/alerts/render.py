"""What a notification says: the lines of one group of alerts, as Telegram HTML parts, as an
e-mail's plain text, and as a webhook's JSON.

Why lines first: Telegram refuses a message over 4,096 characters (counted after entities
parsing) and one whose HTML does not parse, and alert bridges that cut a long message at a byte
offset lose it or break a tag in half. Here every line is plain text with a style; a part is a
whole number of lines, each escaped and wrapped on its own, so every part is valid HTML; only a
single line longer than a part is cut, and it is cut in its plain text, before escaping, so an
entity (``&amp;``) or a surrogate pair is never split. Parts are numbered ``(1/3)``.
Length is counted in UTF-16 code units, as Telegram counts entity offsets: an emoji counts two.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mts1b_foundation import Alert, AlertStatus

__all__ = ["TELEGRAM_LIMIT", "Line", "email_subject", "notification_lines", "plain_text",
           "split_parts", "telegram_parts", "utf16_len", "webhook_payload"]

TELEGRAM_LIMIT = 4096
_MARKER_ROOM = 16  # "(999/999)\n" and some slack


@dataclass(frozen=True)
class Line:
    """One line of a notification: plain text, shown bold or not."""

    text: str
    bold: bool = False


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _counts(alerts: Sequence[Alert]) -> str:
    firing = sum(1 for a in alerts if a.status is AlertStatus.FIRING)
    resolved = len(alerts) - firing
    parts = ([f"FIRING:{firing}"] if firing else []) + ([f"RESOLVED:{resolved}"]
                                                        if resolved else [])
    return "[" + ", ".join(parts) + "]"


def _common_labels(alerts: Sequence[Alert]) -> dict[str, str]:
    if not alerts:
        return {}
    common = dict(alerts[0].labels)
    for alert in alerts[1:]:
        common = {k: v for k, v in common.items() if alert.labels.get(k) == v}
    return common


def email_subject(alerts: Sequence[Alert]) -> str:
    common = _common_labels(alerts)
    scope = " ".join(f"{k}={v}" for k, v in sorted(common.items()))
    return f"{_counts(alerts)} {scope}".strip()[:200]


def notification_lines(alerts: Sequence[Alert]) -> list[Line]:
    """The lines of one notification: a header with the labels the alerts share, then per
    alert its status, name and severity, its other labels, its text, its times and its
    fingerprint (what ``alerts ack`` and ``alerts silence`` take)."""
    lines = [Line(email_subject(alerts), bold=True)]
    common = _common_labels(alerts)
    for alert in alerts:
        lines.append(Line(""))
        lines.append(Line(f"{alert.status.value.upper()} {alert.alertname} "
                          f"({alert.severity.value})", bold=True))
        own = {k: v for k, v in sorted(alert.labels.items())
               if k != "alertname" and common.get(k) != v}
        if own:
            lines.append(Line(" ".join(f"{k}={v}" for k, v in own.items())))
        lines.extend(Line(text) for text in alert.text.splitlines() if text.strip())
        since = f"since {alert.starts_at:%Y-%m-%d %H:%M:%S}Z"
        if alert.ends_at is not None and alert.status is AlertStatus.RESOLVED:
            since += f", ended {alert.ends_at:%Y-%m-%d %H:%M:%S}Z"
        lines.append(Line(f"{since} - fingerprint {alert.fingerprint}"))
    return lines


def _cut(line: Line, room: int) -> list[Line]:
    """``line`` in pieces of at most ``room`` UTF-16 units, cut between code points."""
    pieces: list[Line] = []
    current: list[str] = []
    size = 0
    for char in line.text:
        width = utf16_len(char)
        if size + width > room:
            pieces.append(Line("".join(current), line.bold))
            current, size = [], 0
        current.append(char)
        size += width
    pieces.append(Line("".join(current), line.bold))
    return pieces


def split_parts(lines: Sequence[Line], limit: int = TELEGRAM_LIMIT) -> list[list[Line]]:
    """Whole lines packed into parts whose visible text (lines, the newlines between them and
    the part marker) stays within ``limit``."""
    room = limit - _MARKER_ROOM
    if room < 1:
        raise ValueError(f"limit {limit} leaves no room for text")
    parts: list[list[Line]] = [[]]
    size = 0
    for whole in lines:
        for line in (_cut(whole, room) if utf16_len(whole.text) > room else [whole]):
            width = utf16_len(line.text) + (1 if parts[-1] else 0)
            if parts[-1] and size + width > room:
                parts.append([])
                width = utf16_len(line.text)
                size = 0
            parts[-1].append(line)
            size += width
    return [p for p in parts if any(line.text.strip() for line in p)]


def _html(line: Line) -> str:
    escaped = html.escape(line.text, quote=False)
    return f"<b>{escaped}</b>" if line.bold and escaped else escaped


def telegram_parts(alerts: Sequence[Alert], limit: int = TELEGRAM_LIMIT, *,
                   key: str | None = None) -> list[str]:
    """The ``parse_mode=HTML`` texts of one notification, each within ``limit``; ``key`` (the
    notification's) ends it, so a copy sent again after a crash is recognisable."""
    lines = notification_lines(alerts) + ([Line(f"ref {key}")] if key else [])
    parts = split_parts(lines, limit)
    texts = ["\n".join(_html(line) for line in part) for part in parts]
    if len(texts) == 1:
        return texts
    return [f"({i}/{len(texts)})\n{text}" for i, text in enumerate(texts, 1)]


def plain_text(alerts: Sequence[Alert]) -> str:
    return "\n".join(line.text for line in notification_lines(alerts)) + "\n"


def webhook_payload(key: str, alerts: Sequence[Alert]) -> dict[str, Any]:
    """Alertmanager's webhook shape (version 4), with our key: what a generic receiver reads."""
    firing = any(a.status is AlertStatus.FIRING for a in alerts)
    return {
        "version": "4", "key": key, "status": "firing" if firing else "resolved",
        "commonLabels": _common_labels(alerts),
        "alerts": [{"status": a.status.value, "labels": dict(a.labels),
                    "annotations": {"summary": a.text, "severity": a.severity.value,
                                    "source": a.source},
                    "startsAt": a.starts_at.isoformat(),
                    "endsAt": a.ends_at.isoformat() if a.ends_at else None,
                    "fingerprint": a.fingerprint} for a in alerts],
    }
