"""``pytest --mts-conformance``: the brokers conformance kit as a plugin's own tests.

Why a pytest plugin: a plugin repository that copied the kit's parametrized coroutine test
failed unless pytest-asyncio ran in auto mode. Here each check is a plain test item that runs
its coroutine with :func:`asyncio.run`, so it needs no asyncio setting and no test file.

The harnesses come from the ``mts1b.conformance`` entry-point group (a generated plugin
project registers its own), or from ``--mts-harness NAME`` (one of them) or ``--mts-harness
module:attr``. An entry is a harness factory (``async def make() -> BrokerHarness``) or a
function returning one. A check that needs what the broker's :class:`Capabilities` does not
declare is skipped, naming what is missing. At the end a table shows each case.

Installed with mts1b-pluginsdk (a ``pytest11`` entry point), it does nothing without the
option; the kit itself (``mts1b_brokers.conformance``) is imported only when asked for, and
comes with the ``testing`` extra.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mts1b_foundation.plugins import PluginFailure

# Loaded by every pytest run where this package is installed: the module imports only pytest
# and the standard library; foundation and the kit load when --mts-conformance asks for them.

__all__ = ["CHECK_NEEDS", "CaseResult", "ConformanceItem"]

CHECK_NEEDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "submit_ack": (("limit",), False),
    "reject": (("limit", "market"), False),
    "partial_fill": (("market",), False),
    "cancel_race_with_fill": (("limit",), False),
    "replace": (("limit",), True),
    "reconnect": (("limit", "market"), False),
    "duplicate_submission": (("market",), False),
    "order_status": (("limit",), False),
}
"""Check -> (order types it sends, whether it replaces an order). Every check sends GTC orders
for the harness's instrument. A check not listed here runs whatever the manifest says."""


@dataclass(frozen=True)
class CaseResult:
    """One row of the table."""

    harness: str
    check: str
    outcome: str
    seconds: float
    detail: str


