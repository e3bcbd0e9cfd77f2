"""Pure parts of the alerts: texts split at Telegram's limit without breaking the HTML,
matchers, configuration (secrets never shown), token buckets."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from mts1b_foundation import Alert
from mts1b_operations.alerts.cli import parse_duration
from mts1b_operations.alerts.config import load_alerts_config
from mts1b_operations.alerts.errors import AlertsInputError
from mts1b_operations.alerts.matchers import Matcher, matches_all, parse_matchers
from mts1b_operations.alerts.ratelimit import TokenBucket
from mts1b_operations.alerts.render import (
    TELEGRAM_LIMIT,
    email_subject,
    plain_text,
    telegram_parts,
    utf16_len,
    webhook_payload,
)
from mts1b_operations.testing import telegram_visible_text

NOW = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


def _alert(text: str, **labels: str) -> Alert:
    return Alert(alert_id="alr-1", labels={"alertname": "Break", **labels}, severity="error",
                 source="mts1b-treasury", text=text, ts=NOW)


def test_a_short_notification_is_one_part_of_valid_html() -> None:
    alerts = [_alert("cash <differs> by 5 & more", fund="f1"), _alert("x", fund="f1",
                                                                      symbol="AAPL")]
    [part] = telegram_parts(alerts)
    visible = telegram_visible_text(part)
    assert "cash <differs> by 5 & more" in visible
    assert "[FIRING:2] alertname=Break fund=f1" in visible
    assert alerts[1].fingerprint in visible
    assert email_subject(alerts) == "[FIRING:2] alertname=Break fund=f1"
    assert "symbol=AAPL" in plain_text(alerts)


@pytest.mark.parametrize("unit", ["q", "&", "<b>", "é", "\U0001f525"])
def test_long_texts_split_within_the_limit_without_breaking_anything(unit: str) -> None:
    # long lines (an astral character counts two UTF-16 units, so 3,990 of them make a line
    # longer than a part, cut inside) and many short lines (cut between), in one group, with
    # characters that escape to entities
    n = 3990 // len(unit)
    many = "\n".join(f"line {i} {unit * (50 // len(unit))}" for i in range(60))
    alerts = [_alert(unit * n, fund="f1", n=str(k)) for k in range(3)]
    alerts.append(_alert(many, fund="f1", symbol="MSFT"))
    parts = telegram_parts(alerts)
    assert len(parts) >= 3
    shown = [telegram_visible_text(p) for p in parts]  # every part parses as Telegram HTML
    assert all(utf16_len(s) <= TELEGRAM_LIMIT for s in shown)
    assert all(s.startswith(f"({i}/{len(parts)})\n") for i, s in enumerate(shown, 1))
    whole = "".join(s.split("\n", 1)[1].replace("\n", "") for s in shown)
    assert whole.count(unit) == 3 * n + 60 * (50 // len(unit))  # nothing lost


def test_the_local_telegram_refuses_what_telegram_refuses() -> None:
    for bad in ("<b>open", "a < b", "fish & chips", "<script>x</script>", "</b>"):
        with pytest.raises(ValueError, match="can't parse entities"):
            telegram_visible_text(bad)
    assert telegram_visible_text("<b>a</b> &lt;&amp;&#33;") == "a <&!"


def test_webhook_payload_is_alertmanagers_shape() -> None:
    payload = webhook_payload("k-1", [_alert("t", fund="f1")])
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["commonLabels"] == {"alertname": "Break", "fund": "f1"}
    assert payload["alerts"][0]["fingerprint"] == _alert("t", fund="f1").fingerprint


def test_matchers() -> None:
    labels = {"alertname": "OrderRejected", "fund": "f1", "order_id": "o-1"}
    assert matches_all(parse_matchers(["fund=f1", "alertname=~Order.*"]), labels)
    assert not matches_all(parse_matchers(['fund!="f1"']), labels)
    assert Matcher.parse("symbol!~.+").matches(labels)  # absent reads as ""
    assert not Matcher.parse("order_id=~o").matches(labels)  # anchored, as Alertmanager
    for bad in ("fund", "=x", "fund=~(", "1a=b"):
        with pytest.raises(AlertsInputError, match="matcher"):
            Matcher.parse(bad)


def test_config_reads_secrets_from_the_environment_and_never_shows_them(
        tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "alerts.yaml"  # type: ignore[operator]
    path.write_text("group_wait: 5\nreceivers:\n  - kind: telegram\n    name: ops\n"
                    "    chat_ids: [-1001]\n  - kind: email\n    name: mail\n"
                    "    host: 127.0.0.1\n    sender: a@b.c\n    to: [d@e.f]\n"
                    "    username: bot\n")
    env = {"MTS_ALERTS_TELEGRAM_TOKEN": "999:SECRET-token",
           "MTS_ALERTS_SMTP_PASSWORD": "hunter2-secret"}
    config = load_alerts_config(path, environ=env)
    shown = repr(config) + str(config)
    assert "SECRET" not in shown and "hunter2" not in shown
    assert config.group_wait == 5
    with pytest.raises(AlertsInputError, match="bot_token") as err:
        load_alerts_config(path, environ={})
    assert "SECRET" not in str(err.value)
    with pytest.raises(AlertsInputError) as err:
        load_alerts_config(None, environ={}, overrides={"receivers": [
            {"kind": "webhook", "name": "w", "url": "ftp://user:SECRET@host"}]})
    assert "SECRET" not in str(err.value) and "url" in str(err.value)
    with pytest.raises(AlertsInputError, match="group_wait"):
        load_alerts_config(None, environ={}, overrides={"group_wait": -1})
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration("2h") == dt.timedelta(hours=2)
    with pytest.raises(AlertsInputError, match="--for"):
        parse_duration("soon")



@pytest.mark.parametrize("data", [
    {"receivers": [{"kind": "telegram", "name": "ops", "bot_token": "999:SECRET-tok"}]},
    {"receivers": [{"kind": "telegram", "name": "ops", "token": "999:SECRET-tok",
                    "chat_ids": [1]}]},
    {"receivers": [{"kind": "telgram", "name": "ops", "bot_token": "999:SECRET-tok"}]},
    {"receivers": [{"name": "ops", "bot_token": "999:SECRET-tok", "chat_ids": [1]}]},
    {"receivers": [{"kind": "email", "name": "m", "sender": "a@b.c", "to": ["d@e.f"],
                    "username": "bot", "password": "hunter2-SECRET"}]},
    {"receivers": [{"kind": "webhook", "name": "w", "url": "https://u:SECRET@x.test"}] * 2},
    {"receivers": [{"kind": "plugin", "name": "p", "sink": "bad sink",
                    "options": {"api_key": "SECRET-key"}}]},
    {"db_password": "hunter2-SECRET"},
    {"receivers": [{"kind": "telegram", "name": "ops", "bot_token": ["999:SECRET-tok"],
                    "chat_ids": [1]}]},
], ids=["missing-beside-token", "misspelt-token", "bad-kind", "no-kind", "missing-beside-"
        "password", "duplicate-names", "plugin", "unknown-top-level-key", "token-not-text"])
def test_config_errors_hold_no_secret_and_survive_the_redactor(data: dict[str, object]) -> None:
    """The error itself (its message and context, which logs and replies carry unredacted)
    never holds a secret - not inside the enclosing mapping pydantic reports for a missing
    field, nor under a misspelt key - and the redactor leaves its message whole."""
    from mts1b_platform.redaction import redact

    with pytest.raises(AlertsInputError) as err:
        load_alerts_config(None, environ={}, overrides=data)
    shown = str(err.value) + repr(dict(err.value.context))
    assert "SECRET" not in shown and "hunter2" not in shown
    assert redact(err.value.message) == err.value.message


def test_an_email_username_without_a_password_is_refused_at_start(tmp_path: Path) -> None:
    """Before, the receiver logged in with an empty password at the first alert."""
    path = tmp_path / "alerts.yaml"
    path.write_text("receivers:\n  - {kind: email, name: mail, host: 127.0.0.1, sender: a@b.c,"
                    " to: [d@e.f], username: ops}\n", encoding="utf-8")
    with pytest.raises(AlertsInputError, match=r"receivers\.mail\.password is missing: a "
                                               "username is given"):
        load_alerts_config(path, environ={})
    config = load_alerts_config(path, environ={"MTS_ALERTS_SMTP_PASSWORD": "pw"})
    assert config.receivers[0].password is not None  # type: ignore[union-attr]
    path.write_text(path.read_text(encoding="utf-8").replace(", username: ops", ""),
                    encoding="utf-8")
    assert load_alerts_config(path, environ={}).receivers[0].password is None  # type: ignore[union-attr]


def test_token_bucket_spaces_and_holds() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=lambda: now[0])
    assert bucket.wait_time() == 0
    asyncio.run(bucket.acquire())
    assert bucket.wait_time() == pytest.approx(1.0)
    now[0] = 1.0
    assert bucket.wait_time() == 0
    bucket.hold(7.0)  # a 429's retry_after
    assert bucket.wait_time() == pytest.approx(7.0)
    now[0] = 8.0
    assert bucket.wait_time() == 0
    asyncio.run(bucket.acquire())
    assert bucket.wait_time() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0)
