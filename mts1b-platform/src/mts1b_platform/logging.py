"""Structured logging: JSON lines for machines, a readable format for terminals, secrets masked.

``get_logger(name, **context)`` returns a :class:`BoundLogger` over the standard library logger
``name``; the context (``fund_id``, ``order_id``, ...) is written with every line, and keyword
arguments of a call add more. :func:`configure_logging` installs one handler on the root logger
(JSON when stderr is not a terminal, console otherwise; ``MTS_LOG_FORMAT=json|console`` and
``MTS_LOG_LEVEL`` override). If nobody configured logging, the first line logged does that; if
the application set up its own handlers, they are left alone. The OpenTelemetry log bridge that
:func:`mts1b_platform.telemetry.init_telemetry` adds with an OTLP endpoint is not such a
handler: it ships copies of the lines, so lines still reach stderr next to it.

Every line names the service: :func:`set_service` (what ``mts ... serve`` commands call, so the
level and format the ``mts`` command chose stay), ``configure_logging(service)`` or
``$MTS_SERVICE``. A process that none of them named writes no ``service`` field at all rather
than an empty or guessed one, so a log search for a service never matches a process that did
not say what it was.

Every field of a line - the formatted message, each context value, the exception text - goes
through :func:`mts1b_platform.redaction.redact` before it is written, and context fields whose
names look sensitive (``password``, ``api_key``, ``*_token`` ...) are masked whole. Records made
through :class:`BoundLogger` are scrubbed before any handler sees them, so other handlers
(pytest's ``caplog``, a user's file handler) never receive a secret; records of plain standard
library loggers are scrubbed by our handler's :class:`RedactingFilter`.

A JSON line::

    {"timestamp": "2024-07-03T14:00:00.123456Z", "level": "INFO", "service": "oms",
     "logger": "mts1b_oms.engine", "message": "order accepted", "order_id": "ord-1",
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import IO, Any, Literal

from mts1b_platform.redaction import MASK, SENSITIVE_KEY, redact

__all__ = [
    "BoundLogger",
    "ConsoleFormatter",
    "JsonFormatter",
    "RedactingFilter",
    "configure_logging",
    "get_logger",
    "set_service",
]

_CONTEXT_ATTR = "mts_context"
CONTEXT_ATTRIBUTE = _CONTEXT_ATTR
"""The log record attribute holding a BoundLogger's context fields (read by the OTLP bridge)."""
_HANDLER_MARK = "_mts1b_handler"
# Marks the OpenTelemetry bridge handler (see _attach_bridge): it is not an application's own
# setup, so it must not stop the stderr handler from being installed.
_BRIDGE_MARK = "_mts1b_otel_bridge"
_lock = threading.Lock()
_service: str = os.environ.get("MTS_SERVICE", "")
_configured = False


def _scrub_value(key: str, value: Any) -> Any:
    """A JSON-safe, redacted version of one context value."""
    if SENSITIVE_KEY.match(key):
        return MASK
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(key, v) for v in value]
    if hasattr(value, "get_secret_value"):  # pydantic SecretStr / SecretBytes
        return MASK
    return redact(str(value))


def _trace_ids() -> dict[str, str]:
    """trace_id/span_id of the current OpenTelemetry span, when there is a valid one."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
        return {}
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


class RedactingFilter(logging.Filter):
    """Scrubs a record in place: message, arguments, context fields and exception text.

    :class:`BoundLogger` applies it before any handler runs; our handler applies it too, for
    records from plain standard library loggers (third-party libraries).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_mts1b_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad %-format must not lose the line
            message = f"{record.msg!r} (unformattable with args: {type(exc).__name__})"
        record.msg = redact(message)
        record.args = None
        context = getattr(record, _CONTEXT_ATTR, None)
        if context:
            setattr(record, _CONTEXT_ATTR,
                    {k: _scrub_value(k, v) for k, v in context.items()})
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = redact(text.rstrip("\n"))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._mts1b_redacted = True
        return True


