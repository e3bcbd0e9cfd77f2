"""tools.repocheck on temporary trees: a clean tree passes, each planted fault is named."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from packaging.requirements import Requirement

from tools.repocheck.__main__ import main
from tools.repocheck.commands import Installed, Inventory, dependency_path
from tools.repocheck.docs import InstallCommand, read_install_commands, read_test_routes
from tools.repocheck.interpreters import Interpreter, find_interpreters, probe
from tools.repocheck.manifest import Library, Problem
from tools.repocheck.static import check_static, find_cycles
from tools.repocheck.wheelhouse import (
    Pin,
    applicable,
    find_present,
    marker_environment,
    parse_export,
    prune,
    target_tags,
)
from tools.repocheck.wheels import (
    Step,
    Timings,
    WheelReport,
    _Pool,
    _submit_routes,
    check_closure,
    check_wheel_contents,
    check_wheels,
    find_uv,
    install_chains,
)

ROOT = Path(__file__).resolve().parents[2]
EVERY_PYTHON = ("foundation", "quantkit", "platform")


def make_root(root: Path) -> None:
    """The root files every tree needs: the real LICENSE and NOTICE, a README with the
    wheelhouse install and a CONTRIBUTING.md that make_library adds each library's route to."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("LICENSE", "NOTICE"):
        shutil.copyfile(ROOT / name, root / name)
    (root / "README.md").write_text(textwrap.dedent("""\
        # Tree

        ```bash
        python3 dev.py wheels
        pip install --no-index --find-links dist mts1b-foundation
        ```
        """), encoding="utf-8")
    (root / "CONTRIBUTING.md").write_text("# Contributing\n", encoding="utf-8")


