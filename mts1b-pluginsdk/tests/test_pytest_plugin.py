"""``pytest --mts-conformance``: the kit with no settings, a table, capabilities, failures.

Each run is a fresh pytest in an empty folder (no pyproject, no conftest, no asyncio plugin),
as a plugin repository would have it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from mts1b_pluginsdk.pytest_plugin import _suites

Runner = Callable[..., subprocess.CompletedProcess[str]]

SUITES = textwrap.dedent("""
    import mts1b_brokers.conformance as kit
    from mts1b_brokers.conformance import paper_harness
    from mts1b_foundation.plugins import Capabilities
    from mts1b_pluginsdk.conformance import broker_suite

    NO_REPLACE = Capabilities(order_types={"market", "limit"}, time_in_force={"GTC"},
                              asset_classes={"equity"}, supports_replace=False)

    def paper():
        return broker_suite(kit, paper_harness())

    def limited():
        base = paper_harness()

        async def make():
            h = await base()
            h.broker.capabilities = NO_REPLACE  # what this venue declares
            return h

        return broker_suite(kit, make)

    def forgetful():
        # a broker that forgets repeated ids: its duplicate_submission must fail
        base = paper_harness()

        async def make():
            h = await base()
            real, counter = h.broker.submit, iter(range(1000))

            async def submit(order):
                return await real(order.model_copy(
                    update={"order_id": f"{order.order_id}-{next(counter)}"}))

            h.broker.submit = submit
            return h

        return broker_suite(kit, make)

    def not_a_suite():
        return paper_harness()
""")


def _row(stdout: str, harness: str, check: str) -> list[str]:
    table = stdout.split("mts1b conformance kit", 1)[1]
    for line in table.splitlines():
        words = line.split()
        if words[:2] == [harness, check]:
            return words[2:]
    raise AssertionError(f"no row for {harness} {check} in:\n{table}")


def test_the_paper_broker_passes_with_no_settings(tmp_path: Path, run_tests: Runner) -> None:
    (tmp_path / "kits.py").write_text(SUITES)
    work = tmp_path / "work"
    work.mkdir()
    done = run_tests(work, "-p", "no:asyncio", "--mts-conformance", "--mts-harness",
                     "kits:paper", pythonpath=[tmp_path])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    harness = "kits:paper"
    for check in ("submit_ack", "partial_fill", "cancel_race_with_fill", "replace",
                  "duplicate_submission", "order_status"):
        assert _row(done.stdout, harness, check)[0] == "passed", check
    assert "cases passed" in done.stdout


def test_installed_harnesses_capabilities_and_a_broken_one(tmp_path: Path,
                                                           run_tests: Runner) -> None:
    """Suites come from the mts1b.conformance group; a check the manifest rules out is
    skipped saying why; a failed check shows what it expected; a suite that does not load fails
    alone, by type, and the rest run."""
    (tmp_path / "kits.py").write_text(SUITES)
    dist = tmp_path / "kits-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kits\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[mts1b.conformance]\nlimited = kits:limited\nforgetful = kits:forgetful\n"
        "broken = no_such_harness_module:conformance\n")
    work = tmp_path / "work"
    work.mkdir()
    done = run_tests(work, "-p", "no:asyncio", "--mts-conformance", "-k",
                     "replace or submit_ack or load or duplicate_submission",
                     pythonpath=[tmp_path])
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert _row(done.stdout, "limited", "submit_ack")[:1] == ["passed"]
    skipped = _row(done.stdout, "limited", "replace")
    assert skipped[0] == "skipped" and "lack replace" in " ".join(skipped)
    failed = " ".join(_row(done.stdout, "broken", "load"))
    assert failed.startswith("failed") and "ModuleNotFoundError" in failed
    forgot = " ".join(_row(done.stdout, "forgetful", "duplicate_submission"))
    assert forgot.startswith("failed") and "a repeated submit answered" in forgot
    assert "Traceback" not in done.stdout


class _Config:
    """What the plugin reads of pytest's config: the --mts-harness values."""

    def __init__(self, *harness: str) -> None:
        self.harness = list(harness)

    def getoption(self, name: str) -> list[str]:
        assert name == "mts_harness"
        return self.harness


def test_a_wrong_harness_is_a_usage_error(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (the plugin's own functions): naming what is wrong, no traceback."""
    with pytest.raises(pytest.UsageError,
                       match=re.escape("--mts-harness nope: no such harness in "
                                                    "mts1b.conformance")):
        _suites(_Config("nope"))  # type: ignore[arg-type]
    (tmp_path / "kits_wrong.py").write_text(SUITES)
    monkeypatch.syspath_prepend(str(tmp_path))
    wrong = re.escape("kits_wrong:not_a_suite: gives a function, not a mts1b_pluginsdk.conformance")
    with pytest.raises(pytest.UsageError, match=wrong):
        _suites(_Config("kits_wrong:not_a_suite"))  # type: ignore[arg-type]
    with pytest.raises(pytest.UsageError, match="kits_wrong_nope:x: ModuleNotFoundError"):
        _suites(_Config("kits_wrong_nope:x"))  # type: ignore[arg-type]
    suites, failures = _suites(_Config("kits_wrong:paper"))  # type: ignore[arg-type]
    assert "submit_ack" in suites["kits_wrong:paper"].checks and failures == []
    sys.modules.pop("kits_wrong", None)
