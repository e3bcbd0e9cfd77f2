"""``pytest --mts-conformance``: a plugin's conformance suite as its own tests, no settings.

Why a pytest plugin: a plugin repository that copied the brokers kit's parametrized coroutine
test failed unless pytest-asyncio ran in auto mode. Here each check is a plain test item that
runs its coroutine with :func:`asyncio.run`: no asyncio setting, no test file.

The suites come from the ``mts1b.conformance`` entry-point group (a generated plugin project
registers its own), or from ``--mts-harness NAME`` (one of them) or ``--mts-harness
module:attr``. An entry names a function returning a
:class:`~mts1b_pluginsdk.conformance.ConformanceSuite` (for a broker:
``broker_suite(mts1b_brokers.conformance, harness())``). A check that raises ``ConformanceSkip``
or ``pytest.skip`` is skipped with its reason. At the end a table shows each case.

Installed with mts1b-pluginsdk (a ``pytest11`` entry point) it does nothing without the option:
the module imports only pytest and the standard library until the option asks for more.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mts1b_foundation.plugins import PluginFailure

    from mts1b_pluginsdk.conformance import ConformanceSuite

__all__ = ["CaseResult", "ConformanceItem"]


@dataclass(frozen=True)
class CaseResult:
    """One row of the table."""

    harness: str
    check: str
    outcome: str
    seconds: float
    detail: str


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mts1b-conformance", "MTS1B conformance suites")
    group.addoption("--mts-conformance", action="store_true", default=False,
                    help="run the conformance suites of the installed plugins (entry-point "
                         "group mts1b.conformance) and print a table")
    group.addoption("--mts-harness", action="append", default=[], metavar="NAME|module:attr",
                    help="the suite to run (repeatable): a name in mts1b.conformance or "
                         "module:attr; default every installed one")


def _as_suite(spec: str, obj: Any) -> ConformanceSuite:
    """The suite an entry names: a function returning one (or the suite itself)."""
    from mts1b_pluginsdk.conformance import ConformanceSuite

    suite = obj() if callable(obj) and not isinstance(obj, ConformanceSuite) else obj
    if not isinstance(suite, ConformanceSuite):
        raise pytest.UsageError(
            f"{spec}: gives a {type(suite).__name__}, not a mts1b_pluginsdk.conformance."
            "ConformanceSuite (for a broker: broker_suite(mts1b_brokers.conformance, harness()))")
    return suite


def _suites(config: pytest.Config) -> tuple[dict[str, ConformanceSuite], list[PluginFailure]]:
    from mts1b_foundation.plugins import CONFORMANCE, load_plugins

    wanted: list[str] = config.getoption("mts_harness")
    by_path = [spec for spec in wanted if ":" in spec]
    names = [spec for spec in wanted if ":" not in spec]
    found: dict[str, ConformanceSuite] = {}
    for spec in by_path:
        module, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except Exception as exc:  # the plugin's own module: any error on import is its
            raise pytest.UsageError(f"--mts-harness {spec}: {type(exc).__name__}") from None
        found[spec] = _as_suite(spec, obj)
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
                found[name] = _as_suite(name, obj)
    if not found and not failures:
        raise pytest.UsageError(
            f"--mts-conformance: no suite installed in the {CONFORMANCE.group} entry-point "
            "group; register one in your plugin's pyproject or pass --mts-harness module:attr")
    return found, failures


class _HarnessBroken(Exception):
    """The suite's entry point did not load."""


class ConformanceItem(pytest.Item):
    """One check of one suite, run with asyncio.run."""

    def __init__(self, *, harness: str, check: str, suite: ConformanceSuite | None,
                 failure: PluginFailure | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.harness = harness
        self.check = check
        self.suite = suite
        self.failure = failure

    def runtest(self) -> None:
        from mts1b_pluginsdk.conformance import ConformanceSkip

        if self.suite is None:
            failure = self.failure
            raise _HarnessBroken(f"did not load: {failure.error_type} ({failure.value})"
                                 if failure else "no suite")
        try:
            asyncio.run(_awaited(self.suite.run, self.check))
        except ConformanceSkip as exc:
            pytest.skip(str(exc))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        clean: tuple[type[BaseException], ...] = (_HarnessBroken,)
        if self.suite is not None:
            clean = (*clean, self.suite.failure)
        if isinstance(excinfo.value, clean):
            self.user_properties.append(("mts_detail", str(excinfo.value)))
            return f"{self.check}: {excinfo.value}"
        self.user_properties.append(("mts_detail", excinfo.exconly().splitlines()[0]))
        # an error in the plugin's code: its traceback from the check down, not pytest's frames
        tb = excinfo.traceback
        kit = [i for i, entry in enumerate(tb) if entry.frame.code.name == "run_check"]
        if kit:
            excinfo.traceback = tb[kit[0]:]
        return str(excinfo.getrepr(style="short", chain=False))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "mts1b-conformance", None, f"conformance[{self.harness}] {self.check}"


async def _awaited(run: Callable[[str], Any], check: str) -> None:
    await run(check)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Add one item per (suite, check) before -k and -m select among them."""
    if not config.getoption("mts_conformance"):
        return
    suites, failures = _suites(config)
    for name, suite in suites.items():
        for check in suite.checks:
            items.append(ConformanceItem.from_parent(
                session, name=f"conformance[{name}]::{check}", harness=name, check=check,
                suite=suite))
    for failure in failures:
        items.append(ConformanceItem.from_parent(
            session, name=f"conformance[{failure.name}]::load", harness=failure.name,
            check="load", suite=None, failure=failure))


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("mts_conformance", default=False):
        config.pluginmanager.register(_Table(), "mts1b-conformance-table")


def _detail(report: pytest.TestReport) -> str:
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.outcome == "failed":
        detail = dict(report.user_properties).get("mts_detail") or str(report.longrepr)
        return " ".join(str(detail).split())[:160]
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
