"""The Coinbase ``user`` channel over WebSocket: order updates, kept alive and gap-checked.

Why not the SDK's ``WSUserClient``: it runs its own event loop in a thread and calls back from
there, retries a lost connection with its own fixed backoff (5 tries from 5 s) and knows
nothing of ``sequence_num``. This client uses the same ``websockets`` library and the SDK's JWT
builder (``coinbase.jwt_generator.build_ws_jwt``) inside the broker's event loop, and:

- subscribes to ``heartbeats`` as well as ``user``, since Coinbase closes a channel that got no
  message for 60-90 s; ``heartbeat_timeout`` seconds without any message count as a dead
  connection (a half-open socket sends nothing and raises nothing);
- checks ``sequence_num`` (one counter per connection, across channels): a jump is a gap,
  reported to ``on_resync`` so the broker recovers what was missed through REST; a number
  seen before (a duplicate, an old message) is dropped;
- reconnects after any loss with exponential backoff, subscribes again, and reports the
  reconnection to ``on_resync`` (the snapshot lists only open orders: an order that ended
  while the socket was down is found through REST).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

__all__ = ["UserStream"]

log = logging.getLogger("mts1b_brokers.coinbase")

OnOrders = Callable[[list[dict[str, Any]], bool], Awaitable[None]]
OnResync = Callable[[str], Awaitable[None]]


class UserStream:
    """One user-channel subscription that survives disconnects."""

    def __init__(self, url: str, *, jwt: Callable[[], str], product_ids: list[str],
                 on_orders: OnOrders, on_resync: OnResync,
                 on_state: Callable[[bool], None], ssl_context: ssl.SSLContext | None,
                 heartbeat_timeout: float = 5.0, backoff: float = 0.25,
                 max_backoff: float = 10.0) -> None:
        self._url = url
        self._jwt = jwt
        self._products = product_ids
        self._on_orders = on_orders
        self._on_resync = on_resync
        self._on_state = on_state
        self._ssl = ssl_context if url.startswith("wss://") else None
        self._hb_timeout = heartbeat_timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._refused = asyncio.Event()
        self._last_seq: int | None = None
        self.connected = False
        self.gaps = 0
        self.reconnects = 0
        self.duplicates = 0
        self.error: str | None = None

    async def start(self, timeout: float) -> None:
        """Connect and wait for the first ``user`` snapshot; ``TimeoutError`` if none came in
        ``timeout`` seconds or Coinbase refused the subscription (``error`` says why)."""
        self._ready.clear()
        self._refused.clear()
        self.error = None
        self._task = asyncio.create_task(self._run())
        waits = [asyncio.ensure_future(self._ready.wait()),
                 asyncio.ensure_future(self._refused.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not self._ready.is_set():
            await self.stop()
            raise TimeoutError(self.error or "no snapshot")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    async def _run(self) -> None:
        attempt = 0
        first = True
        while True:
            try:
                async with connect(self._url, ssl=self._ssl, open_timeout=self._hb_timeout,
                                   ping_interval=None, compression=None,
                                   max_size=10 * 1024 * 1024) as ws:
                    await self._subscribe(ws)
                    attempt = 0
                    await self._read(ws, resync=not first)
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError, ValueError) as exc:
                log.warning("coinbase user channel lost (%s); reconnecting",
                            type(exc).__name__)
            if self.connected:
                self.connected = False
                self._on_state(False)
            first = first and not self._ready.is_set()
            self.reconnects += 1
            delay = min(self._backoff * 2 ** attempt, self._max_backoff)
            attempt += 1
            await asyncio.sleep(delay)

    async def _subscribe(self, ws: ClientConnection) -> None:
        self._last_seq = None
        for channel in ("heartbeats", "user"):
            await ws.send(json.dumps({"type": "subscribe", "channel": channel,
                                      "product_ids": self._products, "jwt": self._jwt()}))

    async def _read(self, ws: ClientConnection, *, resync: bool) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as a message does, and stop() would then wait for ever
            async with asyncio.timeout(self._hb_timeout):
                raw = await ws.recv()
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "error":
                self.error = str(msg.get("message") or "error")[:500]
                log.warning("coinbase user channel refused: %s", self.error)
                self._refused.set()
                return
            seq = msg.get("sequence_num")
            if isinstance(seq, int):
                if self._last_seq is not None and seq <= self._last_seq:
                    self.duplicates += 1
                    continue
                gap = self._last_seq is not None and seq > self._last_seq + 1
                self._last_seq = seq
                if gap:
                    self.gaps += 1
                    log.warning("coinbase user channel sequence gap before %d; "
                                "recovering through REST", seq)
                    await self._on_resync("sequence gap")
            if msg.get("channel") != "user":
                continue
            for event in msg.get("events") or []:
                orders = [o for o in event.get("orders") or [] if isinstance(o, dict)]
                snapshot = event.get("type") == "snapshot"
                await self._on_orders(orders, snapshot)
                if snapshot:
                    self.error = None
                    if not self.connected:
                        self.connected = True
                        self._on_state(True)
                    if resync:
                        resync = False
                        await self._on_resync("reconnected")
                    self._ready.set()
