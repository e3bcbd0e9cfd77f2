"""The public surface of mts1b_platform is pinned: a change here is a deliberate API change."""

from __future__ import annotations

import subprocess
import sys

import mts1b_platform

EXPECTED = {
    "Bus", "BoundLogger", "BusError", "BusSettings", "CalendarError", "ConfigError", "Consumer",
    "Delivery", "KeyValue", "MarketCalendar", "RequestFailed", "Session", "VaultSettings",
    "__version__", "configure_logging", "extract_trace_context", "get_logger", "init_telemetry",
    "inject_trace_context", "instrumented", "load_config", "redact", "register_secret",
    "shutdown_telemetry",
}


def test_all_is_pinned_and_resolvable() -> None:
    assert set(mts1b_platform.__all__) == EXPECTED
    for name in mts1b_platform.__all__:
        assert getattr(mts1b_platform, name) is not None


def test_logging_and_telemetry_surfaces_are_pinned() -> None:
    from mts1b_platform import logging as mts_logging
    from mts1b_platform import telemetry

    assert set(mts_logging.__all__) == {
        "BoundLogger", "ConsoleFormatter", "JsonFormatter", "RedactingFilter",
        "configure_logging", "get_logger", "set_service"}
    assert set(telemetry.__all__) == {
        "Telemetry", "TelemetryError", "current_telemetry", "extract_trace_context",
        "init_telemetry", "inject_trace_context", "instrumented", "shutdown_telemetry"}
    assert telemetry.TelemetryError.code == "PLATFORM.TELEMETRY"


def test_errors_have_stable_codes() -> None:
    from mts1b_foundation import MtsError

    codes = {mts1b_platform.BusError.code, mts1b_platform.ConfigError.code,
             mts1b_platform.CalendarError.code, mts1b_platform.RequestFailed.code}
    assert codes == {"PLATFORM.BUS", "PLATFORM.CONFIG", "PLATFORM.CALENDAR",
                     "PLATFORM.BUS.REQUEST"}
    assert issubclass(mts1b_platform.BusError, MtsError)


def test_import_is_lazy() -> None:
    code = ("import sys, mts1b_platform; "
            "print(any(m in sys.modules for m in ('nats', 'exchange_calendars', "
            "'opentelemetry.sdk')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
