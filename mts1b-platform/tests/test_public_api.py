"""The public surface of mts1b_platform is pinned: a change here is a deliberate API change."""

from __future__ import annotations

import subprocess
import sys

import mts1b_platform
import pytest

EXPECTED = {
    "Bus", "BoundLogger", "BusError", "BusSettings", "CalendarError", "ConfigError", "Consumer",
    "Delivery", "KeyValue", "MarketCalendar", "RequestFailed", "Session", "VaultSettings",
    "__version__", "configure_logging", "extract_trace_context", "get_logger", "init_telemetry",
    "inject_trace_context", "instrumented", "load_config", "redact", "register_secret",
    "shutdown_telemetry",
}
# Resolving these imports mts1b_platform.bus, which needs nats-py (the bus extra): from the
# platform's folder with the core install alone they are checked by name only.
BUS_NAMES = {"Bus", "BusError", "BusSettings", "Consumer", "Delivery", "KeyValue",
             "RequestFailed"}
NATS_MISSING = "nats-py (the bus extra of mts1b-platform) is not installed"


def test_all_is_pinned_and_resolvable() -> None:
    assert set(mts1b_platform.__all__) == EXPECTED
    assert BUS_NAMES <= EXPECTED
    for name in sorted(EXPECTED - BUS_NAMES):
        assert getattr(mts1b_platform, name) is not None


def test_bus_names_are_resolvable() -> None:
    pytest.importorskip("nats", reason=NATS_MISSING)
    for name in sorted(BUS_NAMES):
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

    assert (mts1b_platform.ConfigError.code, mts1b_platform.CalendarError.code) == (
        "PLATFORM.CONFIG", "PLATFORM.CALENDAR")
    assert issubclass(mts1b_platform.ConfigError, MtsError)
    assert issubclass(mts1b_platform.CalendarError, MtsError)


def test_bus_errors_have_stable_codes() -> None:
    pytest.importorskip("nats", reason=NATS_MISSING)
    from mts1b_foundation import MtsError

    assert (mts1b_platform.BusError.code, mts1b_platform.RequestFailed.code) == (
        "PLATFORM.BUS", "PLATFORM.BUS.REQUEST")
    assert issubclass(mts1b_platform.BusError, MtsError)


def test_import_is_lazy() -> None:
    code = ("import sys, mts1b_platform; "
            "print(any(m in sys.modules for m in ('nats', 'exchange_calendars', "
            "'opentelemetry.sdk')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
