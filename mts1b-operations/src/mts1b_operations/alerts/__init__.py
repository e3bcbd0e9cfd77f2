"""Alerts that reach a person: routing, grouping, silences and dispatch."""

from __future__ import annotations

__all__: list[str] = []