def make_library(
    root: Path,
    name: str,
    *,
    depends_on: Sequence[str] = (),
    code: str = "",
    version: str = "0.1.0",
    pypi: Sequence[str] = (),
    dev: Sequence[str] = (),
) -> None:
    """A well-formed library ``mts1b-<name>`` whose ``__init__`` holds ``code``, with its
    README install and, when the tree has a CONTRIBUTING.md, its test route there."""
    folder = root / f"mts1b-{name}"
    package = folder / "src" / f"mts1b_{name}"
    package.mkdir(parents=True)
    (folder / "tests").mkdir()
    deps = [f"mts1b-{d}>=0.1,<0.2" for d in depends_on] + list(pypi)
    extras = f"\n[project.optional-dependencies]\ndev = {json.dumps(list(dev))}\n" if dev else ""
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "mts1b-{name}"
        version = "{version}"
        requires-python = ">=3.11"
        dependencies = {json.dumps(deps)}
        license-files = ["LICENSE", "NOTICE"]
        """) + extras + textwrap.dedent("""
        [build-system]
        requires = ["uv_build>=0.9,<0.14"]
        build-backend = "uv_build"
        """), encoding="utf-8")
    (folder / "README.md").write_text(textwrap.dedent(f"""\
        # mts1b-{name}

        ```bash
        python3 dev.py wheels
        pip install --no-index --find-links dist mts1b-{name}
        ```
        """), encoding="utf-8")
    (folder / "CHANGELOG.md").write_text("# Changelog\n\n## Unreleased\n", encoding="utf-8")
    for license_file in ("LICENSE", "NOTICE"):
        shutil.copyfile(ROOT / license_file, folder / license_file)
    (package / "__init__.py").write_text(textwrap.dedent(code), encoding="utf-8")
    (package / "py.typed").touch()
    contributing = root / "CONTRIBUTING.md"
    if contributing.is_file():
        mode = "every-python" if name in EVERY_PYTHON else "collect"
        siblings = "".join(f"-e ../mts1b-{d} " for d in depends_on)
        with contributing.open("a", encoding="utf-8") as out:
            out.write(f"\n<!-- repocheck: {mode} -->\n```bash\ncd mts1b-{name}\n"
                      f"pip install {siblings}-e \".[dev]\"\npytest -v\n```\n")


def write_manifest(
    root: Path,
    entries: dict[str, Sequence[str]],
    python_versions: Sequence[object] = ("3.11",),
    **overrides: object,
) -> None:
    """repos.yaml listing ``entries`` (name -> depends_on); ``overrides`` patch every entry."""
    libraries = [
        {
            "name": name,
            "path": f"mts1b-{name}",
            "distribution": f"mts1b-{name}",
            "import_name": f"mts1b_{name}",
            "version": "0.1.0",
            "depends_on": list(deps),
            "summary": f"The {name} library.",
            "forbidden": ["asyncpg"],
            "max_install_mb": 50,
            **overrides,
        }
        for name, deps in entries.items()
    ]
    (root / "repos.yaml").write_text(
        yaml.safe_dump({"python_versions": list(python_versions), "libraries": libraries}),
        encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """foundation <- platform <- datalake, each importing what it declares."""
    make_root(tmp_path)
    make_library(tmp_path, "foundation", code='__version__ = "0.1.0"\n')
    make_library(tmp_path, "platform", depends_on=["foundation"],
                 code="from mts1b_foundation import __version__\n")
    make_library(tmp_path, "datalake", depends_on=["foundation", "platform"], code="""
        import importlib

        import mts1b_foundation
        from mts1b_platform import something

        from . import sibling_module
        from mts1b_datalake import own
        plugin = importlib.import_module("mts1b_platform.plugins")
        """)
    write_manifest(tmp_path, {"foundation": [], "platform": ["foundation"],
                              "datalake": ["foundation", "platform"]})
    return tmp_path


def problems(root: Path) -> list[str]:
    return [p.render() for p in check_static(root).problems]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_clean_tree_passes(tree: Path) -> None:
    assert problems(tree) == []


def test_mismatched_version_is_caught(tree: Path) -> None:
    edit(tree / "mts1b-platform/pyproject.toml", 'version = "0.1.0"', 'version = "0.1.1"')
    assert problems(tree) == [
        "mts1b-platform/pyproject.toml: [project] version = '0.1.1' but repos.yaml says "
        "version: 0.1.0"
    ]


def test_mismatched_dunder_version_is_caught(tree: Path) -> None:
    edit(tree / "mts1b-foundation/src/mts1b_foundation/__init__.py", "0.1.0", "0.2.0")
    assert problems(tree) == [
        "mts1b-foundation/src/mts1b_foundation/__init__.py: __version__ = '0.2.0' but "
        "repos.yaml says version: 0.1.0"
    ]


def test_mismatched_distribution_name_is_caught(tree: Path) -> None:
    edit(tree / "mts1b-foundation/pyproject.toml", 'name = "mts1b-foundation"',
         'name = "mts1b-foundations"')
    assert problems(tree) == [
        "mts1b-foundation/pyproject.toml: [project] name = 'mts1b-foundations' but repos.yaml "
        "says distribution: mts1b-foundation"
    ]


def test_folder_without_entry_is_caught(tree: Path) -> None:
    make_library(tree, "quantkit", depends_on=["foundation"])
    assert problems(tree) == [
        "mts1b-quantkit/: folder is not listed in repos.yaml (no entry with path: "
        "mts1b-quantkit)",
        "CONTRIBUTING.md:25: `cd mts1b-quantkit`: no library 'quantkit' in repos.yaml",
    ]


def test_entry_without_folder_is_caught(tree: Path) -> None:
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "datalake": ["foundation", "platform"], "quantkit": ["foundation"]})
    assert problems(tree) == [
        "repos.yaml (quantkit): field 'path' value 'mts1b-quantkit': folder does not exist"
    ]


def test_malformed_manifest_entries_are_caught(tmp_path: Path) -> None:
    make_library(tmp_path, "foundation")
    write_manifest(tmp_path, {"foundation": []}, version=1.0, colour="blue")
    found = problems(tmp_path)
    assert "repos.yaml: libraries[0] (foundation): unknown field 'colour'" in found
    assert ("repos.yaml: libraries[0] (foundation): field 'version' must be a non-empty string "
            "(quote it), got 1.0") in found


def test_layout_rules_are_checked(tree: Path) -> None:
    folder = tree / "mts1b-foundation"
    (folder / "src/mts1b_foundation/py.typed").unlink()
    (folder / "CHANGELOG.md").write_text("# Changelog\n\n## 0.1.0\n", encoding="utf-8")
    edit(folder / "pyproject.toml", '"uv_build>=0.9,<0.14"', '"uv_build>=0.9"')
    edit(tree / "mts1b-platform/pyproject.toml", 'build-backend = "uv_build"',
         'build-backend = "hatchling.build"')
    assert problems(tree) == [
        "mts1b-foundation/pyproject.toml: [build-system] requires = ['uv_build>=0.9']: needs "
        "uv_build with an upper bound (uv_build>=x,<y)",
        "mts1b-foundation/: missing src/mts1b_foundation/py.typed",
        "mts1b-foundation/CHANGELOG.md: no 'Unreleased' heading (e.g. '## Unreleased')",
        "mts1b-platform/pyproject.toml: [build-system] build-backend = 'hatchling.build', "
        "expected 'uv_build'",
    ]


def test_sibling_requirement_needs_a_bound_that_accepts_the_sibling(tree: Path) -> None:
    edit(tree / "mts1b-platform/pyproject.toml", "mts1b-foundation>=0.1,<0.2",
         "mts1b-foundation>=0.2")
    assert problems(tree) == [
        "mts1b-platform/pyproject.toml: [project] dependencies: 'mts1b-foundation>=0.2' needs "
        "an upper bound (e.g. mts1b-foundation>=0.1,<0.2)",
        "mts1b-platform/pyproject.toml: [project] dependencies: 'mts1b-foundation>=0.2' does "
        "not accept the workspace's mts1b-foundation 0.1.0",
    ]


def test_undeclared_import_is_caught(tree: Path) -> None:
    make_library(tree, "quantkit", depends_on=["foundation"])
    write_manifest(tree, {"foundation": [], "platform": ["foundation"], "quantkit": ["foundation"],
                          "datalake": ["foundation", "platform"]})
    module = tree / "mts1b-datalake/src/mts1b_datalake/factors.py"
    module.write_text("def f():\n    from mts1b_quantkit.metrics import sharpe\n",
                      encoding="utf-8")
    assert problems(tree) == [
        "mts1b-datalake/src/mts1b_datalake/factors.py:2: imports mts1b_quantkit: 'quantkit' is "
        "not in repos.yaml depends_on of 'datalake'; mts1b-quantkit is not in [project] "
        "dependencies of mts1b-datalake/pyproject.toml"
    ]


def test_a_sibling_used_through_an_extra_is_declared_there(tree: Path) -> None:
    """A sibling the core install lacks may be imported where an extra brings it: named in
    that extra and in repos.yaml's extras_depend_on."""
    make_library(tree, "portfolio", depends_on=["foundation"],
                 code="def serve():\n    from mts1b_platform.bus import Bus\n")
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "datalake": ["foundation", "platform"], "portfolio": ["foundation"]})
    site = ("mts1b-portfolio/src/mts1b_portfolio/__init__.py:2: imports mts1b_platform: "
            "'platform' is not in repos.yaml depends_on of 'portfolio'; mts1b-platform is not "
            "in [project] dependencies of mts1b-portfolio/pyproject.toml")
    assert problems(tree) == [site]
    data = yaml.safe_load((tree / "repos.yaml").read_text(encoding="utf-8"))
    data["libraries"][3]["extras_depend_on"] = {"service": ["platform"]}
    (tree / "repos.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    assert problems(tree) == [
        "repos.yaml (portfolio): field 'extras_depend_on' 'service' value 'platform' is not in "
        "[project.optional-dependencies] service of mts1b-portfolio/pyproject.toml", site]
    edit(tree / "mts1b-portfolio/pyproject.toml", "license-files",
         'optional-dependencies = {service = ["mts1b-platform>=0.1,<0.2"]}\nlicense-files')
    assert problems(tree) == []


