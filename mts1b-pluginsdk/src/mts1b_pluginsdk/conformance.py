"""Conformance suites: what ``pytest --mts-conformance`` runs, whichever kit they come from.

Why a suite and not an import of the brokers kit: this package builds on foundation only (the
layer rule of docs/architecture.md), and the kit lives in mts1b-brokers. A plugin project
depends on the kit anyway, so it hands the kit in: its ``mts1b.conformance`` entry point
returns a :class:`ConformanceSuite`, built for a broker with :func:`broker_suite`::

    import mts1b_brokers.conformance as kit
    from mts1b_pluginsdk.conformance import broker_suite

    def conformance():                 # [project.entry-points."mts1b.conformance"]
        return broker_suite(kit, harness())

:func:`broker_suite` also reads the broker's :class:`~mts1b_foundation.plugins.Capabilities`:
a check that needs what the broker does not declare raises :class:`ConformanceSkip` naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from mts1b_foundation import OrderType, TimeInForce
from mts1b_foundation.plugins import capabilities_of

__all__ = ["CHECK_NEEDS", "ConformanceSkip", "ConformanceSuite", "broker_suite",
           "missing_capabilities"]

CHECK_NEEDS: dict[str, tuple[tuple[OrderType, ...], bool]] = {
    "submit_ack": ((OrderType.LIMIT,), False),
    "reject": ((OrderType.LIMIT, OrderType.MARKET), False),
    "partial_fill": ((OrderType.MARKET,), False),
    "cancel_race_with_fill": ((OrderType.LIMIT,), False),
    "replace": ((OrderType.LIMIT,), True),
    "reconnect": ((OrderType.LIMIT, OrderType.MARKET), False),
    "duplicate_submission": ((OrderType.MARKET,), False),
    "order_status": ((OrderType.LIMIT,), False),
}
"""Check of the brokers kit -> (order types it sends, whether it replaces an order). Every
check sends GTC orders for the harness's instrument. A check not listed runs regardless."""


class ConformanceSkip(Exception):
    """A check that does not apply to this plugin (its reason says why)."""


@dataclass(frozen=True)
class ConformanceSuite:
    """Named checks and how to run one; ``failure``: what a failed check raises (shown as its
    message, without a traceback)."""

    checks: Sequence[str]
    run: Callable[[str], Awaitable[None]]
    failure: type[BaseException] = AssertionError


def missing_capabilities(check: str, harness: Any) -> str | None:
    """What ``harness.broker`` does not declare that ``check`` needs; None to run it (also when
    the broker declares no capabilities at all)."""
    caps = capabilities_of(harness.broker)
    if caps is None or check not in CHECK_NEEDS:
        return None
    order_types, replaces = CHECK_NEEDS[check]
    lacking = [t.value for t in order_types if t not in caps.order_types]
    if TimeInForce.GTC not in caps.time_in_force:
        lacking.append("time in force GTC")
    asset_class = getattr(harness.instrument, "asset_class", None)
    if asset_class is not None and asset_class not in caps.asset_classes:
        lacking.append(f"asset class {asset_class}")
    if replaces and not caps.supports_replace:
        lacking.append("replace")
    return f"the broker's capabilities lack {', '.join(lacking)}" if lacking else None


def broker_suite(kit: ModuleType, factory: Callable[[], Awaitable[Any]]) -> ConformanceSuite:
    """The brokers kit (the module ``mts1b_brokers.conformance``) against ``factory``'s
    harnesses, skipping by the broker's capabilities."""

    async def run(check: str) -> None:
        async def guarded() -> Any:
            harness = await factory()
            reason = missing_capabilities(check, harness)
            if reason is not None:
                if harness.cleanup is not None:
                    await harness.cleanup()
                raise ConformanceSkip(reason)
            return harness

        await kit.run_check(check, guarded)

    return ConformanceSuite(checks=sorted(kit.CHECKS), run=run,
                            failure=kit.ConformanceFailure)
