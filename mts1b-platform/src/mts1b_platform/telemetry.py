"""OpenTelemetry for every MTS1B process: traces, metrics, logs, and trace context over NATS.

``init_telemetry(service)`` builds a tracer, a meter and a log provider for the service. When
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set they export over OTLP/HTTP (and standard library logs are
bridged to the OTLP log exporter); otherwise nothing leaves the process. Tests pass the SDK's
in-memory exporters instead. The exporter is the ``otlp`` extra
(``opentelemetry-exporter-otlp-proto-http``); with the endpoint set and the extra missing,
:func:`init_telemetry` raises :class:`TelemetryError` naming that distribution to install, not
``mts1b-platform[otlp]``: no ``mts1b-*`` name is registered on PyPI, so pip would take whoever
registered it first, and mts1b-platform is installed already.

Logs bridged to OTLP are copies: the lines still go to stderr through
:mod:`mts1b_platform.logging` (installed first if nobody configured logging), and the bridge
redacts as that handler does. What is batched for export is flushed when the interpreter exits,
even if the program never calls :func:`shutdown_telemetry` - an exit hook shuts the current
setup down, and does nothing when the program already did.

Where nothing would leave the process, nothing is recorded either: without a span exporter
:class:`instrumented` opens no span, and without a metric reader it counts nothing. Building a
span that is then dropped cost a hot service (the OMS, per order) several percent of its CPU.
Trace context still flows: the incoming ``traceparent`` becomes the current context, so what
this process publishes carries it on, and a downstream service that does export links its spans
to the nearest ancestor that was exported.

:class:`instrumented` gives every primitive the same two signals, labelled by service and
operation: a span named after the operation and a counter ``mts.operations`` (plus a duration
histogram ``mts.operation.duration`` in seconds) with ``outcome`` ``ok`` or ``error``::

    @instrumented("bus.publish")
    async def publish(...): ...

    with instrumented("datalake.ingest", source="yf"):
        ...

:func:`inject_trace_context` and :func:`extract_trace_context` carry the W3C ``traceparent``
through message headers, so the span a consumer opens is a child of the publisher's span.

Why our own provider handles and not only the OpenTelemetry globals: the globals can be set once
per process, while tests (and embedded use) need to re-initialise; the first
:func:`init_telemetry` also installs its providers as the globals for third-party libraries.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, TypeVar

from mts1b_foundation.errors import MtsError
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mts1b_platform import logging as mts_logging

__all__ = [
    "Telemetry",
    "TelemetryError",
    "current_telemetry",
    "extract_trace_context",
    "init_telemetry",
    "inject_trace_context",
    "instrumented",
    "shutdown_telemetry",
]

P = ParamSpec("P")
R = TypeVar("R")

_PROPAGATOR = TraceContextTextMapPropagator()

_OTLP_MISSING = ('OTEL_EXPORTER_OTLP_ENDPOINT is set, but the OTLP exporter is not installed: '
                 'pip install "opentelemetry-exporter-otlp-proto-http>=1.25,<2" (the otlp extra '
                 'of mts1b-platform), or unset OTEL_EXPORTER_OTLP_ENDPOINT')


class TelemetryError(MtsError, RuntimeError):
    """Telemetry cannot be set up as configured (an OTLP endpoint without the exporter)."""

    code: ClassVar[str] = "PLATFORM.TELEMETRY"


@dataclass
class Telemetry:
    """The providers of one service, and the instruments shared by :class:`instrumented`."""

    service: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    tracing: bool
    """Spans leave the process (an exporter is set up), so :class:`instrumented` opens them."""
    metering: bool
    """Metrics are read by something, so :class:`instrumented` counts and times operations."""
    _log_handler: logging.Handler | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.tracer = self.tracer_provider.get_tracer("mts1b_platform")
        self.meter = self.meter_provider.get_meter("mts1b_platform")
        self.operations = self.meter.create_counter(
            "mts.operations", unit="1", description="operations run, by service/operation/outcome")
        self.duration = self.meter.create_histogram(
            "mts.operation.duration", unit="s", description="operation wall time")

    @property
    def exporting(self) -> bool:
        """Whether any signal leaves the process."""
        return self.tracing or self.metering

    def shutdown(self) -> None:
        """Flush and stop the providers (and remove the OTLP log bridge).

        Idempotent: the exit hook calls it again for a setup the program already shut down,
        and the SDK's providers warn when stopped twice.
        """
        if self._closed:
            return
        self._closed = True
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()



class _ContextBridge(LoggingHandler):
    """The SDK's logging bridge, with a record's MTS1B context as flat OTLP attributes.

    ``get_logger(..., fund_id=...)`` keeps its context in one record attribute; exported as is
    it would reach the collector as one opaque ``mts_context`` value, and the redactor's own
    marker would travel too. A collector (Loki, Tempo) indexes flat keys, so each context field
    becomes an attribute of its own (values already scrubbed by the redactor; a field never
    overrides a standard attribute), and the marker stays home.
    """

    @staticmethod
    def _get_attributes(record: logging.LogRecord) -> Any:
        attributes = dict(LoggingHandler._get_attributes(record) or {})
        attributes.pop("_mts1b_redacted", None)
        context = attributes.pop(mts_logging.CONTEXT_ATTRIBUTE, None)
        if isinstance(context, Mapping):
            for key, value in context.items():
                flat = value if isinstance(value, str | bool | int | float) else str(value)
                attributes.setdefault(str(key), flat)
        return attributes

_current: Telemetry | None = None
_globals_installed = False
_exit_hook_installed = False


def _shutdown_at_exit() -> None:
    """The exit hook: flush and stop whatever setup is current (nothing if it was shut down).

    Registered after :mod:`logging` registered its own, so it runs first and the lines logged
    while flushing still reach stderr.
    """
    shutdown_telemetry()


def _install_exit_hook() -> None:
    """Register :func:`_shutdown_at_exit` once per process.

    The providers are made with ``shutdown_on_exit=False``: one hook that knows the order (the
    log bridge off, spans, metrics, then logs) instead of one per provider, several per setup
    after re-initialisation, that outlive the setup they belong to.
    """
    global _exit_hook_installed
    if not _exit_hook_installed:
        atexit.register(_shutdown_at_exit)
        _exit_hook_installed = True


def _otlp_exporters() -> tuple[type[SpanExporter], type[MetricExporter],
                             type[LogRecordExporter]]:
    """The OTLP/HTTP exporter classes, or :class:`TelemetryError` naming the extra to install."""
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TelemetryError(_OTLP_MISSING, extra="otlp") from None
    return OTLPSpanExporter, OTLPMetricExporter, OTLPLogExporter


def init_telemetry(
    service: str,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    log_exporter: LogRecordExporter | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    set_global: bool = True,
) -> Telemetry:
    """Set up tracing, metrics and logs for ``service`` and make them current.

    Exporters: the ones given (tests use ``InMemorySpanExporter``, ``InMemoryMetricReader``,
    ``InMemoryLogExporter``); else OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; else
    none - then spans and metrics are not recorded at all (see the module docstring). Calling
    again replaces the current setup (the previous one is shut down). With the endpoint set and
    the ``otlp`` extra missing, raises :class:`TelemetryError` before anything is changed.
    """
    global _current, _globals_installed
    otlp = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if otlp and (span_exporter is None or metric_reader is None or log_exporter is None):
        otlp_span, otlp_metric, otlp_log = _otlp_exporters()
    resource = Resource.create({"service.name": service, **(resource_attributes or {})})

    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    elif otlp:
        tracer_provider.add_span_processor(BatchSpanProcessor(otlp_span()))

    readers: list[MetricReader] = []
    if metric_reader is not None:
        readers.append(metric_reader)
    elif otlp:
        readers.append(PeriodicExportingMetricReader(otlp_metric()))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers,
                                   shutdown_on_exit=False)

    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    handler: logging.Handler | None = None
    if log_exporter is None and otlp:
        log_exporter = otlp_log()
    if log_exporter is not None:
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
        with warnings.catch_warnings():
            # The SDK's handler is deprecated in favour of a separate instrumentation package;
            # it still does exactly this bridge, without one more dependency.
            warnings.simplefilter("ignore", DeprecationWarning)
            handler = _ContextBridge(logger_provider=logger_provider)
        mts_logging._attach_bridge(handler)
    _install_exit_hook()

    previous = _current
    _current = Telemetry(service, tracer_provider, meter_provider, logger_provider,
                         tracing=otlp or span_exporter is not None,
                         metering=otlp or metric_reader is not None, _log_handler=handler)
    if previous is not None:
        previous.shutdown()
    if set_global and not _globals_installed:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _globals_installed = True
    return _current


def current_telemetry() -> Telemetry:
    """The current setup; a silent one for service ``$MTS_SERVICE`` if none was initialised."""
    global _current
    if _current is None:
        service = os.environ.get("MTS_SERVICE", "mts1b")
        resource = Resource.create({"service.name": service})
        _current = Telemetry(service, TracerProvider(resource=resource, shutdown_on_exit=False),
                             MeterProvider(resource=resource, shutdown_on_exit=False),
                             LoggerProvider(resource=resource, shutdown_on_exit=False),
                             tracing=False, metering=False)
    return _current


def shutdown_telemetry() -> None:
    """Flush and stop the current setup now.

    A program need not call it: the exit hook does it at interpreter exit. Services call it
    when they stop serving, so nothing waits for the interpreter to end.
    """
    global _current
    if _current is not None:
        _current.shutdown()
        _current = None


def inject_trace_context(headers: MutableMapping[str, str] | None = None,
                         ctx: otel_context.Context | None = None) -> MutableMapping[str, str]:
    """Write ``traceparent`` (and ``tracestate``) of the current span into ``headers``."""
    carrier: MutableMapping[str, str] = {} if headers is None else headers
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier


def extract_trace_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The context whose parent is the span that wrote ``headers`` (empty when none did)."""
    return _PROPAGATOR.extract(dict(headers or {}))