def test_import_declared_in_manifest_only_is_caught(tree: Path) -> None:
    edit(tree / "mts1b-datalake/pyproject.toml", '"mts1b-platform>=0.1,<0.2"', "")
    assert problems(tree) == [
        "repos.yaml (datalake): field 'depends_on' value 'platform' is not in [project] "
        "dependencies of mts1b-datalake/pyproject.toml",
        "mts1b-datalake/src/mts1b_datalake/__init__.py:5: imports mts1b_platform: "
        "mts1b-platform is not in [project] dependencies of mts1b-datalake/pyproject.toml",
        "mts1b-datalake/src/mts1b_datalake/__init__.py:9: imports mts1b_platform: "
        "mts1b-platform is not in [project] dependencies of mts1b-datalake/pyproject.toml",
    ]


def test_pyproject_sibling_missing_from_manifest_is_caught(tree: Path) -> None:
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "datalake": ["foundation"]})
    found = problems(tree)
    assert ("mts1b-datalake/pyproject.toml: [project] dependencies: 'platform' is required here "
            "but not in repos.yaml depends_on of 'datalake'") in found
    assert len(found) == 3  # plus the two import sites of mts1b_platform


def test_upward_import_is_caught(tree: Path) -> None:
    (tree / "mts1b-foundation/src/mts1b_foundation/cfg.py").write_text(
        "import mts1b_platform.config\n", encoding="utf-8")
    assert problems(tree) == [
        "mts1b-foundation/src/mts1b_foundation/cfg.py:1: imports mts1b_platform: 'platform' is "
        "not in repos.yaml depends_on of 'foundation'; mts1b-platform is not in [project] "
        "dependencies of mts1b-foundation/pyproject.toml; foundation (layer 0) may not depend "
        "on platform (layer 1), a higher layer"
    ]


def test_same_layer_dependency_is_caught(tree: Path) -> None:
    make_library(tree, "quantkit", depends_on=["foundation", "platform"],
                 code="import mts1b_platform\n")
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "quantkit": ["foundation", "platform"],
                          "datalake": ["foundation", "platform"]})
    same_layer = "quantkit and platform are both in layer 1: same-layer imports are not allowed"
    assert problems(tree) == [
        f"repos.yaml (quantkit): field 'depends_on' value 'platform': {same_layer}",
        f"mts1b-quantkit/src/mts1b_quantkit/__init__.py:1: imports mts1b_platform: {same_layer}",
    ]


def test_pluginsdk_may_import_foundation_only(tree: Path) -> None:
    make_library(tree, "pluginsdk", depends_on=["foundation", "platform"],
                 code="import mts1b_foundation\nimport mts1b_platform\n")
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "pluginsdk": ["foundation", "platform"],
                          "datalake": ["foundation", "platform"]})
    only = "pluginsdk may depend on ['foundation'] only, not on platform"
    assert problems(tree) == [
        f"repos.yaml (pluginsdk): field 'depends_on' value 'platform': {only}",
        f"mts1b-pluginsdk/src/mts1b_pluginsdk/__init__.py:2: imports mts1b_platform: {only}",
    ]


def test_import_of_unknown_package_is_caught(tree: Path) -> None:
    edit(tree / "mts1b-platform/src/mts1b_platform/__init__.py", "mts1b_foundation",
         "mts1b_nowhere")
    assert problems(tree) == [
        "mts1b-platform/src/mts1b_platform/__init__.py:1: imports mts1b_nowhere, which is not "
        "the import_name of any library in repos.yaml"
    ]


def test_cycle_is_caught(tree: Path) -> None:
    write_manifest(tree, {"foundation": ["datalake"], "platform": ["foundation"],
                          "datalake": ["foundation", "platform"]})
    cycles = [p for p in problems(tree) if "cycle" in p]
    assert cycles == [
        "repos.yaml: dependency cycle in depends_on: datalake -> foundation -> datalake"
    ]


def test_find_cycles_reports_each_cycle_once() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a", "d"], "e": []}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["d", "d"]]
    assert find_cycles({"a": [], "b": ["a"]}) == []


def test_cli_exit_codes(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tree), "--no-wheels"]) == 0
    assert capsys.readouterr().out.startswith("repocheck: ok - 3 libraries (static)")
    edit(tree / "mts1b-platform/pyproject.toml", 'version = "0.1.0"', 'version = "9"')
    assert main(["--root", str(tree), "--no-wheels"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("mts1b-platform/pyproject.toml: [project] version = '9'")
    assert out[-1].startswith("repocheck: 1 problem(s)")


# --- sibling requirements with extras ------------------------------------------------------


def test_sibling_requirement_with_extras_is_understood(tree: Path) -> None:
    """`mts1b-platform[bus]>=0.1,<0.2` is the sibling mts1b-platform, in dependencies and in an
    extra; its bound is checked like any sibling's."""
    datalake = tree / "mts1b-datalake/pyproject.toml"
    edit(datalake, '"mts1b-platform>=0.1,<0.2"', '"mts1b-platform[bus]>=0.1,<0.2"')
    edit(datalake, "[build-system]", '[project.optional-dependencies]\n'
         'bus = ["mts1b-platform[bus]>=0.1,<0.2"]\ndev = ["mts1b-datalake[bus]"]\n\n'
         '[build-system]')
    assert problems(tree) == []
    edit(datalake, 'bus = ["mts1b-platform[bus]>=0.1,<0.2"]', 'bus = ["mts1b-platform[bus]>=0.2"]')
    assert problems(tree) == [
        "mts1b-datalake/pyproject.toml: [project.optional-dependencies] bus: "
        "'mts1b-platform[bus]>=0.2' needs an upper bound (e.g. mts1b-platform>=0.1,<0.2)",
        "mts1b-datalake/pyproject.toml: [project.optional-dependencies] bus: "
        "'mts1b-platform[bus]>=0.2' does not accept the workspace's mts1b-platform 0.1.0",
    ]


# --- manifest fields --------------------------------------------------------------------------


def test_forbidden_and_max_install_mb_are_validated(tree: Path) -> None:
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "datalake": ["foundation", "platform"]},
                   forbidden=["nats-py", "Nats_Py", 3, "nats-py"], max_install_mb="big")
    found = problems(tree)
    where = "repos.yaml: libraries[0] (foundation)"
    assert f"{where}: field 'forbidden' value 'Nats_Py' is not normalized (PEP 503): write " \
           "'nats-py'" in found
    assert f"{where}: field 'forbidden' value 3 is not a distribution name" in found
    assert f"{where}: field 'forbidden' value 'nats-py' is listed twice" in found
    assert f"{where}: field 'max_install_mb' must be a positive number of MiB, got 'big'" in found
    write_manifest(tree, {"foundation": []}, forbidden="asyncpg", max_install_mb=True)
    found = problems(tree)
    assert f"{where}: field 'forbidden' must be a list of distribution names, got " \
           "'asyncpg'" in found
    assert f"{where}: field 'max_install_mb' must be a positive number of MiB, got True" in found


