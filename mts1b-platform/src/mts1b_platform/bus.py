"""The message bus: NATS JetStream with typed messages, dead letters and graceful shutdown.

What :class:`Bus` guarantees:

- **Only registered messages go out.** :meth:`Bus.publish` checks the subject registry of
  ``mts1b_foundation.subjects`` (the model must be the one registered for the subject), then sets
  ``Nats-Msg-Id`` (JetStream drops a repeat inside the stream's duplicate window),
  ``traceparent`` (the consumer's span becomes a child of the publisher's) and
  ``Content-Type: application/json``, and waits for the stream's acknowledgement.
- **Nothing is dropped silently.** :meth:`Bus.consume` runs a durable pull consumer with explicit
  acks. A message that does not decode into its model goes to ``mts.v1.dlq.<domain>`` at once, as
  a ``DeadLetter`` holding the reason, the validation errors, the original bytes (base64) and
  headers. A handler that raises gets the message again after a backoff (``nak`` with delay);
  when the deliveries reach ``max_deliver`` the message goes to the dead-letter subject instead.
  A message is acknowledged only after its handler returned or its dead letter was stored.
  A message whose letter would exceed the server's ``max_payload`` (base64 adds a third) is
  dead-lettered with a prefix of its bytes, its size and SHA-256 (``payload_truncated``); if
  even that letter cannot be stored, the message is left unacknowledged for redelivery and an
  error is logged - never acknowledged and lost.
- **Failures say what they are, without secrets.** A server that refuses the credentials gives
  :class:`BusAuthError` (``PLATFORM.BUS.AUTH``, at once rather than after the connect timeout);
  a subject the account may not publish or subscribe to gives :class:`BusPermissionError`
  (``PLATFORM.BUS.PERMISSION``). Every :class:`BusError` message and context, every error
  reply and the ``message`` of every reply :meth:`Bus.serve` sends go through
  :func:`~mts1b_platform.redaction.redact`, URLs are shown with
  :func:`~mts1b_platform.redaction.redact_url`, and the credentials of ``MTS_NATS_URL`` are
  registered as secrets when connecting. A request handler's unexpected exception is answered
  with its type only; its text goes to the service's (redacted) log.
- **Shutdown loses nothing.** :meth:`Bus.drain` (installed on SIGTERM by
  :meth:`Bus.install_signal_handlers`) lets consumers finish the message in hand, waits for
  outstanding publish acks, then drains the connection.

``namespace`` prefixes every subject, stream and bucket (``<ns>.mts.v1.oms...``, stream
``<NS>_MTS_OMS``), so tests and parallel environments can share one NATS server without
touching each other. The registry always sees the logical ``mts.v1...`` subject.

Connection options come from :class:`BusSettings`, which :func:`load_config` fills from
``MTS_NATS_*`` variables (``MTS_NATS_URL``, ``MTS_NATS_USER``/``MTS_NATS_PASSWORD``,
``MTS_NATS_TOKEN``, ``MTS_NATS_CREDS`` for a JWT+NKey creds file, ``MTS_NATS_NKEY_SEED`` for a
seed file, ``MTS_NATS_TLS_CA``/``_CERT``/``_KEY``) or Vault.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import re
import signal
import ssl
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from mts1b_foundation import (
    CommandAnswered,
    MtsError,
    SubjectError,
    ValidationFailed,
    answers_subject,
    new_event_id,
)
from mts1b_foundation.operations import DeadLetter
from mts1b_foundation.subjects import (
    STREAMS,
    check_publishable,
    dlq_subject,
    domain_of,
    is_command,
    model_for_subject,
    stream_name,
)
from mts1b_foundation.wire import WireModel, parse_message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue as NatsKeyValue
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, Field, SecretStr

from mts1b_platform.config import load_config
from mts1b_platform.logging import get_logger
from mts1b_platform.redaction import redact, redact_url, register_url_secrets
from mts1b_platform.telemetry import extract_trace_context, inject_trace_context, instrumented

__all__ = [
    "Bus",
    "BusAuthError",
    "BusError",
    "BusPermissionError",
    "BusSettings",
    "Consumer",
    "Delivery",
    "KeyValue",
    "RequestFailed",
]

M = TypeVar("M", bound=WireModel)
_log = get_logger(__name__)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
CONTENT_TYPE = "application/json"
MSG_ID = "Nats-Msg-Id"
ERROR_HEADER = "Mts-Error"
MAX_PENDING_ACKS = 8192
"""At most this many batch publishes wait for their ack at once (flow control)."""
DLQ_HEADROOM = 4096
"""Bytes of the server's ``max_payload`` kept free for a dead letter's own NATS headers
(``Nats-Msg-Id``, ``Mts-Model``, ``traceparent``, ...) and framing."""
MAX_LETTER_ERRORS = 100
"""Validation errors a dead letter keeps when the whole list would not fit."""


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class BusError(MtsError, RuntimeError):
    """The bus could not do what was asked (connect, declare, publish, consume).

    The message and every text value of the context are redacted when the error is made: they
    quote URLs, subjects and driver errors, and an error's text ends up on terminals, in replies
    and in logs that are not all redacting.
    """

    code: ClassVar[str] = "PLATFORM.BUS"

    def __init__(self, message: str, /, **context: Any) -> None:
        super().__init__(redact(message), **{k: _redacted(v) for k, v in context.items()})


class BusAuthError(BusError):
    """The server refused the credentials (user/password, token, NKey, creds file).

    A separate class and code because retrying cannot help and the fix is in the configuration:
    nats-py alone keeps retrying a refused login until the connect timeout and then reports a
    bare ``TimeoutError``.
    """

    code: ClassVar[str] = "PLATFORM.BUS.AUTH"


class BusPermissionError(BusError):
    """The account may not publish or subscribe to a subject (``context["operation"]`` says
    which, ``context["subject"]`` names it). The server drops such a message silently apart
    from an asynchronous ``-ERR``, so without this a denied publish looks like a timeout."""

    code: ClassVar[str] = "PLATFORM.BUS.PERMISSION"


class RequestFailed(BusError):
    """A request/reply command was answered with an error (``context`` says which)."""

    code: ClassVar[str] = "PLATFORM.BUS.REQUEST"


class BusSettings(BaseModel):
    """How to reach NATS and how streams and consumers are set up.

    Load with ``load_config("nats", BusSettings)``: ``url`` is ``MTS_NATS_URL`` (a comma-separated
    list for a cluster), ``password`` is ``MTS_NATS_PASSWORD``, and so on.
    """

    url: str = "nats://127.0.0.1:4222"
    name: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds: str | None = Field(default=None, description="path of a JWT + NKey .creds file")
    nkey_seed: str | None = Field(default=None, description="path of an NKey seed file")
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hostname: str | None = None
    connect_timeout: float = 5.0
    namespace: str | None = None
    duplicate_window: float = 120.0
    max_age: float | None = Field(default=None, description="seconds a stream keeps messages")
    replicas: int = 1
    max_deliver: int = 5
    ack_wait: float = 30.0
    nak_backoff: tuple[float, ...] = (1.0, 5.0, 30.0)

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.url.split(",") if s.strip()]

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """One decoded message handed to a consumer's handler."""

    subject: str
    message: M
    headers: Mapping[str, str]
    msg_id: str | None
    deliveries: int
    stream_seq: int


