"""``new`` renders each kind of plugin project; the projects' own tests pass; ``update`` merges.

The generated projects' tests run in a fresh interpreter with the project's ``src`` on the
path (fast); installing one into a clean virtualenv from wheels is test_clean_venv.py's job.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import copier
import pytest
import yaml
from mts1b_pluginsdk import ScaffoldError, new_project, update_project
from mts1b_pluginsdk.scaffold import template_repository

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def test_every_kind_renders_and_passes_its_own_tests(tmp_path: Path, run_tests: Runner) -> None:
    broker = new_project("broker", "acme-fx", tmp_path / "broker")
    provider = new_project("provider", "acme", tmp_path / "provider", git=False)
    factors = new_project("factor-pack", "acme", tmp_path / "factors", git=False)
    files = {p.relative_to(broker).as_posix() for p in broker.rglob("*")
             if p.is_file() and ".git/" not in p.as_posix()}
    assert files == {
        ".copier-answers.yml", ".gitignore", "README.md", "ci.sh", "pyproject.toml",
        "src/mts1b_acme_fx_broker/__init__.py", "src/mts1b_acme_fx_broker/adapter.py",
        "src/mts1b_acme_fx_broker/py.typed", "src/mts1b_acme_fx_broker/testing.py",
        "src/mts1b_acme_fx_broker/venue.py", "tests/test_adapter.py"}
    assert (provider / "src/mts1b_acme_data/provider.py").is_file()
    assert (factors / "src/mts1b_acme_factors/factors.py").is_file()
    assert not (provider / ".git").exists()
    pyproject = (broker / "pyproject.toml").read_text()
    assert '[project.entry-points."mts1b.brokers"]\nacme-fx = ' \
           '"mts1b_acme_fx_broker.adapter:AcmeFxBroker"' in pyproject
    assert '"mts1b.conformance"]\nacme-fx = "mts1b_acme_fx_broker.testing:conformance"' \
        in pyproject
    assert '"mts1b.factors"]\nf_acme_reversal = ' in (factors / "pyproject.toml").read_text()
    answers = yaml.safe_load((broker / ".copier-answers.yml").read_text())
    assert answers["kind"] == "broker" and answers["name"] == "acme-fx"
    assert answers["_commit"] == "v0.1.0" and Path(answers["_src_path"]).is_dir()
    assert (broker / "ci.sh").stat().st_mode & 0o111
    assert _git(broker, "status", "--porcelain") == ""  # committed: ready for update
    # the three projects' tests in one interpreter (not installed: src on the path), and the
    # kit through the pytest plugin with no asyncio plugin at all; the registration test
    # needs the installed entry point (test_clean_venv.py)
    done = run_tests(tmp_path, "-p", "no:asyncio", "-p", "no:hypothesispytest",
                     "--rootdir", str(tmp_path), "--mts-conformance", "--mts-harness",
                     "mts1b_acme_fx_broker.testing:conformance", "-k", "not registered",
                     "broker/tests", "provider/tests", "factors/tests",
                     pythonpath=[broker / "src", provider / "src", factors / "src"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "test_adapter.py .." in done.stdout
    assert "test_provider.py ..." in done.stdout and "test_factors.py ..." in done.stdout
    table = done.stdout.split("mts1b conformance kit")[1]
    for check in ("submit_ack", "reject", "partial_fill", "cancel_race_with_fill", "replace",
                  "reconnect", "duplicate_submission", "order_status", "ambiguous_submit",
                  "duplicate_and_corrected_execution", "reconnect_resync"):
        assert any(line.split()[1:3] == [check, "passed"] for line in table.splitlines()), check
    assert "11 of 11 cases passed" in table


def test_bad_input_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="plugin kind 'exchange'") as info:
        new_project("exchange", "acme", tmp_path / "a")
    assert info.value.context == {"field": "kind", "value": "exchange"}
    with pytest.raises(ScaffoldError, match="plugin name 'Acme_FX'") as info:
        new_project("broker", "Acme_FX", tmp_path / "b")
    assert info.value.context["field"] == "name"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    with pytest.raises(ScaffoldError, match="exists and is not empty"):
        new_project("broker", "acme", tmp_path / "taken")
    with pytest.raises(ScaffoldError, match=r"no \.copier-answers\.yml"):
        update_project(tmp_path / "taken")


def test_the_template_repository_gets_one_commit_per_change(template_cache: Path) -> None:
    repo, first = template_repository()
    again, second = template_repository()
    assert (again, second) == (repo, first)  # nothing changed: no new commit
    assert _git(repo, "tag", "--list").split() == ["v0.1.0"]


def test_update_brings_a_later_template_and_keeps_the_authors_changes(tmp_path: Path) -> None:
    """A project generated from an older template (its README lacked the update section),
    then edited by its author, is updated by the installed template: the section arrives and
    the author's edit stays."""
    repo, _ = template_repository()
    readme = repo / "project" / "README.md.jinja"
    current = readme.read_text()
    old = current.split("## Template updates")[0]
    readme.write_text(old)
    _git(repo, "commit", "--quiet", "-am", "an older template")
    _git(repo, "tag", "v0.0.9")
    project = tmp_path / "acme"
    copier.run_copy(str(repo), project, data={"kind": "broker", "name": "acme"},
                    vcs_ref="v0.0.9", defaults=True, quiet=True)
    _git(project, "init", "--quiet")
    adapter = project / "src" / "mts1b_acme_broker" / "adapter.py"
    adapter.write_text(adapter.read_text().replace('name: str = "acme"', 'name: str = "acme-1"'))
    _git(project, "add", "--all")
    _git(project, "commit", "--quiet", "-m", "generated, then edited")
    (project / "scratch.txt").write_text("x")
    with pytest.raises(ScaffoldError, match="uncommitted changes"):
        update_project(project)
    (project / "scratch.txt").unlink()
    update_project(project)
    assert "## Template updates" in (project / "README.md").read_text()
    assert 'name: str = "acme-1"' in adapter.read_text()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] != "v0.0.9"
