"""The API reference (docs/api/, rendered by mkdocstrings) covers every library's public surface.

A library's public surface is its package's ``__all__``; where an exported name is a module
(``mts1b_quantkit.metrics``) that module's ``__all__`` is part of it, and so is the ``__all__`` of
each further module a reference page renders (``mts1b_operations.audit``). Users also import
from submodules by path (``from mts1b_platform.bus import Bus``, the stand-ins of
``mts1b_brokers.testing``), so every public submodule with an ``__all__`` - no underscore in its
path, not a command-line module - is covered too: it has its own ``::: module`` section, or each
name of its ``__all__`` is rendered under a module that has one. A module path the guides or a
README import from always gets its own section, so the reader finds it under the name they saw.

The pages hold no list of names - mkdocstrings selects each module's ``__all__`` (``filters:
public``) - so the test builds the site once and looks for each name's anchor in the rendered
page: a name that a template, an option or an unresolvable re-export drops fails here, not in a
reader's browser.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import griffe
import pytest
import yaml

from tools.docs.sphinx_roles import drop_literal_markers, rewrite_roles

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"
LIBRARIES: list[dict[str, str]] = yaml.safe_load(
    (ROOT / "repos.yaml").read_text(encoding="utf-8"))["libraries"]
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)
IMPORT_FROM = re.compile(r"\bfrom (mts1b_\w+(?:\.\w+)+) import\b")
IMPORT_NAMES = {library["import_name"] for library in LIBRARIES}

# Public-looking submodules with an ``__all__`` that get no section, and why. Command-line
# modules (``cli``, ``*_cli``) and anything with an underscore in its path are skipped by rule.
LEFT_OUT = {
    "mts1b_platform.commands": "the `mts` sub-commands' implementation; the CLI is the interface",
    "mts1b_pluginsdk.pytest_plugin": "the pytest plugin's collection internals, loaded by pytest",
    "mts1b_GPUbacktester.demo": "the `python -m mts1b_GPUbacktester.demo` entry point",
}


def _directives(page: Path) -> list[str]:
    """The ``::: identifier`` blocks of a reference page, in order."""
    return DIRECTIVE.findall(page.read_text(encoding="utf-8"))


def _is_module(identifier: str) -> bool:
    try:
        importlib.import_module(identifier)
    except ModuleNotFoundError:
        return False
    return True


def _public(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} is rendered but has no __all__ to select its names"
    return list(names)


def _value(module_name: str, name: str) -> object:
    """``module_name.name``; a deprecated name still in ``__all__`` is shown, not warned about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(importlib.import_module(module_name), name)


def _anchors_for(module_name: str, name: str) -> set[str]:
    """The anchors under which ``module.name`` may be rendered: its public path, or - for a
    name Griffe cannot place there (a function that shares a submodule's name, a lazy import),
    which the page renders from its own ``::: defining.module.name`` block - its defining path."""
    value = _value(module_name, name)
    anchors = {f"{module_name}.{name}"}
    if isinstance(value, type | types.FunctionType):
        anchors.add(f"{value.__module__}.{value.__qualname__}")
    return anchors


def _rendered_modules(library: dict[str, str]) -> set[str]:
    """The modules whose ``__all__`` the library's page renders: the package, each module it
    exports by name, and each module with a ``::: module`` section."""
    package = library["import_name"]
    modules = {package} | {d for d in _directives(API / f"{library['name']}.md") if _is_module(d)}
    for name in _public(package):
        if isinstance(_value(package, name), types.ModuleType):
            modules.add(f"{package}.{name}")
    return modules


def _expected(library: dict[str, str]) -> list[tuple[str, set[str]]]:
    """Every public name the library's page must render, with the anchors that count."""
    return [(f"{module}.{name}", _anchors_for(module, name))
            for module in sorted(_rendered_modules(library)) for name in _public(module)]


def _is_public_path(module_name: str) -> bool:
    parts = module_name.split(".")
    return not any(p.startswith("_") or p == "cli" or p.endswith("_cli") for p in parts)


def _public_submodules(package: str) -> list[str]:
    """Every submodule of ``package`` with an ``__all__`` whose path is public by rule."""
    root = importlib.import_module(package)
    found = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if not _is_public_path(info.name):
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            found.append(info.name)
    return sorted(found)


def _documented_modules() -> set[str]:
    """The library module paths the guides and READMEs import from (``from a.b import x``)."""
    texts = [p for p in (ROOT / "docs").rglob("*.md") if API not in p.parents]
    texts += sorted(ROOT.glob("mts1b-*/README.md"))
    return {m for path in texts for m in IMPORT_FROM.findall(path.read_text(encoding="utf-8"))
            if m.split(".")[0] in IMPORT_NAMES}


def _exports(modules: set[str]) -> dict[int, set[str]]:
    """Each object the ``__all__`` of ``modules`` export, by identity, with the names it has."""
    exported: dict[int, set[str]] = {}
    for module in modules:
        for name in _public(module):
            exported.setdefault(id(_value(module, name)), set()).add(name)
    return exported


def _uncovered(module_name: str, exported: dict[int, set[str]]) -> list[str]:
    """The names of ``module_name.__all__`` that ``exported`` lacks: a class, function or
    module counts when exported under any name, another value only under its own name."""
    missing = []
    for name in _public(module_name):
        value = _value(module_name, name)
        names = exported.get(id(value), set())
        by_identity = isinstance(value, type | types.FunctionType | types.ModuleType)
        if not names or not (by_identity or name in names):
            missing.append(name)
    return missing