class instrumented:  # noqa: N801 - used as a decorator, named like one
    """A span and a counted, timed operation labelled by service and operation.

    Use as ``with instrumented("op", **attributes) as span:`` or as a decorator on a function or
    coroutine function. ``parent`` (a context from :func:`extract_trace_context`) makes the span
    a child of a remote span; ``kind`` is the OpenTelemetry span kind. Exceptions are recorded on
    the span, counted with ``outcome="error"`` and re-raised.
    """

    def __init__(self, operation: str, *, parent: otel_context.Context | None = None,
                 kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> None:
        self.operation = operation
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        self._span_cm: Any = None
        self._token: contextvars.Token[otel_context.Context] | None = None
        self._started = 0.0
        self._telemetry: Telemetry | None = None

    def _labels(self, telemetry: Telemetry, outcome: str) -> dict[str, str]:
        return {"service": telemetry.service, "operation": self.operation, "outcome": outcome}

    def __enter__(self) -> Span:
        telemetry = current_telemetry()
        self._telemetry = telemetry
        self._started = time.perf_counter()
        if not telemetry.tracing:  # no span: the remote parent (if any) is the current context
            self._span_cm = None
            self._token = otel_context.attach(self.parent) if self.parent is not None else None
            return trace.get_current_span()
        attrs = {"service": telemetry.service, "operation": self.operation,
                 **{k: v for k, v in self.attributes.items() if v is not None}}
        self._span_cm = telemetry.tracer.start_as_current_span(
            self.operation, context=self.parent, kind=self.kind, attributes=attrs,
            record_exception=True, set_status_on_exception=True)
        span: Span = self._span_cm.__enter__()
        return span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        telemetry = self._telemetry
        if telemetry is None:
            raise RuntimeError("instrumented.__exit__ without __enter__")
        if telemetry.metering:
            labels = self._labels(telemetry, "ok" if exc_type is None else "error")
            telemetry.operations.add(1, labels)
            telemetry.duration.record(time.perf_counter() - self._started, labels)
        if self._span_cm is None:
            if self._token is not None:
                otel_context.detach(self._token)
                self._token = None
            return
        if exc_type is None:
            trace.get_current_span().set_status(Status(StatusCode.OK))
        self._span_cm.__exit__(exc_type, exc, tb)

    def _fresh(self) -> instrumented:
        return instrumented(self.operation, parent=self.parent, kind=self.kind, **self.attributes)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if asyncio.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self._fresh():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._fresh():
                return func(*args, **kwargs)

        return wrapper