def test_missing_fields_are_named(tree: Path) -> None:
    manifest = yaml.safe_load((tree / "repos.yaml").read_text(encoding="utf-8"))
    del manifest["python_versions"]
    del manifest["libraries"][0]["forbidden"]
    (tree / "repos.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    found = problems(tree)
    assert "repos.yaml: missing top-level field 'python_versions' (the supported Python " \
           'versions, e.g. ["3.11", "3.12"])' in found
    assert "repos.yaml: libraries[0] (foundation): missing field 'forbidden'" in found


def test_python_versions_are_validated(tree: Path) -> None:
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "datalake": ["foundation", "platform"]},
                   python_versions=["3.10", "3.12", "3.12", 3.13, "3.x"])
    assert problems(tree) == [
        "repos.yaml: field 'python_versions' value '3.10' is below the minimum 3.11",
        "repos.yaml: field 'python_versions' value '3.12' is listed twice",
        "repos.yaml: field 'python_versions' value 3.13 must be a quoted version like \"3.12\"",
        "repos.yaml: field 'python_versions' value '3.x' must be a quoted version like \"3.12\"",
    ]


# --- licenses --------------------------------------------------------------------------------


def test_license_copies_equal_the_root_and_the_root_is_apache(tree: Path) -> None:
    (tree / "mts1b-platform/NOTICE").write_bytes(b"Someone else\n")
    (tree / "mts1b-datalake/LICENSE").unlink()
    assert problems(tree) == [
        "mts1b-datalake/: missing LICENSE",
        "mts1b-platform/NOTICE: differs from the root NOTICE: copy it (cp NOTICE mts1b-platform/)",
    ]
    text = (tree / "LICENSE").read_text(encoding="utf-8")
    (tree / "LICENSE").write_text("\n\n" + text.rstrip() + "   \n\n", encoding="utf-8")
    found = problems(tree)
    assert not any(p.startswith("LICENSE:") for p in found)  # blank lines and spaces only
    (tree / "LICENSE").write_text(text.replace("Version 2.0", "Version 3.0"), encoding="utf-8")
    found = problems(tree)
    assert any(p.startswith("LICENSE: is not the Apache License 2.0 text") for p in found)


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _library(name: str = "quantkit", **fields: object) -> Library:
    values: dict[str, object] = {
        "name": name, "path": f"mts1b-{name}", "distribution": f"mts1b-{name}",
        "import_name": f"mts1b_{name}", "version": "0.1.0", "depends_on": (),
        "summary": "", "forbidden": (), "max_install_mb": 100.0, **fields}
    return Library(**values)  # type: ignore[arg-type]


def test_wheel_must_carry_license_and_notice(tmp_path: Path) -> None:
    lib = _library()
    license_text = (ROOT / "LICENSE").read_bytes()
    good = {"mts1b_quantkit/__init__.py": b"", "mts1b_quantkit/py.typed": b"",
            "mts1b_quantkit-0.1.0.dist-info/licenses/LICENSE": license_text,
            "mts1b_quantkit-0.1.0.dist-info/licenses/NOTICE": (ROOT / "NOTICE").read_bytes()}
    assert check_wheel_contents(_wheel(tmp_path / "good.whl", good), lib, ROOT) == []
    bad = {**good, "mts1b_quantkit-0.1.0.dist-info/licenses/NOTICE": b"other\n"}
    del bad["mts1b_quantkit-0.1.0.dist-info/licenses/LICENSE"]
    assert check_wheel_contents(_wheel(tmp_path / "bad.whl", bad), lib, ROOT) == [
        'wheel bad.whl lacks .dist-info/licenses/LICENSE (pyproject license-files = '
        '["LICENSE", "NOTICE"])',
        "wheel bad.whl: .dist-info/licenses/NOTICE differs from the root NOTICE",
    ]


# --- documented commands ---------------------------------------------------------------------


def test_readme_installs_must_come_from_the_wheelhouse(tree: Path) -> None:
    readme = tree / "mts1b-platform/README.md"
    edit(readme, "pip install --no-index --find-links dist mts1b-platform",
         "pip install ./mts1b-foundation ./mts1b-platform   # from the folders\n"
         'pip install --no-index --find-links dist "mts1b-platform[dev]"\n'
         "pip install --find-links dist mts1b-platform\n"
         'pip install "cupy-cuda12x>=13"')
    assert problems(tree) == [
        "mts1b-platform/README.md:5: `pip install ./mts1b-foundation ./mts1b-platform` may take "
        "an mts1b-* distribution from an index or a source folder: show `pip install --no-index "
        "--find-links dist <distribution>` (after `python3 dev.py wheels`)",
        "mts1b-platform/README.md:6: `pip install --no-index --find-links dist "
        "\"mts1b-platform[dev]\"` asks for the extra(s) ['dev'] of mts1b-platform, whose "
        "dependencies the wheelhouse leaves out: show `pip install --no-index --find-links dist "
        "<distribution>` (after `python3 dev.py wheels`)",
        "mts1b-platform/README.md:7: `pip install --find-links dist mts1b-platform` may take an "
        "mts1b-* distribution from an index or a source folder: show `pip install --no-index "
        "--find-links dist <distribution>` (after `python3 dev.py wheels`)",
        "mts1b-platform/README.md:8: 'cupy-cuda12x>=13' in `pip install \"cupy-cuda12x>=13\"` "
        "is not a requirement of any extra in [project.optional-dependencies] of "
        "mts1b-platform/pyproject.toml: keep the bounds there",
        "mts1b-platform/README.md: does not show the install of mts1b-platform (`pip install "
        "--no-index --find-links dist mts1b-platform`)",
    ]


