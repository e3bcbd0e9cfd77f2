"""A local server that stands in for Coinbase Advanced Trade's venue in tests.

No live account is used anywhere: this server plays Coinbase. It speaks the real wire formats
the ``coinbase-advanced-py`` SDK and the user channel use, over TLS with a test CA
(:func:`~mts1b_brokers.testing.coinbase_tls.tls_files`; clients verify the server with its
``ca_file``, nothing switches verification off):

- **REST over HTTPS** (HTTP/1.1 with keep-alive), the SDK's ``RESTClient`` pointed at it with
  ``base_url=server.base_url`` (``127.0.0.1:<port>``; the SDK prefixes ``https://``):
  ``POST /api/v3/brokerage/orders`` (create), ``POST .../orders/batch_cancel``,
  ``POST .../orders/edit``, ``GET .../orders/historical/batch`` (by ``order_ids``,
  ``product_ids``, ``order_status``, ``client_order_id``; ``limit`` and ``cursor`` pages),
  ``GET .../orders/historical/{order_id}``, ``GET .../orders/historical/fills``,
  ``GET .../accounts``, ``GET .../products/{product_id}``. Every response carries
  ``x-ratelimit-limit/-remaining/-reset``; more than ``rate_limit`` requests in one second get a
  429.
- **JWT verification on every request**, as Coinbase checks the SDK's tokens: the signature
  with the configured public key (Ed25519 ``EdDSA`` or EC P-256 ``ES256``, the header's ``alg``
  matching the key), header ``kid`` and claim ``sub`` equal to the key name, ``iss == "cdp"``,
  ``nbf`` not in the future, ``exp`` in the future and at most 120 s after ``nbf``, a ``nonce``
  never seen before, and for REST a ``uri`` claim equal to ``"<METHOD> <host:port><path>"``.
  A failure answers 401 with what failed (``server.auth_failures`` keeps the reasons).
- **The user channel over WSS** (``server.ws_url``; Coinbase serves it on its own host, this
  server serves every channel on one port): ``subscribe`` / ``unsubscribe`` messages
  for ``user`` (JWT required), ``heartbeats``, and the market channels ``ticker`` (a snapshot,
  then an update per :meth:`trade` or :meth:`quote`) and ``candles`` (what :meth:`candle`
  scripts); answers ``subscriptions``, then a ``user`` ``snapshot`` of the open orders, then
  an ``update`` per order change; heartbeats every
  ``heartbeat_interval`` seconds with ``heartbeat_counter``; one ``sequence_num`` per
  connection across channels; a connection that subscribed to no heartbeats and got nothing
  for ``idle_timeout`` seconds is closed (Coinbase closes after 60-90 s).

Faults a test can script (each applies once unless ``times`` says otherwise):
:meth:`fail_next` (a 429 with ``Retry-After``, a 500 before or after the venue applied the
request, a connection dropped before or after it, a hang past the client's timeout),
:meth:`reject_next_create`, :meth:`fill_before_cancel` (a fill racing a cancel),
:meth:`ws_drop_on_next_fill` (a disconnect mid-fill), :meth:`ws_duplicate_next`,
:meth:`ws_gap_next` (a sequence gap), :meth:`ws_lose_next` (a missing message),
:meth:`ws_freeze` (a half-open socket: silence, no close), :meth:`drop_connection`, a fill
listed twice or corrected (:meth:`duplicate_next_execution`, :meth:`correct_last_execution`),
a fills list trailing the order (``venue.fills_lag``), a ``client_order_id`` filter Coinbase
ignores (``venue.filters_client_order_id``), GTD expiry; partial fills come from :meth:`trade`
with less liquidity than an order's size. :attr:`requests` records every request (method,
path, query, body) so a test can prove what was - or was never - sent. The server is also the
conformance kit's ``VenueDriver`` (:meth:`trade`) and ``FaultDriver``
(:meth:`lose_next_submit`, ..., :meth:`orders_at_venue`).

Use::

    key = new_api_key("EdDSA")
    async with CoinbaseServer(key) as server:
        client = RESTClient(api_key=key.name, api_secret=key.secret, base_url=server.base_url)
        client.session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify
        client.session.verify = str(server.ca_file)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import ssl
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from mts1b_brokers.testing.coinbase_tls import ApiKey, tls_files
from mts1b_brokers.testing.coinbase_venue import CoinbaseVenue, Product, VenueOrder, iso

__all__ = ["CoinbaseServer", "CoinbaseVenue", "Product", "RecordedRequest"]

API = "/api/v3/brokerage"
_CHANNELS = {"user", "heartbeats", "ticker", "candles"}
FAULTS = {"429", "500", "500_after", "drop_before", "drop_after", "hang_after"}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]
    status: int


@dataclass
class _Fault:
    method: str
    path: str
    kind: str
    times: int
    retry_after: float


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    channels: dict[str, list[str]] = field(default_factory=dict)
    seq: int = 0
    last_sent: float = field(default_factory=time.monotonic)
    frozen: bool = False


class _Unauthorized(Exception):
    pass


class CoinbaseServer:
    """HTTPS + WSS stand-in for Coinbase Advanced Trade around a :class:`CoinbaseVenue`."""

    def __init__(self, key: ApiKey, venue: CoinbaseVenue | None = None, *,
                 host: str = "127.0.0.1", heartbeat_interval: float = 1.0,
                 idle_timeout: float = 75.0, rate_limit: int = 30) -> None:
        self.key = key
        self.venue = venue or CoinbaseVenue()
        self.venue.on_change = self._order_changed
        self.host = host
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.rate_limit = rate_limit
        self.requests: list[RecordedRequest] = []
        self.auth_failures: list[str] = []
        self._public = serialization.load_pem_public_key(key.public_pem)
        if not isinstance(self._public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise ValueError("the API key must be Ed25519 or EC P-256")
        self._alg = "EdDSA" if isinstance(self._public, ed25519.Ed25519PublicKey) else "ES256"
        self._nonces: set[str] = set()
        self._faults: list[_Fault] = []
        self._reject: deque[tuple[str, str, str]] = deque()
        self._race_price: Decimal | None = None
        self._ws_flags: dict[str, int] = {"drop_on_fill": 0, "duplicate": 0, "gap": 0,
                                          "lose": 0}
        self._window: deque[float] = deque()
        self._conns: set[_Conn] = set()
        self._books: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: asyncio.Server | None = None
        self._ws: Server | None = None
        self._http_writers: set[asyncio.StreamWriter] = set()
        self._stopping = asyncio.Event()
        self.port = 0
        self.ws_port = 0

    # ---------------------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """What the SDK's ``RESTClient(base_url=...)`` takes: ``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"wss://{self.host}:{self.ws_port}"

    @property
    def ca_file(self) -> Path:
        return tls_files().ca_file

    def ssl_context(self) -> ssl.SSLContext:
        files = tls_files()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(files.cert_file, files.key_file)
        return ctx

    async def start(self) -> CoinbaseServer:
        ctx = self.ssl_context()
        self._http = await asyncio.start_server(self._serve_http, self.host, 0, ssl=ctx)
        self.port = self._http.sockets[0].getsockname()[1]
        self._ws = await serve(self._serve_ws, self.host, 0, ssl=ctx, compression=None,
                               ping_interval=None)
        self.ws_port = next(iter(self._ws.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._http_writers):
            writer.transport.abort()
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        if self._http is not None:
            self._http.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.wait_closed(), 2)
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def __aenter__(self) -> CoinbaseServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------- faults
    def fail_next(self, path: str, kind: str, *, method: str = "POST", times: int = 1,
                  retry_after: float = 0.05) -> None:
        """Script a fault for the next ``times`` requests to ``API+path`` (exact path).

        ``kind``: ``"429"`` (refused, nothing applied, ``Retry-After: retry_after``),
        ``"500"`` (refused before the venue saw it), ``"500_after"`` (applied, then 500),
        ``"drop_before"`` / ``"drop_after"`` (connection closed without an answer, before /
        after the venue applied it), ``"hang_after"`` (applied, then no answer until the
        client gives up)."""
        if kind not in FAULTS:
            raise ValueError(f"kind must be one of {sorted(FAULTS)}, got {kind!r}")
        self._faults.append(_Fault(method, API + path, kind, times, retry_after))

    def reject_next_create(self, error: str = "COMMANDER_REJECTED_NEW_ORDER",
                           preview: str = "", message: str = "rejected by the venue") -> None:
        """The next ``POST /orders`` fails with this ``error_response``."""
        self._reject.append((error, preview, message))

    def fill_before_cancel(self, price: Decimal) -> None:
        """The next cancel arrives just after the order's rest filled at ``price``."""
        self._race_price = price

    def ws_drop_on_next_fill(self) -> None:
        """The next fill happens, its update is not sent, and every user socket drops."""
        self._ws_flags["drop_on_fill"] += 1

    def ws_duplicate_next(self) -> None:
        """The next ``user`` update is sent twice (two sequence numbers, same content)."""
        self._ws_flags["duplicate"] += 1

    def ws_gap_next(self) -> None:
        """The next ``user`` update is lost and its sequence number skipped (a gap)."""
        self._ws_flags["gap"] += 1

    def ws_lose_next(self) -> None:
        """The next ``user`` update is lost with no gap in the sequence (only REST shows it)."""
        self._ws_flags["lose"] += 1

    def ws_freeze(self) -> None:
        """Every open WebSocket goes silent and stays open (a half-open connection: no
        heartbeat, no close); only a client that watches its heartbeats notices."""
        for conn in self._conns:
            conn.frozen = True

    async def disconnect_websockets(self) -> None:
        """Drop every WebSocket connection without a close frame (a network cut)."""
        for conn in list(self._conns):
            conn.ws.transport.abort()

    # The conformance kit's FaultDriver ------------------------------------------------
    async def lose_next_submit(self, *, delivered: bool) -> None:
        """The connection drops after the next create was sent: after the venue applied it
        (``delivered``) or before."""
        self.fail_next("/orders", "drop_after" if delivered else "drop_before")

    async def duplicate_next_execution(self) -> None:
        """The next fill is listed twice by ``list fills`` (same trade id) and its user
        update is sent twice."""
        self.venue.duplicate_fills += 1
        self.ws_duplicate_next()

    async def correct_last_execution(self, quantity: Decimal) -> None:
        """The last fill is corrected to ``quantity`` (``trade_type`` CORRECTION)."""
        if self.venue.last_fill is None:
            raise ValueError("no fill to correct yet")
        self.venue.correct(self.venue.last_fill, Decimal(quantity))

    async def drop_connection(self) -> None:
        """Every WebSocket and kept-alive HTTPS connection drops without a goodbye."""
        await self.disconnect_websockets()
        for writer in list(self._http_writers):
            writer.transport.abort()

    async def disconnect_mid_next_fill(self) -> None:
        self.ws_drop_on_next_fill()

    def orders_at_venue(self, order_id: str) -> int:
        """How many creates with this ``client_order_id`` reached the venue (a re-send
        counts twice even though the venue answers it with the existing order)."""
        return self.venue.creates.get(order_id, 0)

    @property
    def connections(self) -> int:
        return len(self._conns)

    # ------------------------------------------------------------------------------ market
    async def trade(self, symbol: str, price: Decimal, liquidity: Decimal) -> None:
        """The conformance kit's ``VenueDriver``: the market trades ``symbol`` (a product id
        such as ``BTC-USD``) at ``price`` with ``liquidity`` units for our orders."""
        self.venue.trade(symbol, Decimal(price), Decimal(liquidity))
        self._market("ticker", symbol, {"type": "update",
                                        "tickers": [self._ticker(self.venue.products[symbol])]})
        await asyncio.sleep(0)

    def sent(self, method: str, path: str) -> list[RecordedRequest]:
        """The requests received for ``method`` and ``API+path`` (exact path)."""
        return [r for r in self.requests if r.method == method and r.path == API + path]

    # -------------------------------------------------------------------------------- auth
    def _verify(self, token: str, uri: str | None) -> None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _Unauthorized(f"malformed JWT: {exc}") from None
        if header.get("alg") != self._alg:
            raise _Unauthorized(f"alg {header.get('alg')!r}, the key needs {self._alg!r}")
        if header.get("kid") != self.key.name:
            raise _Unauthorized("kid is not the API key's name")
        nonce = header.get("nonce")
        if not nonce:
            raise _Unauthorized("header has no nonce")
        try:
            claims = jwt.decode(token, self._public, algorithms=[self._alg],  # type: ignore[arg-type]
                                options={"require": ["sub", "iss", "nbf", "exp"]},
                                leeway=dt.timedelta(seconds=2))
        except jwt.PyJWTError as exc:
            raise _Unauthorized(f"JWT refused: {exc}") from None
        if claims["sub"] != self.key.name or claims["iss"] != "cdp":
            raise _Unauthorized("sub/iss are not the key's name and 'cdp'")
        if int(claims["exp"]) - int(claims["nbf"]) > 120:
            raise _Unauthorized("exp is more than 120 s after nbf")
        if uri is not None and claims.get("uri") != uri:
            raise _Unauthorized(f"uri claim {claims.get('uri')!r} does not match {uri!r}")
        if nonce in self._nonces:
            raise _Unauthorized("nonce reused (a replayed JWT)")
        self._nonces.add(nonce)

    # -------------------------------------------------------------------------------- HTTP
    async def _serve_http(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self._http_writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in {b"\r\n", b"\n", b""}:
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if not await self._answer(method, target, headers, body, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, ssl.SSLError):
            return
        finally:
            self._http_writers.discard(writer)
            writer.transport.abort()

    async def _answer(self, method: str, target: str, headers: dict[str, str], raw: bytes,
                      writer: asyncio.StreamWriter) -> bool:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = None
        extra: dict[str, str] = {}
        fault = self._take_fault(method, path)
        if not self._within_rate():
            status, payload = 429, {"error": "RATE_LIMIT_EXCEEDED",
                                    "message": "Too many requests"}
            extra["Retry-After"] = "1"
        elif fault is not None and fault.kind == "429":
            status, payload = 429, {"error": "RATE_LIMIT_EXCEEDED",
                                    "message": "Too many requests"}
            extra["Retry-After"] = str(fault.retry_after)
        elif fault is not None and fault.kind in {"500", "drop_before"}:
            if fault.kind == "drop_before":
                return False
            status, payload = 500, {"error": "INTERNAL", "message": "internal error"}
        else:
            status, payload = self._authorised(method, path, headers, query, body)
            if fault is not None:
                self.requests.append(RecordedRequest(method, path, query, body or {}, status))
                if fault.kind == "drop_after":
                    return False
                if fault.kind == "hang_after":
                    await self._stopping.wait()  # until the client gives up or stop()
                    return False
                status, payload = 500, {"error": "INTERNAL", "message": "internal error"}
                await self._respond(writer, status, payload, extra)
                return True
        self.requests.append(RecordedRequest(method, path, query, body or {}, status))
        await self._respond(writer, status, payload, extra)
        return True

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and path == fault.path:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _within_rate(self) -> bool:
        now = time.monotonic()
        while self._window and now - self._window[0] > 1:
            self._window.popleft()
        self._window.append(now)
        return len(self._window) <= self.rate_limit

    def _authorised(self, method: str, path: str, headers: dict[str, str],
                    query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, Any]]:
        auth = headers.get("authorization", "")
        try:
            if not auth.startswith("Bearer "):
                raise _Unauthorized("no Bearer token")
            self._verify(auth[len("Bearer "):], f"{method} {self.base_url}{path}")
        except _Unauthorized as exc:
            self.auth_failures.append(str(exc))
            return 401, {"error": "UNAUTHENTICATED", "message": "Unauthorized",
                         "error_details": str(exc)}
        if body is None or not isinstance(body, dict):
            return 400, {"error": "INVALID_ARGUMENT", "message": "body is not a JSON object",
                         "error_details": "body is not a JSON object"}
        return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict[str, list[str]],
               body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        v = self.venue
        if method == "POST" and path == f"{API}/orders":
            if self._reject:
                error, preview, message = self._reject.popleft()
                return 200, v._failure(error, preview, message, body)
            return 200, v.create(body)
        if method == "POST" and path == f"{API}/orders/batch_cancel":
            ids = [str(i) for i in body.get("order_ids") or []]
            if self._race_price is not None:
                price, self._race_price = self._race_price, None
                for oid in ids:
                    order = v.orders.get(oid)
                    if order is not None and order.leaves > 0:
                        v.fill(order, order.leaves, price)
            return 200, v.cancel(ids)
        if method == "POST" and path == f"{API}/orders/edit":
            return 200, v.edit(body)
        if method == "GET" and path == f"{API}/orders/historical/batch":
            return 200, self._page("orders", [o.rest() for o in v.list_orders(query)], query,
                                   {"sequence": "0"})
        if method == "GET" and path == f"{API}/orders/historical/fills":
            return 200, self._page("fills", [f.wire() for f in v.list_fills(query)], query, {})
        if method == "GET" and path.startswith(f"{API}/orders/historical/"):
            order = v.orders.get(path.rsplit("/", 1)[1])
            if order is None:
                return 404, {"error": "NOT_FOUND", "message": "order not found",
                             "error_details": "order with this orderID was not found"}
            return 200, {"order": order.rest()}
        if method == "GET" and path == f"{API}/accounts":
            accounts = v.accounts()
            return 200, {"accounts": accounts, "has_next": False, "cursor": "",
                         "size": len(accounts)}
        if method == "GET" and path.startswith(f"{API}/products/"):
            product = v.products.get(path.rsplit("/", 1)[1])
            if product is None:
                return 404, {"error": "NOT_FOUND", "message": "product not found",
                             "error_details": "ProductID is invalid"}
            return 200, product.wire()
        return 404, {"error": "NOT_FOUND", "message": f"no route {method} {path}",
                     "error_details": ""}

    @staticmethod
    def _page(name: str, items: list[dict[str, Any]], query: dict[str, list[str]],
              extra: dict[str, Any]) -> dict[str, Any]:
        limit = int((query.get("limit") or ["100"])[0])
        start = int((query.get("cursor") or ["0"])[0] or 0)
        page = items[start:start + limit]
        more = start + limit < len(items)
        return {name: page, "has_next": more, "cursor": str(start + limit) if more else "",
                **extra}

    async def _respond(self, writer: asyncio.StreamWriter, status: int,
                       payload: dict[str, Any], extra: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        remaining = max(self.rate_limit - len(self._window), 0)
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                "Content-Type: application/json", f"Content-Length: {len(data)}",
                f"x-ratelimit-limit: {self.rate_limit}", f"x-ratelimit-remaining: {remaining}",
                f"x-ratelimit-reset: {int(time.time()) + 1}",
                *(f"{k}: {v}" for k, v in extra.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()

    # --------------------------------------------------------------------------- WebSocket
    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_ws(self, ws: ServerConnection) -> None:
        conn = _Conn(ws)
        self._conns.add(conn)
        sender = asyncio.ensure_future(self._sender(conn))
        watchdog = asyncio.ensure_future(self._watch(conn))
        try:
            async for raw in ws:
                await self._ws_message(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            for task in (sender, watchdog):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _ws_message(self, conn: _Conn, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
            kind, channel = msg["type"], msg["channel"]
            products = [str(p) for p in msg.get("product_ids") or []]
        except (ValueError, KeyError, TypeError):
            conn.queue.put_nowait({"type": "error", "message": "malformed subscription"})
            return
        if channel not in _CHANNELS or kind not in {"subscribe", "unsubscribe"}:
            conn.queue.put_nowait({"type": "error",
                                   "message": f"unsupported {kind} to {channel!r}"})
            return
        if channel == "user":
            try:
                self._verify(str(msg.get("jwt") or ""), None)
            except _Unauthorized as exc:
                self.auth_failures.append(str(exc))
                conn.queue.put_nowait({"type": "error", "message": "authentication failure"})
                return
        if kind == "unsubscribe":
            conn.channels.pop(channel, None)
        else:
            conn.channels[channel] = products
        conn.queue.put_nowait(self._envelope("subscriptions", [{"subscriptions": {
            name: (prods or ([name] if name == "heartbeats" else []))
            for name, prods in conn.channels.items()}}]))
        if kind == "subscribe" and channel == "user":
            conn.queue.put_nowait(self._envelope("user", [{"type": "snapshot", "orders": [
                o.user() for o in self.venue.orders.values()
                if o.leaves > 0 and (not products or o.product_id in products)]}]))
        if kind == "subscribe" and channel == "heartbeats":
            self._spawn(self._heartbeats(conn))
        if kind == "subscribe" and channel == "ticker":
            tickers = [self._ticker(p) for p in self.venue.products.values()
                       if not products or p.product_id in products]
            conn.queue.put_nowait(self._envelope("ticker", [{"type": "snapshot",
                                                             "tickers": tickers}]))

    @staticmethod
    def _envelope(channel: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"channel": channel, "client_id": "", "timestamp": iso(dt.datetime.now(dt.UTC)),
                "sequence_num": None, "events": events}

    async def _sender(self, conn: _Conn) -> None:
        while True:
            msg = await conn.queue.get()
            if conn.frozen:
                continue
            if msg.get("_gap"):
                conn.seq += 1
                continue
            if "sequence_num" in msg:
                msg = {**msg, "sequence_num": conn.seq}
                conn.seq += 1
            await conn.ws.send(json.dumps(msg))
            conn.last_sent = time.monotonic()

    async def _heartbeats(self, conn: _Conn) -> None:
        counter = 0
        while conn in self._conns and "heartbeats" in conn.channels:
            await asyncio.sleep(self.heartbeat_interval)
            counter += 1
            now = dt.datetime.now(dt.UTC)
            conn.queue.put_nowait(self._envelope("heartbeats", [{
                "current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC"),
                "heartbeat_counter": str(counter)}]))

    async def _watch(self, conn: _Conn) -> None:
        while True:
            await asyncio.sleep(min(self.idle_timeout / 4, 1.0))
            idle = time.monotonic() - conn.last_sent
            if conn.frozen:
                continue
            if "heartbeats" not in conn.channels and idle > self.idle_timeout:
                await conn.ws.close(1000, "idle: subscribe to heartbeats to keep it open")
                return

    # -------------------------------------------------------------------- market data
    def quote(self, product_id: str, bid: Decimal, ask: Decimal, bid_size: Decimal,
              ask_size: Decimal) -> None:
        """Set the top of book of ``product_id``; ``ticker`` subscribers get an update."""
        self._books[product_id] = (Decimal(bid), Decimal(ask), Decimal(bid_size),
                                   Decimal(ask_size))
        self._market("ticker", product_id, {"type": "update",
                                            "tickers": [self._ticker(self.venue.products[
                                                product_id])]})

    def candle(self, product_id: str, start: int, open_: Decimal, high: Decimal,
               low: Decimal, close: Decimal, volume: Decimal) -> None:
        """Send a ``candles`` update (Coinbase's 5-minute candle starting at ``start``, epoch
        seconds; Coinbase repeats the current candle about every second as it grows)."""
        self._market("candles", product_id, {"type": "update", "candles": [{
            "start": str(start), "high": str(high), "low": str(low), "open": str(open_),
            "close": str(close), "volume": str(volume), "product_id": product_id}]})

    def _ticker(self, product: Product) -> dict[str, Any]:
        bid, ask, bid_size, ask_size = self._books.get(
            product.product_id, (product.price, product.price, Decimal(0), Decimal(0)))
        return {"type": "ticker", "product_id": product.product_id, "price": str(product.price),
                "volume_24_h": "0", "low_24_h": str(product.price),
                "high_24_h": str(product.price), "low_52_w": str(product.price),
                "high_52_w": str(product.price), "price_percent_chg_24_h": "0",
                "best_bid": str(bid), "best_bid_quantity": str(bid_size),
                "best_ask": str(ask), "best_ask_quantity": str(ask_size)}

    def _market(self, channel: str, product_id: str, event: dict[str, Any]) -> None:
        message = self._envelope(channel, [event])
        for conn in list(self._conns):
            products = conn.channels.get(channel)
            if products is not None and (not products or product_id in products):
                conn.queue.put_nowait(message)

    def _order_changed(self, order: VenueOrder) -> None:
        flags = self._ws_flags
        if flags["drop_on_fill"] and order.fills:
            flags["drop_on_fill"] -= 1
            for conn in list(self._conns):
                conn.ws.transport.abort()
            return
        update = self._envelope("user", [{"type": "update", "orders": [order.user()]}])
        copies: list[dict[str, Any]] = [update]
        if flags["gap"]:
            flags["gap"] -= 1
            copies = [{"_gap": True}]
        elif flags["lose"]:
            flags["lose"] -= 1
            copies = []
        elif flags["duplicate"]:
            flags["duplicate"] -= 1
            copies = [update, update]
        for conn in list(self._conns):
            products = conn.channels.get("user")
            if products is None or (products and order.product_id not in products):
                continue
            for msg in copies:
                conn.queue.put_nowait(msg)

