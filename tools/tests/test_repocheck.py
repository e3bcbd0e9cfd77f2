"""tools.repocheck on temporary trees: a clean tree passes, each planted fault is named."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from tools.repocheck.__main__ import main
from tools.repocheck.static import check_static, find_cycles
from tools.repocheck.wheels import check_wheels

ROOT = Path(__file__).resolve().parents[2]


def make_library(
    root: Path,
    name: str,
    *,
    depends_on: Sequence[str] = (),
    code: str = "",
    version: str = "0.1.0",
    pypi: Sequence[str] = (),
) -> None:
    """A well-formed library ``mts1b-<name>`` whose ``__init__`` holds ``code``."""
    folder = root / f"mts1b-{name}"
    package = folder / "src" / f"mts1b_{name}"
    package.mkdir(parents=True)
    (folder / "tests").mkdir()
    deps = [f"mts1b-{d}>=0.1,<0.2" for d in depends_on] + list(pypi)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "mts1b-{name}"
        version = "{version}"
        requires-python = ">=3.11"
        dependencies = {json.dumps(deps)}

        [build-system]
        requires = ["uv_build>=0.9,<0.14"]
        build-backend = "uv_build"
        """), encoding="utf-8")
    (folder / "README.md").write_text(f"# mts1b-{name}\n", encoding="utf-8")
    (folder / "CHANGELOG.md").write_text("# Changelog\n\n## Unreleased\n", encoding="utf-8")
    (package / "__init__.py").write_text(textwrap.dedent(code), encoding="utf-8")
    (package / "py.typed").touch()


def write_manifest(root: Path, entries: dict[str, Sequence[str]], **overrides: str) -> None:
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
            **overrides,
        }
        for name, deps in entries.items()
    ]
    (root / "repos.yaml").write_text(yaml.safe_dump({"libraries": libraries}), encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """foundation <- platform <- datalake, each importing what it declares."""
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
        "mts1b-quantkit/: folder is not listed in repos.yaml (no entry with path: mts1b-quantkit)"
    ]


def test_entry_without_folder_is_caught(tree: Path) -> None:
    write_manifest(tree, {"foundation": [], "platform": ["foundation"],
                          "datalake": ["foundation", "platform"], "quantkit": ["foundation"]})
    assert problems(tree) == [
        "repos.yaml (quantkit): field 'path' value 'mts1b-quantkit': folder does not exist"
    ]


def test_malformed_manifest_entries_are_caught(tmp_path: Path) -> None:
    make_library(tmp_path, "foundation")
    write_manifest(tmp_path, {"foundation": []}, version=1.0, colour="blue")  # type: ignore[arg-type]
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


@pytest.mark.slow
def test_wheels_install_alone_with_sibling_wheels(tree: Path) -> None:
    """platform installs from its wheel plus foundation's; hidden imports are reported."""
    (tree / "mts1b-datalake/src/mts1b_datalake/__init__.py").write_text(
        "import mts1b_platform\n", encoding="utf-8")
    platform = tree / "mts1b-platform"
    (platform / "src/mts1b_platform/extra.py").write_text(
        "import mts1b_datalake\n", encoding="utf-8")  # not installable: datalake is above it
    # A module needing an optional extra may fail to import without it; an undeclared one may not.
    (platform / "src/mts1b_platform/gpu.py").write_text("import cupy\n", encoding="utf-8")
    (platform / "src/mts1b_platform/plot.py").write_text("import plotly\n", encoding="utf-8")
    edit(platform / "pyproject.toml", "[build-system]",
         '[project.optional-dependencies]\ngpu = ["cupy-cuda12x>=13"]\n\n[build-system]')
    static = check_static(tree)
    lines: list[str] = []
    found = check_wheels(tree, static.libraries, static.pyprojects, only=["platform"],
                         log=lines.append)
    assert [p.render() for p in found] == [
        "mts1b-platform/ (wheel): import mts1b_platform.extra fails in a clean virtualenv: "
        "ModuleNotFoundError: No module named 'mts1b_datalake'",
        "mts1b-platform/ (wheel): import mts1b_platform.plot fails in a clean virtualenv: "
        "ModuleNotFoundError: No module named 'plotly'",
    ]
    assert any("platform: installed alone" in line and "+ foundation" in line for line in lines)


@pytest.mark.slow
def test_real_foundation_wheel_installs_alone_and_imports() -> None:
    static = check_static(ROOT)
    lines: list[str] = []
    found = check_wheels(ROOT, static.libraries, static.pyprojects, only=["foundation"],
                         log=lines.append)
    assert [p.render() for p in found] == []
    assert any(line.startswith("repocheck: foundation: installed alone") for line in lines)
