"""The daily report: per fund, the day's NAV, PnL and attribution as the treasury struck them,
the risk envelope's usage, fills and costs, gate denials, alerts and the audit checkpoint's
status, drawn from the services' JetStream streams (operations imports no other service's
library). ``mts mts1b-operations report daily``."""

from __future__ import annotations

__all__: list[str] = []
