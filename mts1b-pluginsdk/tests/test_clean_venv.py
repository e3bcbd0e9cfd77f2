"""A generated broker plugin passes its own tests in a clean virtualenv, from wheels; then
Tutorial 5 (docs/tutorials/plugin.md) trades through it from the OMS, as written.

What a plugin author does, end to end: install the SDK and the OMS into a new virtual
environment - the mts1b-* distributions only from a local wheelhouse (the wheels of
foundation, platform, brokers, the OMS and this package, built here from the checkout as
``python3 dev.py wheels`` builds them), third-party ones from PyPI or uv's cache - then
``mts1b-pluginsdk new broker acme``, install the project with its ``test`` extra, run the
project's ``pytest`` (its adapter tests and, through ``--mts-conformance`` in its pyproject, the
brokers conformance kit), and run the tutorial's program, whose output must be the page's.

One virtualenv, uv for speed (pip does the same, slower: the project's ``ci.sh``). Marked slow;
skipped, saying why, without uv or outside the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("mts1b-foundation", "mts1b-platform", "mts1b-brokers", "mts1b-oms",
             "mts1b-pluginsdk")
TUTORIAL = ROOT / "docs" / "tutorials" / "plugin.md"
PROGRAM = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.S)


def _uv() -> str:
    for candidate in (os.environ.get("UV"), shutil.which("uv"),
                      str(ROOT / ".bootstrap" / "bin" / "uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("uv not found ($UV, PATH, .bootstrap/bin/uv)")


def _run(args: list[str], cwd: Path, timeout: float, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("PYTEST")}
    env.update(extra)
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    assert done.returncode == 0, (f"{' '.join(args[:4])} ... failed:\n"
                                  f"{done.stdout[-4000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@pytest.mark.slow
def test_a_generated_broker_passes_its_tests_from_wheels_and_trades_through_the_oms(
        tmp_path: Path) -> None:
    if not (ROOT / "uv.lock").is_file() or not (ROOT / "mts1b-brokers").is_dir():
        pytest.skip(f"not in the MTS1B checkout ({ROOT}): no libraries to build wheels from")
    uv = _uv()
    wheels = tmp_path / "wheels"
    for library in LIBRARIES:
        _run([uv, "build", "--quiet", "--wheel", "--package", library, "--out-dir",
              str(wheels)], ROOT, 300)
    venv = tmp_path / "venv"
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], tmp_path, 120)
    python = str(venv / "bin" / "python")
    # step 1: the mts1b-* wheels only from the wheelhouse (none of these names is ours on
    # PyPI), their third-party dependencies from the index
    _run([uv, "pip", "install", "--quiet", "--python", python, "--no-index", "--no-deps",
          *map(str, sorted(wheels.glob("*.whl")))], tmp_path, 300)
    _run([uv, "pip", "install", "--quiet", "--python", python, "--find-links", str(wheels),
          "mts1b-pluginsdk", "mts1b-oms"], tmp_path, 600)
    # step 2: the SDK's own command, in the new environment
    _run([str(venv / "bin" / "mts1b-pluginsdk"), "new", "broker", "acme"], tmp_path, 120,
         MTS1B_PLUGINSDK_CACHE=str(tmp_path / "sdk-cache"))
    project = tmp_path / "mts1b-acme-broker"
    _run([uv, "pip", "install", "--quiet", "--python", python, "--find-links", str(wheels),
          "-e", f"{project}[test]"], tmp_path, 600)
    out = _run([python, "-m", "pytest", "-p", "no:cacheprovider"], project, 300)
    summary = out.splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert "tests/test_adapter.py ..." in out  # the adapter's own three, entry point included
    table = out.split("mts1b conformance kit", 1)[1]
    rows = {line.split()[1]: line.split()[2] for line in table.splitlines()
            if line.startswith("acme ")}
    for check in ("submit_ack", "reject", "partial_fill", "cancel_race_with_fill", "replace",
                  "reconnect", "duplicate_submission", "order_status", "ambiguous_submit",
                  "duplicate_and_corrected_execution", "reconnect_resync"):
        assert rows.get(check) == "passed", (check, table)
    assert set(rows.values()) == {"passed"}, table  # nothing failed, nothing skipped
    # step 5: the tutorial's program, as written, prints what the page shows
    [(program, shown)] = PROGRAM.findall(TUTORIAL.read_text(encoding="utf-8"))
    script = tmp_path / "tutorial5.py"
    script.write_text(program, encoding="utf-8")
    assert _run([python, str(script)], tmp_path, 120) == shown
