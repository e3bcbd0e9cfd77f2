"""Conformance suites: what ``pytest --mts-conformance`` runs, whichever kit they come from.

Why a suite and not an import of the brokers kit: this package builds on foundation only (the
layer rule of docs/architecture.md), and the kit lives in mts1b-brokers. A plugin project
depends on the kit anyway, so it hands the kit in: its ``mts1b.conformance`` entry point
returns a :class:`ConformanceSuite`, built for a broker with :func:`broker_suite`::

    import mts1b_brokers.conformance as kit
    from mts1b_pluginsdk.conformance import broker_suite

    def conformance():                 # [project.entry-points."mts1b.conformance"]
        return broker_suite(kit, harness())

:func:`broker_suite` needs nothing more: the kit itself reads the broker's
:class:`~mts1b_foundation.plugins.Capabilities` (its ``CHECK_NEEDS``, keyed by its own check
names) and skips a check that needs what the broker does not declare; the suite passes that
skip on as :class:`ConformanceSkip`, with the kit's reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["ConformanceSkip", "ConformanceSuite", "broker_suite"]


class ConformanceSkip(Exception):
    """A check that does not apply to this plugin (its reason says why)."""


@dataclass(frozen=True)
class ConformanceSuite:
    """Named checks and how to run one; ``failure``: what a failed check raises (shown as its
    message, without a traceback)."""

    checks: Sequence[str]
    run: Callable[[str], Awaitable[None]]
    failure: type[BaseException] = AssertionError


def broker_suite(kit: ModuleType, factory: Callable[[], Awaitable[Any]]) -> ConformanceSuite:
    """The brokers kit (the module ``mts1b_brokers.conformance``) against ``factory``'s
    harnesses. A check the kit skips (the broker's capabilities rule it out, the harness cannot
    script a fault) raises :class:`ConformanceSkip` with the kit's reason."""

    async def run(check: str) -> None:
        try:
            await kit.run_check(check, factory)
        except kit.ConformanceSkip as skip:
            raise ConformanceSkip(str(skip)) from None

    return ConformanceSuite(checks=sorted(kit.CHECKS), run=run,
                            failure=kit.ConformanceFailure)