@dataclass
class _Batch:
    """Acks of one publish_batch call, by position: a PubAck, an error text, or None (pending)."""

    results: list[api.PubAck | str | None] = field(default_factory=list)
    pending: int = 0
    sent: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


_PERMISSION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"')


def _is_auth_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the server refusing the credentials (``-ERR 'Authorization
    Violation'``, an expired user or account JWT, a bad NKey signature)."""
    if exc is None:
        return False
    text = str(exc).lower()
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text \
        or "authentication" in text


class _ServerErrors:
    """What the server reports only asynchronously, to nats-py's error callback.

    While connecting: how many attempts were refused for their credentials. nats-py keeps
    retrying a refused login when reconnects are allowed, so :meth:`Bus.connect` stops once
    every server of the list refused (``auth_refused``) instead of waiting out its budget.
    Afterwards: permission violations, by operation and subject. The server drops a denied
    publish or subscription and says so in an ``-ERR`` that nats-py hands only to the callback;
    the operation itself just times out (or, for a subscription, never receives anything).
    Operations look here when they fail, so the success path costs nothing.
    """

    def __init__(self, servers: int) -> None:
        self.servers = max(1, servers)
        self.auth_failures = 0
        self.auth_refused = asyncio.Event()
        self.last_error: Exception | None = None
        self._denied: dict[tuple[str, str], float] = {}  # (operation, subject) -> monotonic

    async def on_error(self, exc: Exception) -> None:
        self.last_error = exc
        if _is_auth_failure(exc):
            self.auth_failures += 1
            if self.auth_failures >= self.servers:
                self.auth_refused.set()
        found = _PERMISSION.search(str(exc).lower())
        if found is None:
            await _log_error(exc)
            return
        if len(self._denied) > 1024:
            self._denied.clear()
        self._denied[(found.group(1), found.group(2))] = time.monotonic()
        _log.error("NATS refused an operation: permissions violation",
                   operation=found.group(1), subject=found.group(2))

    def denied(self, operation: str, subject: str, since: float, *,
               prefix: bool = False) -> str | None:
        """The subject (as the server wrote it, lower case) of an ``operation`` ("publish" or
        "subscription") denied since ``since`` (``time.monotonic()``) that is ``subject`` - or
        starts with it, with ``prefix``; None if there was none."""
        wanted = subject.lower()
        for (op, denied), when in list(self._denied.items()):
            if op == operation and when >= since and (
                    denied == wanted or (prefix and denied.startswith(wanted))):
                return denied
        return None


def _credentials_in_use(settings: BusSettings) -> list[str]:
    """The kinds of credentials a connection presents (never their values), for an error."""
    kinds = []
    for server in settings.servers:
        authority = server.split("://", 1)[-1].split("/", 1)[0]
        userinfo, at, _ = authority.rpartition("@")
        if at:
            kinds.append("user/password in the URL" if ":" in userinfo else "token in the URL")
    if settings.user or settings.password is not None:
        kinds.append("user/password (MTS_NATS_USER, MTS_NATS_PASSWORD)")
    if settings.token is not None:
        kinds.append("token (MTS_NATS_TOKEN)")
    if settings.creds:
        kinds.append("creds file (MTS_NATS_CREDS)")
    if settings.nkey_seed:
        kinds.append("NKey seed (MTS_NATS_NKEY_SEED)")
    return list(dict.fromkeys(kinds)) or ["none"]


def _connect_error(settings: BusSettings, shown: str, failure: BaseException | None,
                   errors: _ServerErrors, budget: float) -> BusError:
    """The error for a connection that did not come up: refused credentials, a URL that is no
    URL, or no server answering - each in words, with the URL redacted."""
    if errors.auth_refused.is_set() or _is_auth_failure(failure) or (
            failure is None and errors.auth_failures):
        kinds = _credentials_in_use(settings)
        return BusAuthError(f"authorization failed at {shown}: the server refused the "
                            f"credentials presented ({', '.join(kinds)})",
                            url=shown, credentials=", ".join(kinds))
    if failure is not None:
        detail = f"{type(failure).__name__}: {failure}".rstrip(": ")
        text = str(failure).lower()
        if isinstance(failure, ValueError) or (isinstance(failure, nats.errors.Error) and (
                "url" in text or "hostname" in text)):  # refused before any connection
            return BusError(f"invalid NATS URL {shown}: each comma-separated entry must look "
                            f"like nats://[user:password@]host[:port] ({detail})", url=shown)
        return BusError(f"cannot connect to NATS at {shown}: {detail}", url=shown)
    last = errors.last_error
    why = f" (last error: {type(last).__name__}: {last})" if last is not None else ""
    return BusError(f"cannot connect to NATS at {shown}: no server answered within "
                    f"{budget:g}s{why}", url=shown)


def _permission_error(operation: str, subject: str) -> BusPermissionError:
    verb = "publish to" if operation == "publish" else "subscribe to"
    return BusPermissionError(
        f"permission denied: this NATS account may not {verb} {subject!r} (the server's "
        "authorization for this user does not allow it)", operation=operation, subject=subject)


Handler = Callable[[Delivery[Any]], Awaitable[None]]
RequestHandler = Callable[[Any], Awaitable[WireModel]]


def _field(message: WireModel, name: str) -> Any:
    """``message.<name>`` if the model declares that field, else None.

    Looked up on the class: ``getattr`` with a default on a pydantic model that lacks the
    attribute raises and catches an AttributeError, which costs more than the JSON encoding.
    """
    return getattr(message, name) if name in type(message).model_fields else None


def _content_headers(message: WireModel) -> dict[str, str]:
    """``Content-Type`` and ``Mts-Model: <Model>/<schema_version>`` of an outgoing message.

    Events (:meth:`Bus.publish`) and commands (:meth:`Bus.request`) carry the same pair, so it
    is built in one place.
    """
    return {"Content-Type": CONTENT_TYPE,
            "Mts-Model": f"{type(message).__name__}/{message.schema_version}"}


def _default_msg_id(subject: str, message: WireModel, payload: bytes) -> str:
    """The event id when the model has one; else a digest of subject and content.

    A content digest makes republishing the same fact (the same bar, the same snapshot) a
    duplicate that JetStream drops, which is what a replay after a crash needs.
    """
    event_id = _field(message, "event_id")
    if isinstance(event_id, str) and event_id:
        return event_id
    digest = hashlib.sha256(subject.encode() + b"\x00" + payload).hexdigest()[:32]
    return f"sha-{digest}"


class Bus:
    """A connected NATS client with the MTS1B conventions. Create with :meth:`connect`.

    >>> async with await Bus.connect() as bus:
    ...     await bus.declare_streams(["oms"])
    ...     await bus.publish("mts.v1.oms.orders.accepted", event)
    """

    def __init__(self, nc: NatsClient, settings: BusSettings,
                 server_errors: _ServerErrors | None = None) -> None:
        self._nc = nc
        self.settings = settings
        self._errors = server_errors or _ServerErrors(len(settings.servers))
        self.namespace = settings.namespace
        self._js: JetStreamContext = nc.jetstream()
        self._consumers: list[Consumer] = []
        self._servers: list[Subscription] = []
        self._in_hand: set[asyncio.Task[None]] = set()  # requests served concurrently
        self._closed = asyncio.Event()
        self._draining = False
        self._checked: set[tuple[str, type[WireModel], object, bool]] = set()
        self._ack_prefix: str | None = None
        self._batches: dict[int, _Batch] = {}
        self._batch_seq = 0
        self._pending_acks = 0
        self._acks_drained = asyncio.Event()

    # --- connection ---------------------------------------------------------------------------

    @classmethod
    async def connect(cls, settings: BusSettings | None = None, **overrides: Any) -> Bus:
        """Connect with ``settings`` (default: ``load_config("nats", BusSettings)``).

        Keyword ``overrides`` replace individual settings, e.g. ``namespace="test123"``.
        Raises :class:`BusAuthError` as soon as every server of the list refused the
        credentials, :class:`BusError` for a URL nats-py cannot use (``invalid NATS URL ...``)
        or when no server answered within ``connect_timeout`` per server plus one second; the
        URL in either is shown through :func:`~mts1b_platform.redaction.redact_url`.
        """
        if settings is None:
            settings = load_config("nats", BusSettings, overrides=overrides)
        elif overrides:
            settings = settings.model_copy(update=overrides)
        if settings.namespace is not None and not _TOKEN.match(settings.namespace):
            raise BusError(f"namespace must match {_TOKEN.pattern}, got {settings.namespace!r}",
                           namespace=settings.namespace)
        # The URL's own password or token is a secret from here on, wherever a driver repeats
        # it; the URL itself is only ever shown redacted.
        register_url_secrets(settings.url)
        shown = redact_url(settings.url)
        errors = _ServerErrors(len(settings.servers))
        options: dict[str, Any] = {
            "servers": settings.servers,
            "name": settings.name,
            "connect_timeout": settings.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "tls": settings.tls_context(),
            "tls_hostname": settings.tls_hostname,
            "error_cb": errors.on_error,
        }
        if settings.user:
            options["user"] = settings.user
        if settings.password is not None:
            options["password"] = settings.password.get_secret_value()
        if settings.token is not None:
            options["token"] = settings.token.get_secret_value()
        if settings.creds:
            options["user_credentials"] = settings.creds
        if settings.nkey_seed:
            options["nkeys_seed"] = settings.nkey_seed
        # nats-py keeps retrying a refused first connection when reconnects are allowed: bound
        # it, and stop at once when every server refused the credentials.
        budget = settings.connect_timeout * max(1, len(settings.servers)) + 1.0
        nc = NatsClient()
        connecting = asyncio.ensure_future(nc.connect(**options))
        refused = asyncio.ensure_future(errors.auth_refused.wait())
        try:
            done, _ = await asyncio.wait({connecting, refused}, timeout=budget,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
        failure = connecting.exception() if connecting in done else None
        if connecting not in done or failure is not None:
            if connecting not in done:
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await connecting
            await _quietly(nc.close())
            raise _connect_error(settings, shown, failure, errors, budget)
        bus = cls(nc, settings, errors)
        _log.info("connected to NATS",
                  url=redact_url(nc.connected_url.geturl()) if nc.connected_url else "",
                  server_version=bus.server_version,
                  namespace=settings.namespace)
        return bus

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drain()

    @property
    def nc(self) -> NatsClient:
        """The underlying nats-py client (for what the bus does not wrap)."""
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    @property
    def server_version(self) -> str:
        """The connected server's version, e.g. ``2.10.18``."""
        v = self._nc.connected_server_version
        return f"{v.major}.{v.minor}.{v.patch}"

    # --- names --------------------------------------------------------------------------------

    def wire_subject(self, subject: str) -> str:
        """The subject on the wire: ``subject`` under the namespace, if any."""
        return f"{self.namespace}.{subject}" if self.namespace else subject

    def logical_subject(self, wire: str) -> str:
        """Inverse of :meth:`wire_subject`."""
        prefix = f"{self.namespace}." if self.namespace else ""
        return wire[len(prefix):] if prefix and wire.startswith(prefix) else wire

    def stream_for(self, domain: str) -> str:
        """The JetStream stream name of ``domain`` (namespaced)."""
        name = stream_name(domain)
        return f"{self.namespace.upper()}_{name}" if self.namespace else name

    def _bucket(self, bucket: str) -> str:
        if not _TOKEN.match(bucket):
            raise BusError(f"bucket name must match {_TOKEN.pattern}, got {bucket!r}")
        return f"{self.namespace}_{bucket}" if self.namespace else bucket

    # --- streams ------------------------------------------------------------------------------

    def stream_config(self, domain: str) -> api.StreamConfig:
        """File-stored, limits-retention stream of ``domain`` with the duplicate window."""
        return api.StreamConfig(
            name=self.stream_for(domain),
            subjects=[self.wire_subject(s) for s in STREAMS[domain]],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            duplicate_window=self.settings.duplicate_window,
            max_age=self.settings.max_age,
            num_replicas=self.settings.replicas,
            description=f"MTS1B {domain} events",
        )

    async def declare_streams(self, domains: Iterable[str] | None = None) -> list[str]:
        """Create or update the streams of ``domains`` (default: every domain, DLQ included).

        Idempotent. The ``dlq`` stream is always declared: consumers dead-letter into it.
        """
        wanted = list(STREAMS) if domains is None else list(dict.fromkeys([*domains, "dlq"]))
        names = []
        for domain in wanted:
            if domain not in STREAMS:
                raise BusError(f"no stream for domain {domain!r}; known: {sorted(STREAMS)}")
            config = self.stream_config(domain)
            started = time.monotonic()
            try:
                try:
                    await self._js.stream_info(config.name or "")
                    await self._js.update_stream(config)
                except nats.js.errors.NotFoundError:
                    await self._js.add_stream(config)
            except (nats.js.errors.Error, nats.errors.Error) as exc:
                self._raise_if_denied("publish", "$JS.API.", started, prefix=True)
                raise BusError(f"cannot declare stream {config.name} for {domain!r}: "
                               f"{type(exc).__name__}: {exc}", stream=config.name,
                               domain=domain) from None
            names.append(config.name or "")
        return names

    async def delete_streams(self) -> None:
        """Delete this namespace's streams, KV buckets and object stores (tests and
        ``paper down --purge`` clean up with this).

        Refused without a namespace: production streams are never deleted by code.
        """
        if not self.namespace:
            raise BusError("delete_streams needs a namespace; shared streams are not deleted")
        prefix = f"{self.namespace.upper()}_"
        bucket_prefixes = (f"KV_{self.namespace}_", f"OBJ_{self.namespace}_")
        for name in await self._stream_names():
            if name.startswith(prefix) or name.startswith(bucket_prefixes):
                # gone between the listing and the delete: what was asked for
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await self._js.delete_stream(name)

    async def _stream_names(self) -> list[str]:
        """Every stream's name on the server. The server lists them a page at a time (256):
        reading only the first page missed a namespace's streams on a busy server."""
        names: list[str] = []
        while True:
            page = await self._js.streams_info(offset=len(names))
            if not page:
                return names
            names.extend(info.config.name or "" for info in page)

    # --- publish ------------------------------------------------------------------------------

    def _check(self, subject: str, message: WireModel, *, command: bool = False) -> None:
        """The registry's verdict for this subject and kind of message, cached.

        The verdict depends only on the subject, the model class and (for order events) the
        event type, so a batch of thousands of messages asks the registry once per subject.
        ``command`` says whether the caller sends a command (request) or an event (publish).
        """
        key = (subject, type(message), _field(message, "event_type"), command)
        if key in self._checked:
            return
        check_publishable(subject, message)
        if is_command(subject) and not command:
            raise BusError(f"{subject!r} is a command subject: use request(), not publish()",
                           subject=subject)
        if len(self._checked) > 100_000:
            self._checked.clear()
        self._checked.add(key)

    def _prepare(self, subject: str, message: WireModel, msg_id: str | None,
                 headers: Mapping[str, str] | None,
                 trace_headers: Mapping[str, str] | None = None,
                 ) -> tuple[str, bytes, dict[str, str]]:
        self._check(subject, message)
        payload = message.to_json()
        hdrs = dict(headers or {})
        hdrs[MSG_ID] = msg_id or _default_msg_id(subject, message, payload)
        hdrs.update(_content_headers(message))
        if trace_headers is None:
            inject_trace_context(hdrs)
        else:
            hdrs.update(trace_headers)
        return self.wire_subject(subject), payload, hdrs

    async def publish_acked(self, subject: str, message: WireModel, *, msg_id: str | None = None,
                            headers: Mapping[str, str] | None = None,
                            timeout: float = 5.0) -> api.PubAck:
        """Publish and return JetStream's ack (``ack.duplicate`` is True for a repeat)."""
        with instrumented("bus.publish", kind=SpanKind.PRODUCER, subject=subject):
            wire, payload, hdrs = self._prepare(subject, message, msg_id, headers)
            started = time.monotonic()
            try:
                return await self._js.publish(wire, payload, timeout=timeout, headers=hdrs)
            except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
                raise BusError(f"no stream stores {wire!r}: call declare_streams() first",
                               subject=subject) from None
            except (nats.errors.TimeoutError, nats.js.errors.Error) as exc:
                self._raise_if_denied("publish", wire, started)
                raise BusError(f"publish to {wire!r} not acknowledged: {exc}",
                               subject=subject) from None
            except nats.errors.MaxPayloadError:
                raise BusError(f"a message of {len(payload)} bytes is larger than the server's "
                               f"max_payload ({self._nc.max_payload} bytes)", subject=subject,
                               size=len(payload), max_payload=self._nc.max_payload) from None

    async def publish(self, subject: str, message: WireModel, *,
                      msg_id: str | None = None, headers: Mapping[str, str] | None = None,
                      ) -> None:
        """Publish ``message`` on ``subject`` and wait for the stream's ack.

        ``msg_id`` defaults to the model's ``event_id``, else a digest of subject and payload.
        Raises :class:`~mts1b_foundation.SubjectError` if the registry refuses the pair and
        :class:`BusError` if no stream acknowledges.
        """
        await self.publish_acked(subject, message, msg_id=msg_id, headers=headers)

    async def publish_batch(self, items: Iterable[tuple[str, WireModel]
                                                   | tuple[str, WireModel, str | None]],
                            *, timeout: float = 30.0) -> list[api.PubAck]:
        """Publish many messages with asynchronous acks; return the acks in order.

        Every message is checked like :meth:`publish`. Messages are written without waiting;
        JetStream's acks come back on one inbox subscription of this bus and are matched by
        position, with at most :data:`MAX_PENDING_ACKS` outstanding. All acks are awaited
        before returning; a missing or negative ack raises :class:`BusError` naming how many.

        Why not nats-py's ``publish_async``: it costs a future, a semaphore round and a
        dataclass parse per message, about as much CPU as the rest of the publish path.
        """
        def prepared(trace_headers: Mapping[str, str]
                     ) -> Iterator[tuple[str, bytes, dict[str, str]]]:
            for item in items:
                msg_id = item[2] if len(item) > 2 else None
                yield self._prepare(item[0], item[1], msg_id, None, trace_headers)

        return await self._send_batch(prepared, timeout)

    async def publish_batch_bytes(self, items: Iterable[tuple[str, bytes, Mapping[str, str]]],
                                  *, timeout: float = 30.0) -> list[api.PubAck]:
        """:meth:`publish_batch` for payloads encoded earlier: ``(subject, payload, headers)``.

        For a relay of stored messages (an outbox), whose bytes must go out exactly as they
        were committed: no model check and no re-encoding, like :meth:`publish_bytes`. Set
        ``Nats-Msg-Id`` in ``headers`` so that a re-sent row is dropped as a duplicate.
        """
        def prepared(trace_headers: Mapping[str, str]
                     ) -> Iterator[tuple[str, bytes, dict[str, str]]]:
            for subject, payload, headers in items:
                yield self.wire_subject(subject), payload, {**headers, **trace_headers}

        return await self._send_batch(prepared, timeout)

    async def _send_batch(self, prepared: Callable[[Mapping[str, str]],
                                                   Iterable[tuple[str, bytes, dict[str, str]]]],
                          timeout: float) -> list[api.PubAck]:
        batch = _Batch()
        started = time.monotonic()
        with instrumented("bus.publish_batch", kind=SpanKind.PRODUCER) as span:
            prefix = await self._ack_inbox()
            self._batch_seq += 1
            batch_id = self._batch_seq
            self._batches[batch_id] = batch
            trace_headers = dict(inject_trace_context({}))  # one parent span for the batch
            try:
                for i, (wire, payload, hdrs) in enumerate(prepared(trace_headers)):
                    batch.results.append(None)
                    batch.pending += 1
                    self._pending_acks += 1
                    await self._nc.publish(wire, payload, reply=f"{prefix}.{batch_id}.{i}",
                                           headers=hdrs)
                    if self._pending_acks >= MAX_PENDING_ACKS:
                        await self._wait_for_acks(timeout)
                batch.sent = True
                span.set_attribute("messages", len(batch.results))
                if batch.pending:
                    await asyncio.wait_for(batch.done.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                self._batches.pop(batch_id, None)
                self._pending_acks -= batch.pending
                self._acks_drained.set()
        acks = [r for r in batch.results if isinstance(r, api.PubAck)]
        if len(acks) != len(batch.results):
            self._raise_if_denied("publish", self.wire_subject(""), started, prefix=True)
            errors = [r for r in batch.results if isinstance(r, str)]
            missing = len(batch.results) - len(acks) - len(errors)
            raise BusError(f"{len(batch.results) - len(acks)} of {len(batch.results)} messages "
                           f"not acknowledged ({missing} timed out after {timeout}s"
                           + (f"; first error: {errors[0]}" if errors else "") + ")",
                           failed=len(batch.results) - len(acks), total=len(batch.results))
        return acks

    async def _ack_inbox(self) -> str:
        """The inbox prefix on which batch acks arrive (subscribed once per bus)."""
        if self._ack_prefix is None:
            prefix = self._nc.new_inbox()
            await self._nc.subscribe(f"{prefix}.>", cb=self._on_batch_ack)
            self._ack_prefix = prefix
        return self._ack_prefix

    async def _wait_for_acks(self, timeout: float) -> None:
        while self._pending_acks >= MAX_PENDING_ACKS // 2:
            self._acks_drained.clear()
            await asyncio.wait_for(self._acks_drained.wait(), timeout)

    async def _on_batch_ack(self, msg: Msg) -> None:
        _, _, tail = msg.subject.rpartition(f"{self._ack_prefix}.")
        batch_token, _, index_token = tail.partition(".")
        batch = self._batches.get(int(batch_token))
        if batch is None:  # a late ack of a batch that timed out
            return
        index = int(index_token)
        if batch.results[index] is not None:
            return
        result: api.PubAck | str
        status = (msg.headers or {}).get("Status")
        if status == "503":
            result = "no stream stores this subject (call declare_streams())"
        else:
            try:
                body = json.loads(msg.data)
                error = body.get("error")
                result = (f"{error.get('code')}: {error.get('description')}" if error else
                          api.PubAck(stream=body["stream"], seq=body["seq"],
                                     domain=body.get("domain"),
                                     duplicate=body.get("duplicate", False)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                result = f"unreadable ack {msg.data[:100]!r}: {exc}"
        batch.results[index] = result
        batch.pending -= 1
        self._pending_acks -= 1
        if self._pending_acks < MAX_PENDING_ACKS // 2:
            self._acks_drained.set()
        if batch.pending == 0 and batch.sent:
            batch.done.set()

    async def publish_bytes(self, subject: str, payload: bytes,
                            headers: Mapping[str, str] | None = None) -> api.PubAck:
        """Publish raw bytes to a stored subject without decoding them (for replays and tests).

        No model check: consumers dead-letter whatever does not decode.
        """
        wire = self.wire_subject(subject)
        started = time.monotonic()
        try:
            return await self._js.publish(wire, payload, headers=dict(headers or {}) or None)
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
            raise BusError(f"no stream stores {subject!r}: call declare_streams() first",
                           subject=subject) from None
        except nats.errors.MaxPayloadError:
            raise BusError(f"a message of {len(payload)} bytes is larger than the server's "
                           f"max_payload ({self._nc.max_payload} bytes)", subject=subject,
                           size=len(payload), max_payload=self._nc.max_payload) from None
        except (nats.errors.TimeoutError, nats.js.errors.Error) as exc:
            self._raise_if_denied("publish", wire, started)
            raise BusError(f"publish to {wire!r} not acknowledged: {exc}",
                           subject=subject) from None

    # --- consume ------------------------------------------------------------------------------

    async def consume(self, subject: str, handler: Handler, *, durable: str,
                      batch: int = 64, max_deliver: int | None = None,
                      nak_backoff: Sequence[float] | None = None, ack_wait: float | None = None,
                      fetch_timeout: float = 1.0) -> Consumer:
        """Start a durable pull consumer on ``subject`` (wildcards allowed) and return it.

        ``handler(delivery)`` is awaited for each message in order; returning acks it, raising
        naks it with the next ``nak_backoff`` delay, until ``max_deliver`` deliveries, after
        which the message is dead-lettered. The consumer runs until :meth:`Consumer.stop` or
        :meth:`drain`.
        """
        domain = domain_of(subject)
        if not _TOKEN.match(durable):
            raise BusError(f"durable name must match {_TOKEN.pattern}, got {durable!r}")
        stream = self.stream_for(domain)
        limit = max_deliver if max_deliver is not None else self.settings.max_deliver
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=self.wire_subject(subject),
            # One more than ours: the extra delivery of a message whose consumer died on its
            # last try reaches us, and we dead-letter it instead of the server dropping it.
            max_deliver=limit + 1,
            ack_wait=ack_wait if ack_wait is not None else self.settings.ack_wait,
            max_ack_pending=max(batch * 4, 1000),
        )
        started = time.monotonic()
        try:
            await self._js.add_consumer(stream, config)
            psub = await self._js.pull_subscribe_bind(durable=durable, stream=stream)
        except nats.js.errors.NotFoundError:
            raise BusError(f"stream {stream} does not exist: call declare_streams()",
                           stream=stream) from None
        except nats.js.errors.Error as exc:
            raise BusError(f"cannot create consumer {durable!r} on {stream}: {exc} (a durable "
                           "keeps its first configuration on older servers: delete it or use "
                           "another name)", stream=stream, durable=durable) from None
        except nats.errors.Error as exc:  # a timeout: the API request went unanswered
            self._raise_if_denied("publish", "$JS.API.", started, prefix=True)
            raise BusError(f"cannot create consumer {durable!r} on {stream}: "
                           f"{type(exc).__name__}: {exc}", stream=stream,
                           durable=durable) from None
        consumer = Consumer(self, psub, subject=subject, durable=durable, stream=stream,
                            handler=handler, batch=batch, max_deliver=limit,
                            nak_backoff=tuple(nak_backoff or self.settings.nak_backoff),
                            fetch_timeout=fetch_timeout)
        self._consumers.append(consumer)
        consumer.start()
        return consumer

    async def dead_letter(self, subject: str, data: bytes, headers: Mapping[str, str], *,
                          reason: str, errors: Sequence[Mapping[str, Any]] = (),
                          deliveries: int = 1, consumer: str | None = None,
                          dedupe_key: str | None = None) -> DeadLetter:
        """Store an undeliverable message on ``mts.v1.dlq.<domain>``; return the letter stored.

        The letter fits the connected server's ``max_payload`` (less :data:`DLQ_HEADROOM`): a
        message too large to carry whole in base64 is carried as a prefix, with its size and
        SHA-256 (see :func:`build_dead_letter`). Reason, errors and header values are
        redacted. Raises :class:`BusError` if the letter was not stored.
        """
        try:
            domain = domain_of(subject)
        except SubjectError:
            domain = "unknown"
        target = dlq_subject(domain)
        letter = build_dead_letter(subject, data, headers, reason=reason, errors=errors,
                                   deliveries=deliveries, consumer=consumer,
                                   max_bytes=self._nc.max_payload - DLQ_HEADROOM)
        await self.publish_acked(target, letter, msg_id=dedupe_key)
        _log.warning("message dead-lettered", subject=subject, dlq=target, reason=letter.reason,
                     deliveries=deliveries, consumer=consumer, payload_bytes=len(data),
                     payload_truncated=letter.payload_truncated)
        return letter

    # --- request / reply ----------------------------------------------------------------------

    async def request(self, subject: str, message: WireModel, *, timeout: float = 2.0,
                      reply_model: type[M] | None = None) -> M | bytes:
        """Send a command and wait for its reply (decoded into ``reply_model`` if given).

        Raises :class:`RequestFailed` when the server answered with an error and
        :class:`BusError` on timeout or when nobody serves the subject.
        """
        self._check(subject, message, command=True)
        hdrs = _content_headers(message)
        with instrumented("bus.request", kind=SpanKind.CLIENT, subject=subject):
            inject_trace_context(hdrs)
            wire = self.wire_subject(subject)
            started = time.monotonic()
            try:
                reply = await self._nc.request(wire, message.to_json(), timeout=timeout,
                                               headers=hdrs)
            except nats.errors.NoRespondersError:
                raise BusError(f"nobody serves {subject!r}", subject=subject) from None
            except nats.errors.TimeoutError:
                self._raise_if_denied("publish", wire, started)
                self._raise_if_denied("subscription", "_INBOX.", started, prefix=True)
                raise BusError(f"no reply on {subject!r} within {timeout}s",
                               subject=subject) from None
        if reply.headers and ERROR_HEADER in reply.headers:
            body = json.loads(reply.data or b"{}")
            raise RequestFailed(f"{subject}: {body.get('message', 'request failed')}",
                                subject=subject, remote_code=reply.headers[ERROR_HEADER],
                                errors=body.get("errors", []))
        if reply_model is None:
            return reply.data
        return parse_message(reply_model, reply.data)

    async def serve(self, subject: str, handler: RequestHandler, *,
                    queue: str | None = None, concurrency: int = 1,
                    record_as: str | None = None) -> Subscription:
        """Answer requests on ``subject`` with ``handler(decoded_request) -> reply model``.

        A request that does not decode is dead-lettered and answered with an ``Mts-Error``
        header; so is a handler exception (without dead-lettering: the caller decides).

        ``record_as``: the service's name; each answer to a decoded request - accepted or
        refused - is then also published as a :class:`~mts1b_foundation.CommandAnswered` on
        ``mts.v1.<domain>.answers.recorded`` (stored), after the reply is sent, so that the
        audit chain holds refused commands too. A record that cannot be published is logged
        at ERROR; the reply has gone out already.

        ``concurrency``: how many requests the handler may have in hand at once. With 1 (the
        default) requests are answered one after another in arrival order. A service whose
        handler mostly waits (on a database, a broker) sets more, so that one slow request does
        not hold up the rest; arrival order is then no longer answer order. Beyond the limit,
        requests wait in the subscription's queue. :meth:`drain` (and
        :meth:`wait_requests`) finish the requests in hand.
        """
        if not isinstance(concurrency, int) or concurrency < 1:
            raise BusError(f"serve concurrency must be an integer >= 1, got {concurrency!r}",
                           subject=subject, concurrency=repr(concurrency))
        model = model_for_subject(subject) if "*" not in subject else None
        answers = answers_subject(subject) if record_as is not None else None

        async def record(msg: Msg, request: WireModel, ok: bool, code: str | None,
                         reply: WireModel | None) -> None:
            if answers is None or record_as is None:
                return
            try:
                answered = CommandAnswered(
                    answer_id=new_event_id(), service=record_as,
                    command_subject=subject,
                    request_msg_id=(msg.headers or {}).get("Nats-Msg-Id") or None,
                    request_sha256=hashlib.sha256(msg.data).hexdigest(),
                    request=request.model_dump(mode="json"), ok=ok, code=code,
                    reply=reply.model_dump(mode="json") if reply is not None else {},
                    ts=dt.datetime.now(dt.UTC))
                await self.publish(answers, answered, msg_id=answered.answer_id)
            except Exception as exc:  # the reply went out; the record is what was lost
                _log.error("answer not recorded", subject=subject, error=type(exc).__name__)

        async def on_request(msg: Msg) -> None:
            logical = self.logical_subject(msg.subject)
            headers = dict(msg.headers or {})
            with instrumented("bus.serve", parent=extract_trace_context(headers),
                              kind=SpanKind.SERVER, subject=logical):
                try:
                    request = parse_message(model or model_for_subject(logical), msg.data)
                except (SubjectError, ValidationFailed) as exc:
                    await self._safe_dead_letter(logical, msg.data, headers, exc)
                    await _respond_error(self._nc, msg, exc.code, exc.message,
                                         exc.context.get("errors", []))
                    return
                try:
                    reply = await handler(request)
                except MtsError as exc:
                    await _respond_error(self._nc, msg, exc.code, exc.message, [])
                    await record(msg, request, False, exc.code, None)
                    return
                except Exception as exc:
                    # Its text is for the service's log, not for whoever sent the request.
                    _log.exception("request handler failed", subject=logical)
                    await _respond_error(self._nc, msg, "PLATFORM.BUS.HANDLER",
                                         f"the service failed to handle the request "
                                         f"({type(exc).__name__}); its log has the details",
                                         [])
                    await record(msg, request, False, "PLATFORM.BUS.HANDLER", None)
                    return
                sent = _redacted_reply(reply)
                await msg.respond(sent.to_json())
                ok = getattr(sent, "ok", True)
                code = getattr(sent, "code", None)
                await record(msg, request, ok if isinstance(ok, bool) else True,
                             str(code.value if hasattr(code, "value") else code)
                             if code is not None else None, sent)

        callback: Callable[[Msg], Awaitable[None]] = on_request
        if concurrency > 1:
            slots = asyncio.Semaphore(concurrency)

            def finished(task: asyncio.Task[None]) -> None:
                self._in_hand.discard(task)
                slots.release()

            async def dispatch(msg: Msg) -> None:
                await slots.acquire()  # nats-py queues further messages while we wait here
                task = asyncio.get_running_loop().create_task(on_request(msg))
                self._in_hand.add(task)
                task.add_done_callback(finished)

            callback = dispatch
        wire = self.wire_subject(subject)
        sub = await self._nc.subscribe(wire, queue=queue or "", cb=callback)
        # nats-py buffers SUB; flush so that once serve() returns the server routes requests
        # here (otherwise an early request gets "no responders"), and a refused subscription
        # is known.
        try:
            await self.confirm_subscription(wire)
        except BusPermissionError:
            await _quietly(sub.unsubscribe())
            raise
        self._servers.append(sub)
        return sub

    async def confirm_subscription(self, wire_subject: str, timeout: int = 5) -> None:
        """Flush, then raise :class:`BusPermissionError` if the server refused a subscription
        to ``wire_subject`` (a subject on the wire: :meth:`wire_subject` of a logical one).

        Why: nats-py's ``subscribe`` returns at once and a refusal arrives later, only as an
        error callback, leaving a subscription that never receives anything. The server answers
        in order, so once a PING sent after the SUB is answered, any refusal has been seen. The
        SUB waits in nats-py's pending buffer while ``flush`` writes its PING straight to the
        socket, so the buffer is written first (``_flush_pending(force_flush=True)``);
        without that the PONG can overtake the refusal.
        """
        started = time.monotonic() - 1.0  # a refusal may arrive before subscribe() returned
        try:
            await self._nc._flush_pending(force_flush=True)
            await self._nc.flush(timeout)
        except nats.errors.Error as exc:
            raise BusError(f"NATS did not answer a flush within {timeout}s: "
                           f"{type(exc).__name__}", subject=wire_subject) from None
        self._raise_if_denied("subscription", wire_subject, started)

    def _raise_if_denied(self, operation: str, subject: str, since: float, *,
                         prefix: bool = False) -> None:
        denied = self._errors.denied(operation, subject, since, prefix=prefix)
        if denied is not None:
            raise _permission_error(operation, denied)

    async def _safe_dead_letter(self, subject: str, data: bytes, headers: Mapping[str, str],
                                exc: MtsError) -> None:
        """Dead-letter an invalid request; a request cannot be redelivered, so a failure here
        is logged as an error with the payload's size and digest (to find it by)."""
        try:
            await self.dead_letter(subject, data, headers, reason=f"invalid request: {exc}",
                                   errors=exc.context.get("errors", []))
        except Exception:
            _log.exception("could not dead-letter an invalid request", subject=subject,
                           payload_bytes=len(data),
                           payload_sha256=hashlib.sha256(data).hexdigest())

    # --- key/value ----------------------------------------------------------------------------

    async def kv(self, bucket: str, *, history: int = 1, ttl: float | None = None) -> KeyValue:
        """A key/value bucket for small shared state (created if missing)."""
        name = self._bucket(bucket)
        started = time.monotonic()
        try:
            try:
                store = await self._js.key_value(name)
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
                store = await self._js.create_key_value(
                    api.KeyValueConfig(bucket=name, history=history, ttl=ttl,
                                       storage=api.StorageType.FILE))
        except (nats.js.errors.Error, nats.errors.Error) as exc:
            self._raise_if_denied("publish", "$JS.API.", started, prefix=True)
            raise BusError(f"cannot open key/value bucket {name!r}: {type(exc).__name__}: "
                           f"{exc}", bucket=bucket) from None
        return KeyValue(store, bucket)

    # --- shutdown -----------------------------------------------------------------------------

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGTERM,
                                                                 signal.SIGINT)) -> None:
        """Drain gracefully when the process receives one of ``signals``."""
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        _log.info("signal received: draining the bus", signal=signal.Signals(sig).name)
        task = asyncio.get_running_loop().create_task(self.drain())
        self._signal_task = task  # keep a reference until it is done

    async def drain(self, timeout: float = 30.0) -> None:
        """Stop consumers after their current message, wait for acks, drain, close."""
        if self._draining:
            await self._closed.wait()
            return
        self._draining = True
        try:
            await asyncio.gather(*(c.stop() for c in self._consumers), return_exceptions=True)
            for sub in self._servers:
                with contextlib.suppress(nats.errors.Error):
                    await sub.drain()  # type: ignore[no-untyped-call]
            await self.wait_requests(timeout)
            deadline = asyncio.get_running_loop().time() + timeout
            while self._batches and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)  # publish_batch calls in flight finish first
            if self._batches:
                _log.error("publish acks still pending at shutdown",
                           pending=self._pending_acks)
            if not self._nc.is_closed:
                try:
                    await asyncio.wait_for(self._nc.drain(), timeout)
                except (TimeoutError, nats.errors.Error):
                    await self._nc.close()
        finally:
            self._closed.set()

    async def wait_requests(self, timeout: float = 30.0) -> bool:
        """Wait until every request taken by a concurrent :meth:`serve` has been answered.

        Call it after draining the serving subscriptions (which stops new requests). Returns
        False if some were still in hand after ``timeout`` seconds.
        """
        if not self._in_hand:
            return True
        _done, pending = await asyncio.wait(set(self._in_hand), timeout=timeout)
        if pending:
            _log.error("requests still in hand at shutdown", pending=len(pending))
        return not pending

    async def wait_closed(self) -> None:
        """Return once :meth:`drain` has finished (e.g. after SIGTERM)."""
        await self._closed.wait()


def _letter_value(value: Any) -> str | int | float | bool | None:
    """One value of a dead letter's error entry: a JSON scalar, text redacted and cut."""
    scalar = _scalar(value)
    return redact(scalar)[:2000] if isinstance(scalar, str) else scalar


def build_dead_letter(subject: str, data: bytes, headers: Mapping[str, str], *, reason: str,
                      errors: Sequence[Mapping[str, Any]] = (), deliveries: int = 1,
                      consumer: str | None = None, max_bytes: int,
                      ts: dt.datetime | None = None) -> DeadLetter:
    """The :class:`DeadLetter` for ``data``, whose JSON takes at most ``max_bytes`` bytes.

    The whole payload when it fits; otherwise, in this order, until the letter fits: the
    errors are cut to :data:`MAX_LETTER_ERRORS` and header values to 1,024 characters, then
    errors and headers are left out (an entry in ``errors`` says so) and the reason is cut to
    1,000 characters, and ``payload_b64`` carries the longest prefix of the payload that fits,
    with ``payload_truncated``. ``payload_size`` and ``payload_sha256`` always describe the
    whole payload. Why this order: the payload is what a person replays or inspects; errors and
    headers of a message that large are rarely what matters.

    Text (reason, error values, header values) is redacted: letters are read by people, with
    ``mts mts1b-platform tail`` among others. The payload is kept as it was, byte for byte.
    Raises :class:`BusError` if not even a letter without payload fits (a ``max_payload`` of a
    few kilobytes).
    """
    size = len(data)
    digest = hashlib.sha256(data).hexdigest()
    kept_errors = [{str(k)[:64]: _letter_value(v) for k, v in e.items()} for e in errors]
    kept_headers = {str(k): redact(str(v)) for k, v in headers.items()}
    text = redact(reason)[:4000] or "no reason given"
    common = {"original_subject": subject[:512] or "?", "deliveries": deliveries,
              "consumer": consumer, "ts": ts or dt.datetime.now(dt.UTC),
              "payload_size": size, "payload_sha256": digest}

    def letter(payload: bytes, truncated: bool) -> DeadLetter:
        return DeadLetter(**common, reason=text, errors=kept_errors, headers=kept_headers,
                          payload_b64=base64.b64encode(payload).decode("ascii"),
                          payload_truncated=truncated)

    # Whole: base64 is 4 characters per 3 bytes, and text is measured as it is encoded.
    whole_b64 = 4 * -(-size // 3)
    if len(letter(b"", bool(size)).to_json()) + whole_b64 <= max_bytes:
        whole = letter(data, False)
        if len(whole.to_json()) <= max_bytes:
            return whole
    left_out = len(kept_errors) - MAX_LETTER_ERRORS
    if left_out > 0:
        kept_errors = [*kept_errors[:MAX_LETTER_ERRORS],
                       {"field": "<dead letter>", "value": left_out,
                        "reason": "more errors left out so that the letter fits max_payload"}]
    kept_headers = {k[:256]: v[:1024] for k, v in list(kept_headers.items())[:64]}
    skeleton = letter(b"", True)
    if len(skeleton.to_json()) > max_bytes:
        kept_errors = [{"field": "<dead letter>", "value": len(errors),
                        "reason": "errors and headers left out so that the letter fits "
                                  "max_payload"}]
        kept_headers = {}
        text = text[:1000]
        skeleton = letter(b"", True)
    room = max_bytes - len(skeleton.to_json())
    if room < 0:
        raise BusError(f"a dead letter for {subject!r} does not fit in {max_bytes} bytes even "
                       "without its payload", subject=subject, max_bytes=max_bytes)
    prefix = min(room // 4 * 3, size - 1)
    return letter(data[:prefix], True)


class Consumer:
    """A running durable pull consumer (see :meth:`Bus.consume`)."""

    def __init__(self, bus: Bus, psub: JetStreamContext.PullSubscription, *, subject: str,
                 durable: str, stream: str, handler: Handler, batch: int, max_deliver: int,
                 nak_backoff: tuple[float, ...], fetch_timeout: float) -> None:
        self.bus = bus
        self.subject = subject
        self.durable = durable
        self.stream = stream
        self._psub = psub
        self._handler = handler
        self._batch = batch
        self.max_deliver = max_deliver
        self._backoff = nak_backoff or (1.0,)
        self._fetch_timeout = fetch_timeout
        self._stopping = False
        self._fetching = False
        self._task: asyncio.Task[None] | None = None
        self.stats: dict[str, int] = {"acked": 0, "naked": 0, "dead_lettered": 0, "left": 0}
        """``acked`` (handled), ``naked`` (handler raised, retried later), ``dead_lettered``,
        ``left`` (neither acknowledged nor dead-lettered because something failed - the server
        delivers it again after ``ack_wait``)."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                             name=f"consumer:{self.durable}")

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self._fetching = True
                msgs = await self._psub.fetch(self._batch, timeout=self._fetch_timeout)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                break
            except asyncio.CancelledError:
                break
            finally:
                self._fetching = False
            for i, msg in enumerate(msgs):
                if self._stopping:
                    # Hand the rest back at once rather than after ack_wait.
                    for rest in msgs[i:]:
                        await _quietly(rest.nak())
                    break
                await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        deliveries = meta.num_delivered or 1
        logical = self.bus.logical_subject(msg.subject)
        headers = dict(msg.headers or {})
        dedupe = f"dlq-{self.stream}-{self.durable}-{meta.sequence.stream}"
        try:
            if deliveries > self.max_deliver:
                await self._dead_letter(msg, logical, headers, deliveries, dedupe,
                                        f"not acknowledged after {self.max_deliver} deliveries "
                                        "(consumer died or exceeded ack_wait)")
                return
            try:
                model = parse_message(model_for_subject(logical), msg.data)
            except (SubjectError, ValidationFailed) as exc:
                await self._dead_letter(msg, logical, headers, deliveries, dedupe,
                                        f"invalid message: {exc}",
                                        exc.context.get("errors", []))
                return
            delivery = Delivery(subject=logical, message=model, headers=headers,
                                msg_id=headers.get(MSG_ID), deliveries=deliveries,
                                stream_seq=meta.sequence.stream)
            try:
                with instrumented("bus.consume", parent=extract_trace_context(headers),
                                  kind=SpanKind.CONSUMER, subject=logical,
                                  durable=self.durable):
                    await self._handler(delivery)
            except Exception as exc:
                reason = f"handler failed: {type(exc).__name__}: {exc}"
                if deliveries >= self.max_deliver:
                    await self._dead_letter(msg, logical, headers, deliveries, dedupe,
                                            f"{reason} (after {deliveries} deliveries)")
                    return
                delay = self._backoff[min(deliveries - 1, len(self._backoff) - 1)]
                _log.warning("handler failed; will retry", subject=logical, durable=self.durable,
                             deliveries=deliveries, retry_in_s=delay, error=repr(exc))
                await msg.nak(delay=delay)
                self.stats["naked"] += 1
                return
            await msg.ack()
            self.stats["acked"] += 1
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
            raise
        except Exception:
            # Could not ack, nak or dead-letter: leave the message unacknowledged so the server
            # delivers it again after ack_wait. Never drop it.
            self.stats["left"] += 1
            if deliveries > self.max_deliver:
                # The server's max_deliver is ours + 1: it will not deliver this one again.
                _log.exception("message could not be dead-lettered on its last delivery: it "
                               "stays unacknowledged in its stream", subject=logical,
                               durable=self.durable, deliveries=deliveries, stream=self.stream,
                               stream_seq=meta.sequence.stream)
            else:
                _log.exception("message left for redelivery", subject=logical,
                               durable=self.durable, deliveries=deliveries,
                               stream_seq=meta.sequence.stream)

    async def _dead_letter(self, msg: Msg, subject: str, headers: Mapping[str, str],
                           deliveries: int, dedupe: str, reason: str,
                           errors: Sequence[Mapping[str, Any]] = ()) -> None:
        await self.bus.dead_letter(subject, msg.data, headers, reason=reason, errors=errors,
                                   deliveries=deliveries, consumer=self.durable,
                                   dedupe_key=dedupe)
        await msg.ack()  # only once the dead letter is stored
        self.stats["dead_lettered"] += 1

    async def stop(self) -> None:
        """Finish the message in hand, then stop fetching (the durable consumer stays)."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        if self._fetching:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await _quietly(self._psub.unsubscribe())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


class KeyValue:
    """A JetStream key/value bucket holding bytes, text or wire models."""

    def __init__(self, store: NatsKeyValue, bucket: str) -> None:
        self._store = store
        self.bucket = bucket

    async def put(self, key: str, value: bytes | str | WireModel) -> int:
        """Store ``value``; return the new revision."""
        data = value.to_json() if isinstance(value, WireModel) else (
            value.encode() if isinstance(value, str) else value)
        return await self._store.put(key, data)

    async def get(self, key: str) -> bytes | None:
        """The current value, or None when the key is absent or deleted."""
        try:
            entry = await self._store.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value

    async def get_model(self, key: str, model: type[M]) -> M | None:
        data = await self.get(key)
        return None if data is None else parse_message(model, data)

    async def delete(self, key: str) -> None:
        await self._store.delete(key)

    async def keys(self) -> list[str]:
        """The keys that hold a value now (a deleted or purged key is left out).

        Why not nats-py's ``keys()``: it ends its watch when the consumer's first info shows
        nothing pending, which races the messages already on their way - on a loaded machine
        it returned no key of a bucket holding three. The stream's own per-subject state is
        exact; each key is then read, so one whose last message is a delete marker drops out.
        """
        store = self._store
        prefix: str = store._pre
        try:
            info = await store._js.stream_info(store._stream, subjects_filter=f"{prefix}>")
        except (nats.js.errors.Error, nats.errors.Error) as exc:
            raise BusError(f"cannot list the keys of bucket {self.bucket!r}: "
                           f"{type(exc).__name__}", bucket=self.bucket) from None
        keys = []
        for subject in sorted(info.state.subjects or {}):
            key = subject[len(prefix):]
            if await self.get(key) is not None:
                keys.append(key)
        return keys

    async def watch(self, key: str = ">") -> AsyncIterator[tuple[str, bytes | None]]:
        """Yield ``(key, value)`` for every change (``None`` for a delete), current values first."""
        watcher = await self._store.watch(key)
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                yield entry.key, None if deleted else entry.value
        finally:
            await _quietly(watcher.stop())  # type: ignore[no-untyped-call]


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception as exc:
        _log.debug("ignored during cleanup", error=repr(exc))


async def _respond_error(nc: NatsClient, msg: Msg, code: str, message: str,
                         errors: Any) -> None:
    """Reply with ``Mts-Error: <code>`` and a JSON body ``{code, message, errors}``."""
    if not msg.reply:
        return
    body = json.dumps({"code": code, "message": redact(message),
                       "errors": _redacted_errors(errors)}, default=str)
    await nc.publish(msg.reply, body.encode(), headers={ERROR_HEADER: code})


def _redacted_errors(errors: Any) -> Any:
    """Validation errors with every text value redacted (a rejected field may hold a secret)."""
    if not isinstance(errors, list):
        return []
    return [{str(k): _redacted(v) for k, v in e.items()} if isinstance(e, Mapping) else
            redact(str(e)) for e in errors]


def _redacted_reply(reply: WireModel) -> WireModel:
    """``reply`` with its ``message`` and ``venue_message`` redacted (a copy only when that
    changes something): replies carry people's text, sometimes quoting a driver's error."""
    fields = type(reply).model_fields
    update: dict[str, Any] = {}
    for name in ("message", "venue_message"):
        if name in fields:
            text = getattr(reply, name)
            if isinstance(text, str) and text:
                masked = redact(text)
                if masked != text:
                    update[name] = masked
    return reply.model_copy(update=update) if update else reply


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


async def _log_error(exc: Exception) -> None:
    _log.warning("NATS connection error", error=repr(exc))
