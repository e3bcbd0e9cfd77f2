"""Telemetry with the SDK's in-memory exporters: spans, counters and trace context in headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mts1b_platform.telemetry import (
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


def test_otlp_exporters_when_the_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set, spans, metrics and logs leave over OTLP/HTTP: a
    local HTTP server stands in for the collector and records what arrives."""
    import logging
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: dict[str, bytes] = {}

    class Collector(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received[self.path] = received.get(self.path, b"") + body
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT",
                           f"http://127.0.0.1:{server.server_address[1]}")
        telemetry = init_telemetry("otlp-svc", set_global=False)
        assert telemetry.exporting
        with instrumented("oms.submit", order_id="ord-otlp"):
            logging.getLogger("otlp.test").warning("exported log line")
        shutdown_telemetry()  # flushes every exporter
    finally:
        server.shutdown()
        server.server_close()
    assert set(received) == {"/v1/traces", "/v1/metrics", "/v1/logs"}
    assert b"otlp-svc" in received["/v1/traces"]
    assert b"oms.submit" in received["/v1/traces"]
    assert b"mts.operations" in received["/v1/metrics"]
    assert b"exported log line" in received["/v1/logs"]