def test_docs_pages_installs_are_checked_fenced_and_inline(tree: Path) -> None:
    """A docs page's fenced installs are held to the README rules (and run); an inline
    `pip install` in any prose that names an mts1b-* distribution must be the wheelhouse form
    too, though it is not run: messages and hints quote such commands."""
    page = tree / "docs/libraries/platform.md"
    page.parent.mkdir(parents=True)
    page.write_text(textwrap.dedent("""\
        # mts1b-platform

        Install it with `pip install ./mts1b-foundation
        ./mts1b-platform`; the exporter is `pip install "iniconfig>=2"`.

        ```bash
        pip install mts1b-platform
        pip install --no-index --find-links dist mts1b-platform
        ```

        Without the extra it says `pip install "mts1b-platform[otlp]"`.
        """), encoding="utf-8")
    edit(tree / "mts1b-foundation/README.md", "```bash\n",
         "Or `pip install --no-index --find-links dist mts1b-foundation` from prose.\n\n```bash\n")
    assert problems(tree) == [
        "docs/libraries/platform.md:7: `pip install mts1b-platform` may take an mts1b-* "
        "distribution from an index or a source folder: show `pip install --no-index "
        "--find-links dist <distribution>` (after `python3 dev.py wheels`)",
        "docs/libraries/platform.md:3: `pip install ./mts1b-foundation ./mts1b-platform` may "
        "take an mts1b-* distribution from an index or a source folder: show `pip install "
        "--no-index --find-links dist <distribution>`, or name the third-party requirements an "
        "extra adds",
        "docs/libraries/platform.md:11: `pip install \"mts1b-platform[otlp]\"` may take an "
        "mts1b-* distribution from an index or a source folder: show `pip install --no-index "
        "--find-links dist <distribution>`, or name the third-party requirements an extra adds",
        "docs/libraries/platform.md: shows `pip install --no-index --find-links dist` but not "
        "how dist/ is made (`python3 dev.py wheels`)",
    ]
    commands, _ = read_install_commands(tree, check_static(tree).libraries)
    assert [c.where for c in commands if c.file.startswith("docs/")] == [
        "docs/libraries/platform.md:8"]


def test_readme_install_commands_are_read_as_a_shell_splits_them(tree: Path) -> None:
    readme = tree / "README.md"
    edit(readme, "pip install --no-index --find-links dist mts1b-foundation",
         "pip install --no-index --find-links dist \\\n    \"mts1b-platform>=0.1\"  # comment")
    commands, found = read_install_commands(tree, check_static(tree).libraries)
    assert found == []
    root_command = next(c for c in commands if c.file == "README.md")
    assert root_command.line == 5
    assert root_command.argv == ("pip", "install", "--no-index", "--find-links", "dist",
                                 "mts1b-platform>=0.1")
    assert [str(r) for r in root_command.requirements] == ["mts1b-platform>=0.1"]
    (readme).write_text("# Tree\n\n```bash\npip install --no-index --find-links dist "
                        "mts1b-foundation\n```\n", encoding="utf-8")
    assert problems(tree) == [
        "README.md: shows `pip install --no-index --find-links dist` but not how dist/ is made "
        "(`python3 dev.py wheels`)"]


def test_contributing_routes_are_checked(tree: Path) -> None:
    contributing = tree / "CONTRIBUTING.md"
    edit(contributing, 'cd mts1b-platform\npip install -e ../mts1b-foundation -e ".[dev]"',
         'cd mts1b-platform\npip install -e . pytest-cov mts1b-foundation')
    edit(contributing, "cd mts1b-datalake\npip install -e ../mts1b-foundation -e "
         '../mts1b-platform -e ".[dev]"\npytest -v',
         "cd mts1b-datalake\npip install -e ../mts1b-foundation -e ../mts1b-platform -e . \\\n"
         "  --index-url https://example.org\npytest -v --ignore=tests/test_gone.py "
         "--deselect=tests/test_x.py::test_y -k 'a/b' tests/test_missing.py tests/test_x.py")
    (tree / "mts1b-datalake/tests/test_x.py").write_text("def test_z() -> None:\n    pass\n",
                                                          encoding="utf-8")
    edit(contributing, "<!-- repocheck: every-python -->\n```bash\ncd mts1b-foundation",
         "<!-- repocheck: sometimes -->\n```bash\ncd mts1b-foundation")
    assert problems(tree) == [
        "CONTRIBUTING.md:3: unknown repocheck marker 'sometimes' (one of ('every-python', "
        "'collect'))",
        "CONTRIBUTING.md:13: 'pytest-cov' is not in [project.optional-dependencies] dev of "
        "mts1b-platform/pyproject.toml: test tools have one home",
        "CONTRIBUTING.md:13: 'mts1b-foundation' would come from an index: install the sibling "
        "from its folder (-e ../mts1b-foundation)",
        "CONTRIBUTING.md:11: the platform route does not install mts1b-foundation from its "
        "folder (add `-e ../mts1b-foundation`): pip would look it up on an index",
        "CONTRIBUTING.md:20: option '--index-url': a test route installs folders and "
        "requirements only",
        "CONTRIBUTING.md:20: 'https://example.org' is neither a folder nor a requirement",
        "CONTRIBUTING.md:22: --ignore 'tests/test_gone.py': tests/test_gone.py does not exist "
        "in mts1b-datalake/",
        "CONTRIBUTING.md:22: --deselect 'tests/test_x.py::test_y': no test 'test_y' in "
        "tests/test_x.py",
        "CONTRIBUTING.md:22: test path 'tests/test_missing.py': tests/test_missing.py does not "
        "exist in mts1b-datalake/",
        "CONTRIBUTING.md: no `<!-- repocheck: every-python -->` route for foundation (its tests "
        "run on every Python)",
        "CONTRIBUTING.md: no test route for foundation (`cd mts1b-foundation`, `pip install "
        "...`, `pytest`)",
    ]


