"""mts1b-platform: config, secrets, logging, telemetry, the NATS bus, calendars, the `mts` CLI."""

__version__ = "0.1.0"

__all__ = ["__version__"]