@pytest.mark.parametrize("module_name", sorted(_documented_modules()))
def test_documented_module_paths_have_a_section(module_name: str) -> None:
    """A guide that says ``from mts1b_x.y import z`` sends the reader to ``mts1b_x.y``."""
    library = next(lib for lib in LIBRARIES if lib["import_name"] == module_name.split(".")[0])
    assert _is_module(module_name), f"the docs import from {module_name}, which is not a module"
    page = API / f"{library['name']}.md"
    assert module_name in _directives(page), f"no '::: {module_name}' section in {page.name}"


@pytest.mark.parametrize("library", LIBRARIES, ids=[lib["name"] for lib in LIBRARIES])
def test_every_public_submodule_is_covered(library: dict[str, str]) -> None:
    rendered = _rendered_modules(library)
    exported = _exports(rendered)
    gaps = {}
    for module_name in _public_submodules(library["import_name"]):
        if module_name in rendered or module_name in LEFT_OUT:
            continue
        missing = _uncovered(module_name, exported)
        if missing:
            gaps[module_name] = missing
    assert not gaps, f"add a '::: module' section to docs/api/{library['name']}.md: {gaps}"


def test_left_out_modules_exist_and_are_not_rendered() -> None:
    for module_name, why in LEFT_OUT.items():
        assert why and _is_module(module_name) and _is_public_path(module_name), module_name
        page = API / f"{module_name.split('.')[0].removeprefix('mts1b_')}.md"
        assert module_name not in _directives(page), module_name


def test_every_library_has_a_page_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+- Overview: api/index\.md$", nav, re.MULTILINE)
    overview = (API / "index.md").read_text(encoding="utf-8")
    for library in LIBRARIES:
        page = API / f"{library['name']}.md"
        assert page.is_file(), f"no reference page for {library['distribution']}"
        assert f"- {library['distribution']}: api/{library['name']}.md" in nav
        assert f"]({library['name']}.md)" in overview
        directives = _directives(page)
        assert directives[:1] == [library["import_name"]], page
        assert all(d.split(".")[0] == library["import_name"] for d in directives), page
    assert "(api/index.md)" in (ROOT / "docs" / "index.md").read_text(encoding="utf-8")


def test_module_exports_get_their_own_block() -> None:
    """quantkit exports its submodules: each one's names are rendered, not just its title."""
    page = _directives(API / "quantkit.md")
    for name in _public("mts1b_quantkit"):
        if isinstance(getattr(importlib.import_module("mts1b_quantkit"), name), types.ModuleType):
            assert f"mts1b_quantkit.{name}" in page, name


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once; ``--no-strict`` so this module tests the reference's content and a
    broken link elsewhere fails the README's ``--strict`` docs step, not this test."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--no-strict", "--quiet", "--site-dir",
         str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("library", LIBRARIES, ids=[lib["name"] for lib in LIBRARIES])
def test_every_public_name_is_rendered(site: Path, library: dict[str, str]) -> None:
    html = (site / "api" / library["name"] / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="([\w.]+)"', html))
    missing = [name for name, accepted in _expected(library) if not accepted & anchors]
    assert not missing, f"public names missing from docs/api/{library['name']}.md: {missing}"


@pytest.mark.slow
def test_roles_became_links(site: Path) -> None:
    """No docstring shows a raw Sphinx role; one that names a rendered object is a link."""
    html = "".join(p.read_text(encoding="utf-8") for p in (site / "api").rglob("*.html"))
    assert not re.search(r":(class|func|meth|mod|attr|data|exc|obj|const):<code>", html)
    assert "encoded as UTF-8:</p>" in html  # the "::" of mts1b_foundation.state_command_bytes
    assert not re.search(r"::</p>", html)
    # mts1b_oms's module docstrings name foundation's SleeveAllocation with a role
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="[^"]*foundation/'
                     r'#mts1b_foundation\.SleeveAllocation"', html)


def _visited(code: str) -> griffe.Module:
    return griffe.visit("pkg", Path("pkg/__init__.py"), code)


def test_rewrite_resolves_through_the_docstrings_scope() -> None:
    module = _visited("from other.place import Bar\n")
    out = rewrite_roles(":class:`Bar` and :func:`~a.b.sharpe` and :mod:`the mod <a.b>`", module)
    assert out == ('<autoref identifier="other.place.Bar" optional>`Bar`</autoref> and '
                   '<autoref identifier="a.b.sharpe" optional>`sharpe()`</autoref> and '
                   '<autoref identifier="a.b" optional>`the mod`</autoref>')


def test_rewrite_keeps_an_unknown_name_and_plain_text() -> None:
    module = _visited("x = 1\n")
    assert rewrite_roles("no roles: a `code` span", module) == "no roles: a `code` span"
    assert rewrite_roles(":meth:`Missing.run`", module) == (
        '<autoref identifier="Missing.run" optional>`Missing.run()`</autoref>')


def test_literal_block_markers_read_as_sphinx_shows_them() -> None:
    text = "Use it from pytest::\n\n    suite.run()\n\nLayout ::\n\n    a/\n\n::\n\n    b/\n"
    assert drop_literal_markers(text) == (
        "Use it from pytest:\n\n    suite.run()\n\nLayout\n\n    a/\n\n\n\n    b/\n")
    assert drop_literal_markers("a[::]\nx = y[::2]") == "a[::]\nx = y[::2]"