def test_routes_are_read_with_their_mode_and_label(tree: Path) -> None:
    edit(tree / "CONTRIBUTING.md", 'cd mts1b-platform\npip install -e ../mts1b-foundation -e '
         '".[dev]"', "cd mts1b-platform\npip install -e ../mts1b-foundation -e .")
    routes, found = read_test_routes(tree)
    assert found == []
    assert [(r.library, r.mode, r.label, r.line) for r in routes] == [
        ("foundation", "every-python", "foundation", 4),
        ("platform", "every-python", "platform (core)", 11),
        ("datalake", "collect", "datalake", 18),
    ]
    assert routes[1].commands[-1].argv == ("pytest", "-v")
    (tree / "CONTRIBUTING.md").unlink()
    routes, found = read_test_routes(tree)
    assert routes == []
    assert [p.render() for p in found] == [
        "CONTRIBUTING.md: file not found (it gives each library's test command)"]


def test_routes_run_tests_on_other_pythons_and_collect_the_rest_here(tree: Path) -> None:
    routes, _ = read_test_routes(tree)
    running = Interpreter("3.11", "3.11.7", "/py/3.11")
    other = Interpreter("3.12", "3.12.1", "/py/3.12")
    for test_running, expected, tested, collected in [
        # an every-python route is not collected on the running Python as well: it runs
        # whole on the other one, and the workspace runs its tests on this one
        (False, ["[3.12] foundation tests", "[3.12] platform tests",
                 "[3.11] datalake collect"],
         ["3.12.1"], ["3.11.7"]),
        (True, ["[3.11] foundation tests", "[3.12] foundation tests", "[3.11] platform tests",
                "[3.12] platform tests", "[3.11] datalake collect"],
         ["3.11.7", "3.12.1"], []),
    ]:
        queued: list[tuple[str, str, float]] = []
        pool = SimpleNamespace(submit=lambda key, name, default, task, queued=queued:
                               queued.append((key, name, default)))
        report = WheelReport()
        _submit_routes(SimpleNamespace(report=report), pool, routes,  # type: ignore[arg-type]
                       [running, other], test_running)
        assert [name for _, name, _ in queued] == expected
        assert {key for key, _, _ in queued} == {"route:foundation", "route:platform",
                                                  "route:datalake"}
        assert (report.test_run, report.collected) == (tested, collected)


def test_install_chains_hold_exactly_one_closure_at_each_step() -> None:
    deps = {"foundation": [], "platform": ["foundation"], "quantkit": ["foundation"],
            "datalake": ["foundation", "platform"], "brokers": ["foundation", "platform"],
            "oms": ["foundation", "platform"],
            "GPUbacktester": ["foundation", "platform", "quantkit", "datalake"]}
    libraries = {name: _library(name=name, depends_on=tuple(d)) for name, d in deps.items()}
    installs = [(lib, InstallCommand(f"mts1b-{lib.name}/README.md", 1, lib.name, ()))
                for lib in libraries.values()]
    chains = install_chains(installs, libraries)
    # four chains, as few as can be: quantkit, datalake, brokers and oms depend on none of
    # each other, so no two of them can share one
    assert [[lib.name for lib, _ in chain] for chain in chains] == [
        ["foundation", "platform", "brokers"], ["quantkit"], ["datalake", "GPUbacktester"],
        ["oms"]]
    for chain in chains:  # each library depends on every one before it
        for i, (lib, _) in enumerate(chain):
            assert {o.name for o, _ in chain[:i]} <= set(libraries[lib.name].depends_on)


def test_pool_starts_the_longest_first_and_times_each_task(tmp_path: Path) -> None:
    record = tmp_path / "timings.json"
    record.write_text(json.dumps({"b": 30.0, "c": 5.0}), encoding="utf-8")
    timings = Timings(record)
    report = WheelReport()
    pool = _Pool(1, report, timings)
    gate = threading.Event()
    order: list[str] = []

    def task(name: str) -> Callable[[], tuple[list[Problem], list[Step]]]:
        def run() -> tuple[list[Problem], list[Step]]:
            if name == "gate":
                gate.wait(10)
            order.append(name)
            return [], [Step(name, 0.0)]
        return run

    pool.submit("k0", "gate", 1000.0, task("gate"))  # holds the only worker while we queue
    for name, default in [("a", 10.0), ("b", 1.0), ("c", 50.0), ("d", 20.0)]:
        pool.submit(f"k-{name}", name, default, task(name))
    gate.set()
    pool.join()
    # b and c as timed last time (30, 5), a and d by their defaults (10, 20)
    assert order == ["gate", "b", "d", "a", "c"]
    assert [s.name for s in report.steps] == order
    timings.save()
    assert set(json.loads(record.read_text(encoding="utf-8"))) == {"gate", "a", "b", "c", "d"}
    record.write_text("not json", encoding="utf-8")
    assert Timings(record).estimate("b", 7.0) == 7.0  # an unreadable record only costs the order


# --- closure: forbidden, servers, size -------------------------------------------------------


def _installed(name: str, size_mib: float, requires: Sequence[str] = (),
               servers: Sequence[str] = ()) -> Installed:
    return Installed(name, "1.0", int(size_mib * 2**20), tuple(requires), tuple(servers), None)


def test_closure_checks_name_the_field_value_and_who_pulls_it() -> None:
    lib = _library(forbidden=("pandas", "asyncpg"), max_install_mb=10.0)
    seed = Inventory({"pip": _installed("pip", 12)}, {})
    env = {"python_version": "3.11", "sys_platform": "linux"}
    after = Inventory({
        "pip": _installed("pip", 12),
        "mts1b-quantkit": _installed("mts1b-quantkit", 1, ["numpy>=1.26", "helper[frames]",
                                                           "asyncpg; sys_platform == 'win32'"]),
        "numpy": _installed("numpy", 8),
        "helper": _installed("helper", 0.5, ["pandas>=2; extra == 'frames'"],
                             servers=["../../../bin/postgres"]),
        "pandas": _installed("pandas", 2),
    }, env)
    command = InstallCommand("mts1b-quantkit/README.md", 9, "pip install ... mts1b-quantkit",
                             (), (Requirement("mts1b-quantkit"),))
    found, size, detail = check_closure(lib, command, seed, after)
    assert [p.render() for p in found] == [
        "repos.yaml (quantkit): field 'forbidden' value 'pandas': `pip install ... "
        "mts1b-quantkit` installs pandas 1.0 (mts1b-quantkit requires helper[frames] -> helper "
        "requires pandas>=2; extra == \"frames\")",
        "mts1b-quantkit/README.md:9: `pip install ... mts1b-quantkit` installs the server "
        "executable ../../../bin/postgres (from helper 1.0): no library's install may carry a "
        "server",
        "repos.yaml (quantkit): field 'max_install_mb' value 10: `pip install ... "
        "mts1b-quantkit` installs 11.5 MiB (4 distributions; largest: numpy 8.0, pandas 2.0, "
        "mts1b-quantkit 1.0, helper 0.5)",
    ]
    assert size == pytest.approx(11.5)
    assert detail.startswith("4 distributions, 11.5 MiB (max 10")
    # asyncpg is required only on Windows: not in the closure, no chain
    assert dependency_path(after.dists, Requirement("mts1b-quantkit"), "asyncpg", env) == []


