"""Generic webhook dispatch: Alertmanager's webhook JSON (version 4) POSTed to a URL.

The notification's key is sent as ``Idempotency-Key`` (and in the body), so a receiver can drop
the copy a crash makes us send again. A 429 or 503 with ``Retry-After`` is honoured; any other
4xx is permanent. The URL and the headers may hold credentials and are never logged.
"""

from __future__ import annotations

from collections.abc import Sequence

from mts1b_foundation import Alert, AlertDeliveryError

from mts1b_operations.alerts.config import WebhookReceiver
from mts1b_operations.alerts.http import post_json
from mts1b_operations.alerts.ratelimit import TokenBucket
from mts1b_operations.alerts.render import webhook_payload

__all__ = ["WebhookSink"]


class WebhookSink:
    """An :class:`~mts1b_foundation.AlertSink` for one URL."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self._bucket = TokenBucket(receiver.per_second)

    @property
    def name(self) -> str:
        return self.receiver.name

    async def send(self, key: str, alerts: Sequence[Alert]) -> None:
        await self._bucket.acquire()
        headers = {k: v.get_secret_value() for k, v in self.receiver.headers.items()}
        answer = await post_json(self.receiver.url.get_secret_value(),
                                 webhook_payload(key, alerts),
                                 headers={**headers, "Idempotency-Key": key},
                                 timeout=self.receiver.timeout)
        if 200 <= answer.status < 300:
            return
        if answer.status == 0:
            raise AlertDeliveryError(f"webhook unreachable ({answer.failure})",
                                     receiver=self.name)
        retry_after: float | None = None
        try:
            retry_after = float(answer.headers.get("Retry-After", ""))
        except ValueError:
            retry_after = None
        raise AlertDeliveryError(f"webhook answered {answer.status}", retry_after=retry_after,
                                 permanent=400 <= answer.status < 500 and answer.status != 429,
                                 receiver=self.name, status=answer.status)
