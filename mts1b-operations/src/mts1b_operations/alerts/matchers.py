"""Label matchers, as Alertmanager writes them: ``name=value``, ``name!=value``,
``name=~regex``, ``name!~regex``.

Why Alertmanager's syntax: silences, inhibition rules and receivers' routes all select alerts by
their labels, and people who have run Alertmanager already read and write these. A regex must
match the whole value (Alertmanager anchors it), and a label that is absent reads as ``""``, so
``fund!=f1`` matches an alert without a ``fund`` label and ``order_id=~.+`` only one with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mts1b_operations.alerts.errors import AlertsInputError

__all__ = ["Matcher", "matches_all", "parse_matchers"]

_SYNTAX = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    """One condition on one label."""

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``Matcher`` from ``name<op>value`` (the value may be in double quotes), or
        AlertsInputError naming the text."""
        found = _SYNTAX.match(text) if isinstance(text, str) else None
        if found is None:
            raise AlertsInputError("matcher", text, "expected name=value, name!=value, "
                                                    "name=~regex or name!~regex")
        name, op, value = found.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise AlertsInputError("matcher", text, f"not a regular expression: {exc}"
                                       ) from None
        return cls(name, op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        full = re.fullmatch(self.value, actual) is not None
        return full if self.op == "=~" else not full

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher holds (no matchers: every alert)."""
    return all(m.matches(labels) for m in matchers)
