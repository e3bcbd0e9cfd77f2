"""mts1b-platform: config, secrets, logging, telemetry, the NATS bus, calendars, the `mts` CLI.

The names below are imported lazily (on first attribute access), so ``import mts1b_platform``
stays cheap: the CLI and a logging-only library never pay for nats-py, OpenTelemetry's SDK or
exchange_calendars unless they use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mts1b_platform.bus import (
        Bus,
        BusError,
        BusSettings,
        Consumer,
        Delivery,
        KeyValue,
        RequestFailed,
    )
    from mts1b_platform.calendars import CalendarError, MarketCalendar, Session
    from mts1b_platform.config import ConfigError, VaultSettings, load_config
    from mts1b_platform.logging import BoundLogger, configure_logging, get_logger
    from mts1b_platform.redaction import redact, register_secret
    from mts1b_platform.telemetry import (
        extract_trace_context,
        init_telemetry,
        inject_trace_context,
        instrumented,
        shutdown_telemetry,
    )

_EXPORTS: dict[str, str] = {
    "Bus": "bus",
    "BusError": "bus",
    "BusSettings": "bus",
    "Consumer": "bus",
    "Delivery": "bus",
    "KeyValue": "bus",
    "RequestFailed": "bus",
    "CalendarError": "calendars",
    "MarketCalendar": "calendars",
    "Session": "calendars",
    "ConfigError": "config",
    "VaultSettings": "config",
    "load_config": "config",
    "BoundLogger": "logging",
    "configure_logging": "logging",
    "get_logger": "logging",
    "redact": "redaction",
    "register_secret": "redaction",
    "extract_trace_context": "telemetry",
    "init_telemetry": "telemetry",
    "inject_trace_context": "telemetry",
    "instrumented": "telemetry",
    "shutdown_telemetry": "telemetry",
}

__all__ = [
    "BoundLogger",
    "Bus",
    "BusError",
    "BusSettings",
    "CalendarError",
    "ConfigError",
    "Consumer",
    "Delivery",
    "KeyValue",
    "MarketCalendar",
    "RequestFailed",
    "Session",
    "VaultSettings",
    "__version__",
    "configure_logging",
    "extract_trace_context",
    "get_logger",
    "init_telemetry",
    "inject_trace_context",
    "instrumented",
    "load_config",
    "redact",
    "register_secret",
    "shutdown_telemetry",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mts1b_platform' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mts1b_platform.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