_REDACTOR = RedactingFilter()


def _utc_iso(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _service_of(record: logging.LogRecord) -> str:
    """The record's own ``service`` (``extra={"service": ...}``), else the process's name."""
    return str(getattr(record, "service", None) or _service)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields as in the module docstring.

    ``service`` is left out when nothing named the service (see the module docstring).
    """

    def format(self, record: logging.LogRecord) -> str:
        _REDACTOR.filter(record)
        line: dict[str, Any] = {
            "timestamp": _utc_iso(record.created),
            "level": record.levelname,
        }
        service = _service_of(record)
        if service:
            line["service"] = service
        line["logger"] = record.name
        line["message"] = record.msg
        for key, value in (getattr(record, _CONTEXT_ATTR, None) or {}).items():
            line.setdefault(key, value)
        for key, value in _trace_ids().items():
            line.setdefault(key, value)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS.mmmZ LEVEL [service] logger: message  key=value ...`` for people at a terminal.

    ``[service]`` is left out when nothing named the service.
    """

    def format(self, record: logging.LogRecord) -> str:
        _REDACTOR.filter(record)
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = dict(getattr(record, _CONTEXT_ATTR, None) or {})
        fields.update(_trace_ids())
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        service = _service_of(record)
        where = f"[{service}] {record.name}" if service else record.name
        text = f"{stamp}Z {record.levelname:<7} {where}: {record.msg}"
        if extra:
            text += f"  {extra}"
        if record.exc_text:
            text += "\n" + record.exc_text
        # The final text is scrubbed again: the cheap, last line of defence.
        return redact(text)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to whatever ``sys.stderr`` is when a line is emitted, not when configured.

    Why: a command run in-process (a test's CLI runner, a notebook cell) swaps ``sys.stderr``
    for its own stream and closes it afterwards; a handler that kept the old stream would then
    fail with "I/O operation on closed file" on the next line logged by anything else in the
    process. The standard library's last-resort handler looks stderr up the same way.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def configure_logging(
    service: str | None = None,
    *,
    level: int | str | None = None,
    fmt: Literal["json", "console", "auto"] | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install (or replace) the MTS1B handler on the root logger and return it.

    ``service`` names the process in every line (default: what :func:`set_service` or
    ``$MTS_SERVICE`` said). ``fmt`` defaults to ``$MTS_LOG_FORMAT``, else ``auto``: console on a
    terminal, JSON otherwise. ``level`` defaults to ``$MTS_LOG_LEVEL`` or ``INFO``. Idempotent:
    calling again replaces the previous handler (never the OpenTelemetry bridge). A bad format
    or level raises ``ValueError`` naming it before anything is changed.
    """
    global _service
    probe = stream if stream is not None else sys.stderr
    chosen = fmt or os.environ.get("MTS_LOG_FORMAT") or "auto"
    if chosen == "auto":
        chosen = "console" if getattr(probe, "isatty", lambda: False)() else "json"
    if chosen not in ("json", "console"):
        raise ValueError(f"log format must be 'json' or 'console', not {chosen!r}")
    lvl = level if level is not None else os.environ.get("MTS_LOG_LEVEL") or "INFO"
    if isinstance(lvl, str):
        lvl = lvl.strip().upper()
        if lvl not in logging.getLevelNamesMapping():
            raise ValueError("log level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
                             f"not {lvl!r}")
    handler: logging.StreamHandler[IO[str]] = (
        logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler())
    handler.setFormatter(JsonFormatter() if chosen == "json" else ConsoleFormatter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    global _configured
    with _lock:
        _configured = True
        if service is not None:
            _service = service
        for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(lvl)
    return handler


def set_service(name: str) -> None:
    """Name the service in every line logged from now on, in both formats.

    Only the name changes: the handler, level and format that are in place (the ``mts``
    command's ``-v``/``--log-format``, say) stay, which is why ``serve`` commands call this and
    not :func:`configure_logging`. The name given here wins over ``$MTS_SERVICE``; an empty name
    means "unnamed" again, and lines then carry no ``service`` field.
    """
    global _service
    with _lock:
        _service = name


def _ensure_configured() -> None:
    """Install our handler on first use, unless the application configured logging itself.

    The OpenTelemetry bridge does not count as the application's setup: with only the bridge
    on the root logger, lines would leave for the collector and never reach stderr.
    """
    global _configured
    if _configured:
        return
    if all(getattr(h, _BRIDGE_MARK, False) for h in logging.getLogger().handlers):
        configure_logging()
    _configured = True


def _attach_bridge(handler: logging.Handler) -> None:
    """Add ``handler`` (telemetry's OpenTelemetry log bridge) to the root logger.

    The stderr handler is installed first if nobody configured logging, so lines are shipped
    and still shown. The bridge gets the redacting filter too: records of plain standard library
    loggers reach it unscrubbed when it runs before our stderr handler, and no secret may leave
    the process in an exported record either.
    """
    setattr(handler, _BRIDGE_MARK, True)
    handler.addFilter(_REDACTOR)
    _ensure_configured()
    logging.getLogger().addHandler(handler)


_CALLER_DEPTH = 3  # BoundLogger.log <- BoundLogger.info <- the caller


class BoundLogger:
    """A standard library logger plus context fields written on every line."""

    __slots__ = ("_context", "_logger")

    def __init__(self, logger: logging.Logger, context: Mapping[str, Any]) -> None:
        self._logger = logger
        self._context = dict(context)

    @property
    def name(self) -> str:
        return self._logger.name

    @property
    def context(self) -> Mapping[str, Any]:
        return dict(self._context)

    def bind(self, **context: Any) -> BoundLogger:
        """A logger with more context fields (this one is unchanged)."""
        return BoundLogger(self._logger, {**self._context, **context})

    def is_enabled_for(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, exc_info: Any = None,
            stack_info: bool = False, **fields: Any) -> None:
        """Log ``msg % args`` with the bound context plus ``fields``.

        The record is redacted before any handler sees it, so third-party handlers (pytest's
        caplog, a file handler added later) never receive a secret either.
        """
        _ensure_configured()
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        if exc_info is True or exc_info == 1:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        try:
            fn, lno, func, sinfo = logger.findCaller(stack_info, _CALLER_DEPTH)
        except ValueError:  # pragma: no cover - no Python frame to point at
            fn, lno, func, sinfo = "(unknown file)", 0, "(unknown function)", None
        record = logger.makeRecord(logger.name, level, fn, lno, msg, args,
                                   exc_info or None, func,
                                   {_CONTEXT_ATTR: {**self._context, **fields}}, sinfo)
        _REDACTOR.filter(record)
        logger.handle(record)

    def debug(self, msg: object, *args: object, **fields: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **fields)

    def info(self, msg: object, *args: object, **fields: Any) -> None:
        self.log(logging.INFO, msg, *args, **fields)

    def warning(self, msg: object, *args: object, **fields: Any) -> None:
        self.log(logging.WARNING, msg, *args, **fields)

    def error(self, msg: object, *args: object, **fields: Any) -> None:
        self.log(logging.ERROR, msg, *args, **fields)

    def critical(self, msg: object, *args: object, **fields: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **fields)

    def exception(self, msg: object, *args: object, **fields: Any) -> None:
        """Log at ERROR with the exception being handled (its text is redacted too)."""
        fields.setdefault("exc_info", True)
        self.log(logging.ERROR, msg, *args, **fields)


def get_logger(name: str, **context: Any) -> BoundLogger:
    """The logger for ``name`` (usually ``__name__``) with ``context`` on every line.

    >>> log = get_logger(__name__, fund_id="fund-a")
    >>> log.info("order accepted", order_id="ord-1")
    """
    return BoundLogger(logging.getLogger(name), context)