# --- wheelhouse ------------------------------------------------------------------------------

EXPORT = """\
numpy==2.4.6 ; python_full_version < '3.12' \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
    # via mts1b-foundation
numpy==2.5.5 ; python_full_version >= '3.12' \\
    --hash=sha256:{c}
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:{d}
pydantic==2.14.3 \\
    --hash=sha256:{e}
"""


def test_export_is_parsed_and_filtered_per_python() -> None:
    hashes = {k: (k * 64) for k in "abcde"}
    pins = parse_export(EXPORT.format(**hashes))
    assert [(p.name, p.version, p.hashes) for p in pins] == [
        ("numpy", "2.4.6", frozenset({"a" * 64, "b" * 64})),
        ("numpy", "2.5.5", frozenset({"c" * 64})),
        ("colorama", "0.4.6", frozenset({"d" * 64})),
        ("pydantic", "2.14.3", frozenset({"e" * 64})),
    ]
    linux = {**marker_environment("3.11"), "sys_platform": "linux"}
    assert [p.version for p in applicable(pins, linux)] == ["2.4.6", "2.14.3"]
    later = {**marker_environment("3.13"), "sys_platform": "linux"}
    assert later["python_version"] == "3.13"
    assert [p.version for p in applicable(pins, later)] == ["2.5.5", "2.14.3"]
    with pytest.raises(ValueError, match="not pinned"):
        parse_export("numpy>=2 --hash=sha256:" + "a" * 64)


def test_present_wheels_are_reused_only_with_a_locked_hash_and_fitting_tags(
        tmp_path: Path) -> None:
    good = tmp_path / "pkg_a-1.0-py3-none-any.whl"
    good.write_bytes(b"a wheel")
    tampered = tmp_path / "pkg_b-1.0-py3-none-any.whl"
    tampered.write_bytes(b"not the locked file")
    other_python = tmp_path / "pkg_c-1.0-cp399-cp399-manylinux_2_17_x86_64.whl"
    other_python.write_bytes(b"c")
    built = tmp_path / "pkg_d-1.0-py3-none-any.whl"
    built.write_bytes(b"built here")
    digest = hashlib.sha256(b"a wheel").hexdigest()
    pins = [Pin("pkg-a", "1.0", "", frozenset({digest})),
            Pin("pkg-b", "1.0", "", frozenset({"0" * 64})),
            Pin("pkg-c", "1.0", "", frozenset({hashlib.sha256(b"c").hexdigest()})),
            Pin("pkg-d", "1.0", "", frozenset({"1" * 64})),
            Pin("pkg-e", "1.0", "", frozenset({"2" * 64}))]
    record: dict[str, dict[str, object]] = {
        built.name: {"sha256": hashlib.sha256(b"built here").hexdigest(),
                     "sdist_hashes": ["1" * 64]}}
    present, missing = find_present(pins, tmp_path, target_tags("3.11"), record)
    assert [p.name for p in present] == ["pkg-a", "pkg-d"]
    assert [p.name for p in missing] == ["pkg-b", "pkg-c", "pkg-e"]
    lines: list[str] = []
    mine = tmp_path / "mts1b_x-0.1.0-py3-none-any.whl"
    mine.write_bytes(b"ours")
    prune(tmp_path, pins[:2], {"x": mine}, record, lines.append)
    assert sorted(p.name for p in tmp_path.glob("*.whl")) == sorted(
        [good.name, tampered.name, mine.name])
    assert record == {}
    assert lines[0].startswith("wheelhouse: removed 2 wheel(s) uv.lock no longer pins")


# --- interpreters ----------------------------------------------------------------------------


