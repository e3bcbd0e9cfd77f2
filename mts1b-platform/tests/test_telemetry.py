"""Telemetry with the SDK's in-memory exporters (spans, counters, trace context in headers) and
with the real OTLP/HTTP exporters against a local receiver, in this process and in a child."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from mts1b_platform import telemetry as telemetry_module
from mts1b_platform.telemetry import (
    TelemetryError,
    extract_trace_context,
    init_telemetry,
    inject_trace_context,
    instrumented,
    shutdown_telemetry,
)
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

if TYPE_CHECKING:  # opentelemetry-proto comes with the otlp extra: imported by the receiver
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

OTLP_MISSING = ("the OTLP/HTTP exporter (opentelemetry-exporter-otlp-proto-http, the otlp extra "
                "of mts1b-platform) is not installed")


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    init_telemetry("svc-test", span_exporter=spans, metric_reader=reader, set_global=False)
    yield spans, reader
    shutdown_telemetry()


@pytest.fixture
def otel_metrics_only() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    telemetry = init_telemetry("svc-metrics", metric_reader=reader, set_global=False)
    assert telemetry.metering and not telemetry.tracing
    yield reader
    shutdown_telemetry()


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for p in m.data.data_points]


def test_context_manager_span_and_counter(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel
    with instrumented("datalake.ingest", source="yf"):
        pass
    with pytest.raises(RuntimeError), instrumented("datalake.ingest", source="yf"):
        raise RuntimeError("boom")
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["datalake.ingest", "datalake.ingest"]
    assert finished[0].attributes is not None
    assert finished[0].attributes["service"] == "svc-test"
    assert finished[0].attributes["source"] == "yf"
    assert finished[0].status.status_code is StatusCode.OK
    assert finished[1].status.status_code is StatusCode.ERROR
    counts = {p.attributes["outcome"]: p.value for p in _points(reader, "mts.operations")}
    assert counts == {"ok": 1, "error": 1}
    point = _points(reader, "mts.operations")[0]
    assert point.attributes["service"] == "svc-test"
    assert point.attributes["operation"] == "datalake.ingest"
    assert sum(p.count for p in _points(reader, "mts.operation.duration")) == 2


async def test_decorator_on_sync_and_async(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, _ = otel

    @instrumented("sync.op")
    def add(a: int, b: int) -> int:
        return a + b

    @instrumented("async.op")
    async def mul(a: int, b: int) -> int:
        return a * b

    assert add(2, 3) == 5
    assert await mul(2, 3) == 6
    assert add.__name__ == "add"
    assert sorted(s.name for s in spans.get_finished_spans()) == ["async.op", "sync.op"]


def test_trace_context_through_headers(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, _ = otel
    with instrumented("bus.publish", kind=SpanKind.PRODUCER) as producer:
        headers = inject_trace_context({"Nats-Msg-Id": "evt-1"})
    assert headers["traceparent"].startswith("00-")
    with instrumented("bus.consume", parent=extract_trace_context(headers),
                      kind=SpanKind.CONSUMER) as consumer:
        pass
    assert consumer.get_span_context().trace_id == producer.get_span_context().trace_id
    publish, consume = spans.get_finished_spans()
    assert consume.parent is not None
    assert consume.parent.span_id == publish.context.span_id


def test_without_an_exporter_no_span_is_made_but_the_context_flows() -> None:
    """Nothing would export it, so no span is opened; a remote parent still becomes the
    current context, and what is published inside carries the parent's trace on."""
    shutdown_telemetry()
    with instrumented("noop") as span:
        assert not span.get_span_context().is_valid
        assert "traceparent" not in inject_trace_context({})
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with instrumented("bus.serve", parent=extract_trace_context({"traceparent": parent})):
        assert inject_trace_context({})["traceparent"] == parent
    assert not trace.get_current_span().get_span_context().is_valid  # detached on the way out


def test_metrics_without_spans(otel_metrics_only: InMemoryMetricReader) -> None:
    """A metric reader alone: operations are counted although no span is recorded."""
    with instrumented("oms.submit"):
        pass
    with pytest.raises(ValueError, match="bad"), instrumented("oms.submit"):
        raise ValueError("bad")
    counts = {p.attributes["outcome"]: p.value
              for p in _points(otel_metrics_only, "mts.operations")}
    assert counts == {"ok": 1, "error": 1}


