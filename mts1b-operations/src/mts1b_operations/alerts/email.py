"""E-mail dispatch over SMTP (optionally STARTTLS and a login).

Why the standard library's ``smtplib`` in a thread: one message per notification needs no
async SMTP client, and ``smtplib`` handles STARTTLS and AUTH. The notification's key is the
message's ``Message-ID``, so a notification sent again after a crash is recognisably the same
mail (mail clients thread or drop it). The password is never logged; an SMTP error is reported
by its code only.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

from mts1b_foundation import Alert, AlertDeliveryError

from mts1b_operations.alerts.config import EmailReceiver
from mts1b_operations.alerts.ratelimit import TokenBucket
from mts1b_operations.alerts.render import email_subject, plain_text

__all__ = ["EmailSink", "message_id"]


def message_id(key: str) -> str:
    return f"<{key}@mts1b-alerts>"


class EmailSink:
    """An :class:`~mts1b_foundation.AlertSink` that mails each notification to ``to``."""

    def __init__(self, receiver: EmailReceiver) -> None:
        self.receiver = receiver
        self._bucket = TokenBucket(receiver.per_second)

    @property
    def name(self) -> str:
        return self.receiver.name

    def _message(self, key: str, alerts: Sequence[Alert]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = email_subject(alerts)
        msg["From"] = self.receiver.sender
        msg["To"] = ", ".join(self.receiver.to)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id(key)
        msg.set_content(plain_text(alerts))
        return msg

    def _deliver(self, msg: EmailMessage) -> None:
        r = self.receiver
        with smtplib.SMTP(r.host, r.port, timeout=r.timeout) as smtp:
            if r.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if r.username:
                password = r.password.get_secret_value() if r.password else ""
                smtp.login(r.username, password)
            smtp.send_message(msg)

    async def send(self, key: str, alerts: Sequence[Alert]) -> None:
        await self._bucket.acquire()
        try:
            await asyncio.to_thread(self._deliver, self._message(key, alerts))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise AlertDeliveryError(f"SMTP server refused every recipient ({codes})",
                                     permanent=all(500 <= c < 600 for c in codes),
                                     receiver=self.name) from None
        except smtplib.SMTPResponseException as exc:
            # 5xx: the server refuses for good (a bad address, a failed login)
            raise AlertDeliveryError(f"SMTP server answered {exc.smtp_code}",
                                     permanent=500 <= exc.smtp_code < 600,
                                     receiver=self.name) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise AlertDeliveryError(f"SMTP delivery failed ({type(exc).__name__})",
                                     receiver=self.name) from None