def _fake_python(folder: Path, name: str, answer: str, code: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{answer}'\nexit {code}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_interpreters_are_found_once_per_version(tmp_path: Path) -> None:
    def answer(impl: str, version: Sequence[int], where: str, gil: bool = True) -> str:
        return json.dumps({"impl": impl, "version": list(version), "executable": where,
                           "gil": gil})

    path = tmp_path / "bin"
    _fake_python(path, "python3.12", answer("CPython", (3, 12, 4), "/opt/py312/bin/python3.12"))
    _fake_python(path, "python3.13", "pyenv: python3.13: command not found", code=127)
    _fake_python(path, "python3.14", answer("PyPy", (3, 14, 0), "/opt/pypy/bin/python3.14"))
    pyenv = tmp_path / "pyenv"
    _fake_python(pyenv / "versions/3.13.1/bin", "python3.13",
                 answer("CPython", (3, 13, 1), "/p/3.13.1/bin/python3.13"))
    _fake_python(pyenv / "versions/3.13.0/bin", "python3.13",
                 answer("CPython", (3, 13, 0), "/p/3.13.0/bin/python3.13"))
    _fake_python(pyenv / "versions/3.13t/bin", "python3.13",
                 answer("CPython", (3, 13, 2), "/p/3.13t/bin/python3.13", gil=False))
    _fake_python(pyenv / "versions/3.10.1/bin", "python3.10",
                 answer("CPython", (3, 10, 1), "/p/3.10.1/bin/python3.10"))
    found = find_interpreters(path=str(path), pyenv_root=pyenv)
    running = probe(sys.executable)
    assert running is not None
    assert (found[0].version, found[0].full) == (running.version, running.full)
    assert [(i.version, i.full) for i in found[1:]] == [
        (v, f) for v, f in [("3.12", "3.12.4"), ("3.13", "3.13.0")] if v != running.version]


# --- the wheel stage end to end --------------------------------------------------------------


@pytest.mark.slow
def test_wheel_stage_on_a_fake_workspace(tmp_path: Path) -> None:
    """A two-library uv workspace: the wheelhouse, the README installs (closure, forbidden,
    server executables, size, imports) and the CONTRIBUTING routes, each fault named."""
    uv = find_uv(ROOT)
    assert uv is not None
    make_root(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.uv.workspace]\nmembers = ["mts1b-*"]\n\n[tool.uv]\npackage = false\n',
        encoding="utf-8")
    make_library(tmp_path, "foundation", code='__version__ = "0.1.0"\n', dev=["pytest>=8,<10"])
    make_library(tmp_path, "platform", depends_on=["foundation"], pypi=["iniconfig>=2,<3"],
                 code="import mts1b_foundation\n", dev=["pytest>=8,<10"])
    for name in ("foundation", "platform"):
        (tmp_path / f"mts1b-{name}/tests/test_it.py").write_text(
            f"import mts1b_{name}\n\n\ndef test_imports() -> None:\n"
            f"    assert mts1b_{name}.__name__\n", encoding="utf-8")
    platform = tmp_path / "mts1b-platform"
    edit(platform / "pyproject.toml", "[build-system]",
         '[tool.uv.sources]\nmts1b-foundation = { workspace = true }\n\n[build-system]')
    edit(platform / "pyproject.toml", 'dev = ["pytest>=8,<10"]',
         'dev = ["pytest>=8,<10"]\ngpu = ["cupy-cuda12x>=13"]')
    package = platform / "src/mts1b_platform"
    (package / "gpu.py").write_text("import cupy\n", encoding="utf-8")  # optional: allowed
    (package / "plot.py").write_text("import plotly\n", encoding="utf-8")  # undeclared
    (package / "postgres").write_text("#!/bin/sh\n", encoding="utf-8")  # a "server"
    # 3.99 is on no machine: it is install-checked (pip download --python-version 3.99 of the
    # pure-Python pins) and not test-run.
    write_manifest(tmp_path, {"foundation": [], "platform": ["foundation"]},
                   python_versions=[f"{sys.version_info[0]}.{sys.version_info[1]}", "3.99"],
                   forbidden=["iniconfig"], max_install_mb=0.001)
    locked = subprocess.run([uv, "lock", "--quiet"], cwd=tmp_path, capture_output=True,
                            text=True, check=False, env={**os.environ, "VIRTUAL_ENV": ""})
    assert locked.returncode == 0, locked.stderr
    static = check_static(tmp_path)
    assert [p.render() for p in static.problems] == []
    running = probe(sys.executable)
    assert running is not None
    lines: list[str] = []
    # test_running: the every-python routes run their tests here too, the only Python given
    report = check_wheels(tmp_path, static.libraries, static.pyprojects, interpreters=[running],
                          python_versions=static.python_versions, jobs=2, test_running=True,
                          log=lines.append)
    found = sorted(p.render() for p in report.problems)
    command = "`pip install --no-index --find-links dist mts1b-platform`"
    assert found == sorted([
        f"mts1b-platform/README.md:5: import mts1b_platform.plot fails after {command}: "
        "ModuleNotFoundError: No module named 'plotly'",
        f"mts1b-platform/README.md:5: {command} installs the server executable "
        "mts1b_platform/postgres (from mts1b-platform 0.1.0): no library's install may carry "
        "a server",
        f"repos.yaml (platform): field 'forbidden' value 'iniconfig': {command} installs "
        f"iniconfig {_version_in(tmp_path, 'iniconfig')} (mts1b-platform requires "
        "iniconfig<3,>=2)",
        f"repos.yaml (platform): field 'max_install_mb' value 0.001: {command} installs "
        f"{report.sizes['platform']:.1f} MiB (3 distributions; largest: "
        + next(p for p in found if "(platform): field 'max_install_mb'" in p).split("largest: ")[1],
        "repos.yaml (foundation): field 'max_install_mb' value 0.001: `pip install --no-index "
        "--find-links dist mts1b-foundation` installs "
        f"{report.sizes['foundation']:.1f} MiB (1 distributions; largest: mts1b-foundation 0.0)",
    ])
    assert (report.test_run, report.collected) == ([running.full], [])
    assert report.install_checked == ["3.99"]
    assert report.sizes_by_python == {running.full: report.sizes}
    assert any(line.startswith("wheelhouse: Python 3.99: 1 third-party pins") for line in lines)
    assert (tmp_path / "dist" / "mts1b_platform-0.1.0-py3-none-any.whl").is_file()
    text = "\n".join(lines)
    assert "foundation tests (CONTRIBUTING.md:4): pip" in text and "1 passed" in text
    assert "platform tests (CONTRIBUTING.md:11)" in text


def _version_in(root: Path, name: str) -> str:
    data = (root / "uv.lock").read_text(encoding="utf-8")
    block = data[data.index(f'name = "{name}"'):]
    return block.split('version = "', 1)[1].split('"', 1)[0]


@pytest.mark.slow
def test_real_foundation_wheel_installs_alone_and_imports() -> None:
    static = check_static(ROOT)
    running = probe(sys.executable)
    assert running is not None
    lines: list[str] = []
    report = check_wheels(ROOT, static.libraries, static.pyprojects, interpreters=[running],
                          only=["foundation"], routes=False, log=lines.append)
    assert [p.render() for p in report.problems] == []
    assert 0 < report.sizes["foundation"] < 1000
    assert any("`pip install --no-index --find-links dist mts1b-foundation`" in line
               and "closure:" in line for line in lines)


def test_an_extra_whose_module_is_named_otherwise_may_be_missing() -> None:
    """``mts1b_platform.signing`` imports ``nacl``, which the ``signing`` extra's ``pynacl``
    provides: without the extra that import may fail; an undeclared module may not."""
    from tools.repocheck.static import Pyproject
    from tools.repocheck.wheels import _optional_ok

    extras = Pyproject(dependencies=(), optional=(Requirement("pynacl>=1.5,<2"),
                                                  Requirement("nats-py>=2.7")))
    assert _optional_ok("nacl.signing", extras)
    assert _optional_ok("nats", extras)
    assert not _optional_ok("asyncpg", extras)
    assert not _optional_ok(None, extras)