class _Unsupported(Exception):
    """The broker's manifest does not declare what a check needs."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mts1b-conformance", "MTS1B brokers conformance kit")
    group.addoption("--mts-conformance", action="store_true", default=False,
                    help="run the brokers conformance kit against the installed harnesses "
                         "(entry-point group mts1b.conformance) and print a table")
    group.addoption("--mts-harness", action="append", default=[], metavar="NAME|module:attr",
                    help="the harness to run (repeatable): a name in mts1b.conformance or "
                         "module:attr; default every installed one")


def _missing(check: str, harness: Any) -> str | None:
    """What the broker does not declare that ``check`` needs, or None to run it."""
    from mts1b_foundation import OrderType, TimeInForce
    from mts1b_foundation.plugins import capabilities_of

    caps = capabilities_of(harness.broker)
    if caps is None or check not in CHECK_NEEDS:
        return None
    order_types, replaces = CHECK_NEEDS[check]
    lacking = [t for t in order_types if OrderType(t) not in caps.order_types]
    if TimeInForce.GTC not in caps.time_in_force:
        lacking.append("time in force GTC")
    asset_class = getattr(harness.instrument, "asset_class", None)
    if asset_class is not None and asset_class not in caps.asset_classes:
        lacking.append(f"asset class {asset_class}")
    if replaces and not caps.supports_replace:
        lacking.append("replace")
    return f"the broker's capabilities lack {', '.join(lacking)}" if lacking else None


def _as_factory(obj: Any) -> Callable[[], Any]:
    """A harness factory from what an entry names: the factory, or a function returning it."""
    if inspect.iscoroutinefunction(obj):
        return obj  # type: ignore[no-any-return]
    if callable(obj):
        made = obj()
        if inspect.iscoroutinefunction(made):
            return made  # type: ignore[no-any-return]
    raise pytest.UsageError(f"{obj!r} is neither a harness factory (async def make() -> "
                            "BrokerHarness) nor a function returning one")


def _harnesses(config: pytest.Config) -> tuple[dict[str, Callable[[], Any]],
                                                list[PluginFailure]]:
    from mts1b_foundation.plugins import CONFORMANCE, load_plugins

    wanted: list[str] = config.getoption("mts_harness")
    by_path = {spec: spec for spec in wanted if ":" in spec}
    names = [spec for spec in wanted if ":" not in spec]
    found: dict[str, Callable[[], Any]] = {}
    for spec in by_path:
        module, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise pytest.UsageError(f"--mts-harness {spec}: {type(exc).__name__}") from None
        found[spec] = _as_factory(obj)
    failures: list[PluginFailure] = []
    if names or not by_path:
        report = load_plugins(CONFORMANCE)
        failures = [f for f in report.failures if not names or f.name in names]
        unknown = sorted(set(names) - set(report.plugins) - {f.name for f in failures})
        if unknown:
            raise pytest.UsageError(
                f"--mts-harness {unknown[0]}: no such harness in {CONFORMANCE.group}; "
                f"installed: {', '.join(sorted(report.plugins)) or 'none'}")
        for name, obj in sorted(report.plugins.items()):
            if not names or name in names:
                found[name] = _as_factory(obj)
    if not found and not failures:
        raise pytest.UsageError(
            f"--mts-conformance: no harness installed in the {CONFORMANCE.group} entry-point "
            "group; register one in your plugin's pyproject or pass --mts-harness module:attr")
    return found, failures


class ConformanceItem(pytest.Item):
    """One check of the kit against one harness, run with asyncio.run."""

    def __init__(self, *, harness: str, check: str, factory: Callable[[], Any] | None,
                 failure: PluginFailure | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.harness = harness
        self.check = check
        self.factory = factory
        self.failure = failure

    def runtest(self) -> None:
        if self.failure is not None:
            raise _HarnessBroken(str(self.failure))
        from mts1b_brokers.conformance import run_check

        factory = self.factory
        if factory is None:
            raise _HarnessBroken(f"no harness factory for {self.harness}")
        check = self.check

        async def guarded() -> Any:
            h = await factory()
            reason = _missing(check, h)
            if reason is not None:
                if h.cleanup is not None:
                    await h.cleanup()
                raise _Unsupported(reason)
            return h

        try:
            asyncio.run(run_check(check, guarded))
        except _Unsupported as exc:
            pytest.skip(str(exc))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        from mts1b_brokers.conformance import ConformanceFailure

        if isinstance(excinfo.value, ConformanceFailure | _HarnessBroken):
            return f"{self.check}: {excinfo.value}"
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "mts1b-conformance", None, f"conformance[{self.harness}] {self.check}"


class _HarnessBroken(Exception):
    """The harness's entry point did not load."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Add one item per (harness, check) before -k and -m select among them."""
    if not config.getoption("mts_conformance"):
        return
    try:
        from mts1b_brokers.conformance import CHECKS
    except ImportError:
        raise pytest.UsageError("--mts-conformance needs the kit: pip install "
                                "'mts1b-pluginsdk[testing]' (it brings mts1b-brokers)") from None
    factories, failures = _harnesses(config)
    for name, factory in factories.items():
        for check in sorted(CHECKS):
            items.append(ConformanceItem.from_parent(
                session, name=f"conformance[{name}]::{check}", harness=name, check=check,
                factory=factory))
    for failure in failures:
        items.append(ConformanceItem.from_parent(
            session, name=f"conformance[{failure.name}]::load", harness=failure.name,
            check="load", factory=None, failure=failure))


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("mts_conformance", default=False):
        config.pluginmanager.register(_Table(), "mts1b-conformance-table")


def _detail(report: pytest.TestReport) -> str:
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.outcome == "failed":
        return " ".join(str(report.longrepr).split())[:120]
    return ""


class _Table:
    """Records each conformance item's outcome and prints the table at the end."""

    def __init__(self) -> None:
        self.rows: list[CaseResult] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid.lstrip(":")  # the items hang off the session: "::conformance[..."
        if not nodeid.startswith("conformance["):
            return
        # the call phase; or a setup that did not pass (then there is no call)
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        harness, _, check = nodeid.removeprefix("conformance[").partition("]::")
        self.rows.append(CaseResult(harness, check, report.outcome, report.duration,
                                    _detail(report)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        rows = self.rows
        if not rows:
            return
        tr = terminalreporter
        tr.section("mts1b conformance kit")
        width = max(len("check"), *(len(r.check) for r in rows))
        hwidth = max(len("harness"), *(len(r.harness) for r in rows))
        tr.write_line(f"{'harness':<{hwidth}}  {'check':<{width}}  {'result':<7}  seconds  "
                      "detail")
        for r in rows:
            tr.write_line(f"{r.harness:<{hwidth}}  {r.check:<{width}}  {r.outcome:<7}  "
                          f"{r.seconds:7.3f}  {r.detail}".rstrip())
        passed = sum(r.outcome == "passed" for r in rows)
        tr.write_line(f"{passed} of {len(rows)} cases passed")