@dataclass
class OtlpReceiver:
    """What a local OTLP/HTTP receiver got: decoded requests per signal, and the raw bodies."""

    endpoint: str = ""
    logs: list[ExportLogsServiceRequest] = field(default_factory=list)
    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)

    def log_bodies(self) -> list[str]:
        return [record.body.string_value for request in self.logs
                for resource_logs in request.resource_logs
                for scope_logs in resource_logs.scope_logs for record in scope_logs.log_records]

    def log_attributes(self) -> list[dict[str, str]]:
        """Each log record's attributes, values as text."""
        return [{attr.key: (attr.value.string_value or str(attr.value.int_value))
                 for attr in record.attributes}
                for request in self.logs for resource_logs in request.resource_logs
                for scope_logs in resource_logs.scope_logs
                for record in scope_logs.log_records]

    def span_names(self) -> list[str]:
        return [span.name for request in self.traces for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def metric_names(self) -> set[str]:
        return {metric.name for request in self.metrics for rm in request.resource_metrics
                for sm in rm.scope_metrics for metric in sm.metrics}

    def service_names(self) -> set[str]:
        resources = [rl.resource for request in self.logs for rl in request.resource_logs]
        resources += [rs.resource for request in self.traces for rs in request.resource_spans]
        return {attr.value.string_value for resource in resources for attr in resource.attributes
                if attr.key == "service.name"}


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A local HTTP server speaking the OTLP/HTTP wire protocol (protobuf ``POST /v1/logs``,
    ``/v1/traces``, ``/v1/metrics``, answered with the empty ``Export*ServiceResponse``): the
    collector's side, decoded with opentelemetry-proto, so the real exporters talk to it. The
    tests using it need the otlp extra and skip, saying so, without it."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason=OTLP_MISSING)
    collector = "opentelemetry.proto.collector"
    logs = pytest.importorskip(f"{collector}.logs.v1.logs_service_pb2", reason=OTLP_MISSING)
    traces = pytest.importorskip(f"{collector}.trace.v1.trace_service_pb2", reason=OTLP_MISSING)
    metrics = pytest.importorskip(f"{collector}.metrics.v1.metrics_service_pb2",
                                  reason=OTLP_MISSING)
    got = OtlpReceiver()
    messages: dict[str, tuple[list[Any], type[Any]]] = {
        "/v1/logs": (got.logs, logs.ExportLogsServiceRequest),
        "/v1/traces": (got.traces, traces.ExportTraceServiceRequest),
        "/v1/metrics": (got.metrics, metrics.ExportMetricsServiceRequest),
    }

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path not in messages:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            into, message_type = messages[self.path]
            request = message_type()
            request.ParseFromString(body)
            into.append(request)
            got.raw.append(body)
            got.content_types.add(self.headers.get("Content-Type", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")  # an empty Export*ServiceResponse
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    got.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_otlp_exporters_when_the_endpoint_is_set(otlp_receiver: OtlpReceiver,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set, spans, metrics and logs leave over OTLP/HTTP to
    the local receiver (a server speaking the OTLP/HTTP wire protocol)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    telemetry = init_telemetry("otlp-svc", set_global=False)
    assert telemetry.exporting
    with instrumented("oms.submit", order_id="ord-otlp"):
        logging.getLogger("otlp.test").warning("exported log line token=abc123")
    shutdown_telemetry()  # flushes every exporter
    assert otlp_receiver.content_types == {"application/x-protobuf"}
    assert otlp_receiver.span_names() == ["oms.submit"]
    assert "mts.operations" in otlp_receiver.metric_names()
    assert otlp_receiver.log_bodies() == ["exported log line token=***"]
    assert otlp_receiver.service_names() == {"otlp-svc"}
    assert not any(b"abc123" in body for body in otlp_receiver.raw)


_CHILD = """
import sys
from mts1b_platform.logging import get_logger
from mts1b_platform.telemetry import init_telemetry, instrumented, shutdown_telemetry

init_telemetry("otlp-child")
with instrumented("child.op"):
    get_logger("child", fund_id="f1").info("child line password=hunter2")
if sys.argv[1] == "explicit":
    shutdown_telemetry()
"""


@pytest.mark.parametrize("ending", ["exit", "explicit"])
def test_a_process_that_exits_still_ships_and_shows_its_lines(
        otlp_receiver: OtlpReceiver, ending: str) -> None:
    """A child process logs one INFO line through get_logger with an OTLP endpoint set, then
    ends - without calling shutdown ("exit"), or after calling it ("explicit", where the exit
    hook must then do nothing). The receiver is a local server speaking the OTLP/HTTP wire
    protocol; it gets the record (redacted) exactly once, with the span and the metrics, and
    the line is on the child's stderr too."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MTS_LOG_", "MTS_SERVICE", "OTEL_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_receiver.endpoint
    done = subprocess.run([sys.executable, "-c", _CHILD, ending], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(x) for x in done.stderr.splitlines()]  # nothing else: no warnings
    assert line["message"] == "child line password=***"
    assert (line["level"], line["logger"], line["fund_id"]) == ("INFO", "child", "f1")
    assert line["trace_id"]
    assert otlp_receiver.log_bodies() == ["child line password=***"]
    (attributes,) = otlp_receiver.log_attributes()
    assert attributes["fund_id"] == "f1"  # the logger's context, flat
    assert "mts_context" not in attributes and "_mts1b_redacted" not in attributes
    assert otlp_receiver.span_names() == ["child.op"]
    assert "mts.operations" in otlp_receiver.metric_names()
    assert otlp_receiver.service_names() == {"otlp-child"}
    assert not any(b"hunter2" in body for body in otlp_receiver.raw)


def test_shutdown_and_the_exit_hook_are_idempotent(caplog: pytest.LogCaptureFixture) -> None:
    spans = InMemorySpanExporter()
    setup = init_telemetry("svc-exit", span_exporter=spans, set_global=False)
    with instrumented("op"):
        pass
    with caplog.at_level(logging.WARNING):
        setup.shutdown()
        setup.shutdown()
        telemetry_module._shutdown_at_exit()  # what runs at interpreter exit
        telemetry_module._shutdown_at_exit()
    assert [s.name for s in spans.get_finished_spans()] == ["op"]
    assert telemetry_module._current is None
    assert telemetry_module._exit_hook_installed
    assert not caplog.records  # the SDK warns when a provider is stopped twice


def test_otlp_endpoint_without_the_exporter_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter is the `otlp` extra: without it, one clear error, and nothing changed."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    package = "opentelemetry.exporter.otlp.proto.http"
    for name in (package, f"{package}._log_exporter", f"{package}.metric_exporter",
                 f"{package}.trace_exporter"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import` sees when not installed
    shutdown_telemetry()
    handlers = list(logging.getLogger().handlers)
    with pytest.raises(TelemetryError) as info:
        init_telemetry("svc-no-exporter", set_global=False)
    assert info.value.code == "PLATFORM.TELEMETRY"
    assert ('pip install "opentelemetry-exporter-otlp-proto-http>=1.25,<2" (the otlp extra of '
            'mts1b-platform)') in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert telemetry_module._current is None
    assert logging.getLogger().handlers == handlers
