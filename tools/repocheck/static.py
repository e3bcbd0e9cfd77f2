"""The checks that need no build: manifest vs folders vs pyproject, imports, layers, cycles."""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tools.repocheck.docs import check_documented_commands
from tools.repocheck.layers import LAYERS, ONLY, layer_error
from tools.repocheck.layout import library_dirs, source_files
from tools.repocheck.manifest import MANIFEST, Library, Problem, load_manifest

UNRELEASED = re.compile(r"^#{1,6}\s*\[?unreleased\]?\s*$", re.IGNORECASE | re.MULTILINE)
UPPER_BOUND_OPERATORS = frozenset({"<", "<=", "==", "~=", "==="})
LICENSE_FILES = ("LICENSE", "NOTICE")
# sha256 of the Apache License 2.0 text (https://www.apache.org/licenses/LICENSE-2.0.txt) after
# normalize_license_text: the official file differs from common copies only in surrounding blank
# lines and trailing spaces, which say nothing about the terms.
APACHE_2_0_SHA256 = "283ea6cc2997a1a70da0049e09adf9317bb60ca1b51279b65196b83a69e1996b"


@dataclass(frozen=True)
class Pyproject:
    """What the other checks need from one library's pyproject.toml.

    ``optional`` is every requirement of every extra, ``extras`` the same by extra name.
    """

    dependencies: tuple[Requirement, ...]
    optional: tuple[Requirement, ...]
    extras: Mapping[str, tuple[Requirement, ...]] = field(default_factory=dict)


def has_upper_bound(req: Requirement) -> bool:
    return any(spec.operator in UPPER_BOUND_OPERATORS for spec in req.specifier)


def _requirements(
    values: Any, where: str, field: str, problems: list[Problem]
) -> list[Requirement]:
    if not isinstance(values, list):
        problems.append(Problem(where, f"{field} must be a list, got {values!r}"))
        return []
    parsed: list[Requirement] = []
    for value in values:
        try:
            parsed.append(Requirement(str(value)))
        except InvalidRequirement as exc:
            problems.append(Problem(where, f"{field}: invalid requirement {value!r}: {exc}"))
    return parsed


def check_folders(root: Path, libraries: Sequence[Library]) -> list[Problem]:
    """Every mts1b-* folder is listed in repos.yaml and every entry's folder exists."""
    listed = {lib.path for lib in libraries}
    problems = [
        Problem(f"{d.name}/", f"folder is not listed in {MANIFEST} (no entry with path: {d.name})")
        for d in library_dirs(root) if d.name not in listed
    ]
    problems += [
        Problem(lib.where, f"field 'path' value {lib.path!r}: folder does not exist")
        for lib in libraries if not (root / lib.path).is_dir()
    ]
    return problems


def check_naming(lib: Library) -> list[Problem]:
    """path, distribution and import_name all follow from name (mts1b-<name>, mts1b_<name>)."""
    expected = {
        "path": f"mts1b-{lib.name}",
        "distribution": f"mts1b-{lib.name}",
        "import_name": f"mts1b_{lib.name}",
    }
    return [
        Problem(lib.where, f"field {key!r} value {getattr(lib, key)!r} should be {value!r}")
        for key, value in expected.items() if getattr(lib, key) != value
    ]


def check_pyproject(
    root: Path, lib: Library, versions: Mapping[str, str]
) -> tuple[Pyproject | None, list[Problem]]:
    """pyproject.toml agrees with repos.yaml and follows the library layout rules.

    ``versions`` maps each sibling's canonical distribution name to its version, to check that
    sibling requirements have an upper bound and accept the sibling's current version.
    """
    folder = root / lib.path
    where = f"{lib.path}/pyproject.toml"
    problems: list[Problem] = []
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [Problem(where, "file not found")]
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(where, f"invalid TOML: {exc}")]
    project = data.get("project", {})
    if project.get("name") != lib.distribution:
        problems.append(Problem(where, f"[project] name = {project.get('name')!r} but "
                                       f"{MANIFEST} says distribution: {lib.distribution}"))
    if "version" in project.get("dynamic", []):
        problems.append(Problem(where, "[project] version must be static, not dynamic"))
    if project.get("version") != lib.version:
        problems.append(Problem(where, f"[project] version = {project.get('version')!r} but "
                                       f"{MANIFEST} says version: {lib.version}"))
    system = data.get("build-system", {})
    if system.get("build-backend") != "uv_build":
        problems.append(Problem(where, f"[build-system] build-backend = "
                                       f"{system.get('build-backend')!r}, expected 'uv_build'"))
    backend = [r for r in _requirements(system.get("requires", []), where,
                                        "[build-system] requires", problems)
               if canonicalize_name(r.name) == "uv-build"]
    if not backend or not all(has_upper_bound(r) for r in backend):
        problems.append(Problem(where, f"[build-system] requires = {system.get('requires')!r}: "
                                       "needs uv_build with an upper bound (uv_build>=x,<y)"))
    deps = _requirements(project.get("dependencies", []), where, "[project] dependencies",
                         problems)
    extras = {
        extra: tuple(_requirements(values, where, f"[project.optional-dependencies] {extra}",
                                   problems))
        for extra, values in sorted(project.get("optional-dependencies", {}).items())
    }
    problems += _check_sibling_bounds(deps, "[project] dependencies", where, versions)
    for extra, reqs in extras.items():
        own = canonicalize_name(lib.distribution)
        others = [r for r in reqs if canonicalize_name(r.name) != own]
        problems += _check_sibling_bounds(others, f"[project.optional-dependencies] {extra}",
                                          where, versions)
    problems += _check_files(folder, lib)
    optional = tuple(req for reqs in extras.values() for req in reqs)
    return Pyproject(tuple(deps), optional, extras), problems


def _check_sibling_bounds(
    reqs: Sequence[Requirement], field_name: str, where: str, versions: Mapping[str, str]
) -> list[Problem]:
    """Sibling requirements (extras such as ``mts1b-platform[bus]`` included) are bounded above
    and accept the sibling's current version: a wheel built here must install with its siblings'
    wheels built here, and a minor release of a sibling must not be taken silently."""
    problems: list[Problem] = []
    for req in reqs:
        sibling_version = versions.get(canonicalize_name(req.name))
        if sibling_version is None:
            continue
        if not has_upper_bound(req):
            problems.append(Problem(where, f"{field_name}: {str(req)!r} needs an upper "
                                           f"bound (e.g. {req.name}>=0.1,<0.2)"))
        try:
            accepted = req.specifier.contains(Version(sibling_version), prereleases=True)
        except InvalidVersion:
            continue  # reported against that sibling's own entry
        if not accepted:
            problems.append(Problem(where, f"{field_name}: {str(req)!r} does not "
                                           f"accept the workspace's {req.name} {sibling_version}"))
    return problems


def _check_files(folder: Path, lib: Library) -> list[Problem]:
    problems: list[Problem] = []
    package = folder / "src" / lib.import_name
    for path in (folder / "README.md", package / "__init__.py", package / "py.typed",
                 *(folder / name for name in LICENSE_FILES)):
        if not path.is_file():
            problems.append(Problem(f"{lib.path}/", f"missing {path.relative_to(folder)}"))
    if not (folder / "tests").is_dir():
        problems.append(Problem(f"{lib.path}/", "missing tests/ folder"))
    changelog = folder / "CHANGELOG.md"
    if not changelog.is_file():
        problems.append(Problem(f"{lib.path}/", "missing CHANGELOG.md"))
    elif not UNRELEASED.search(changelog.read_text(encoding="utf-8")):
        problems.append(Problem(f"{lib.path}/CHANGELOG.md", "no 'Unreleased' heading "
                                                           "(e.g. '## Unreleased')"))
    init = package / "__init__.py"
    if init.is_file():
        version = _dunder_version(init)
        if version is not None and version != lib.version:
            problems.append(Problem(f"{lib.path}/src/{lib.import_name}/__init__.py",
                                    f"__version__ = {version!r} but {MANIFEST} says "
                                    f"version: {lib.version}"))
    try:
        Version(lib.version)
    except InvalidVersion:
        problems.append(Problem(lib.where, f"field 'version' value {lib.version!r} is not a "
                                           "valid version"))
    return problems


def _dunder_version(init: Path) -> str | None:
    try:
        tree = ast.parse(init.read_text(encoding="utf-8"))
    except SyntaxError:
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return None


def check_graph(
    libraries: Sequence[Library],
    layers: Mapping[str, int] = LAYERS,
    only: Mapping[str, frozenset[str]] = ONLY,
) -> list[Problem]:
    """depends_on names known libraries, respects the layers and has no cycles."""
    names = {lib.name for lib in libraries}
    problems: list[Problem] = []
    for lib in libraries:
        if lib.name not in layers:
            problems.append(Problem(lib.where, f"library {lib.name!r} has no layer: add it to "
                                               "tools/repocheck/layers.py"))
        seen: set[str] = set()
        for dep in lib.depends_on:
            field = f"field 'depends_on' value {dep!r}"
            if dep in seen:
                problems.append(Problem(lib.where, f"{field} is listed twice"))
            seen.add(dep)
            if dep == lib.name:
                problems.append(Problem(lib.where, f"{field}: a library cannot depend on itself"))
            elif dep not in names:
                problems.append(Problem(lib.where, f"{field} is not a library in {MANIFEST}"))
            elif lib.name in layers and (why := layer_error(lib.name, dep, layers, only)):
                problems.append(Problem(lib.where, f"{field}: {why}"))
        for extra, deps in sorted(lib.extras_depend_on.items()):
            for dep in deps:
                field = f"field 'extras_depend_on' {extra!r} value {dep!r}"
                if dep not in names or dep == lib.name:
                    problems.append(Problem(lib.where, f"{field} is not another library in "
                                                       f"{MANIFEST}"))
                elif lib.name in layers and (why := layer_error(lib.name, dep, layers, only)):
                    problems.append(Problem(lib.where, f"{field}: {why}"))
    problems += [
        Problem(MANIFEST, "dependency cycle in depends_on: " + " -> ".join(cycle))
        for cycle in find_cycles({lib.name: lib.depends_on for lib in libraries})
    ]
    return problems


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The cycles closed by back edges of a depth-first search, as [a, b, ..., a].

    Not every elementary cycle, but at least one whenever the graph has any: enough to fail and
    to show where to cut.
    """
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycle = path[path.index(dep):]
                if frozenset(cycle) not in seen_cycles:
                    seen_cycles.add(frozenset(cycle))
                    cycles.append([*cycle, dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def mts1b_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import of an ``mts1b_*`` package.

    Covers ``import x``, ``from x import y`` and ``importlib.import_module("x")`` /
    ``__import__("x")`` with a literal name; relative imports stay inside their package.
    """
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else (
                func.id if isinstance(func, ast.Name) else "")
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str):
                names = [first.value]
        for name in names:
            top = name.split(".")[0]
            if top.startswith("mts1b_"):
                yield node.lineno, top


def check_imports(
    root: Path,
    lib: Library,
    libraries: Sequence[Library],
    pyproject: Pyproject | None,
    layers: Mapping[str, int] = LAYERS,
    only: Mapping[str, frozenset[str]] = ONLY,
) -> list[Problem]:
    """Every import of a sibling is declared (repos.yaml and pyproject) and goes down a layer."""
    by_import = {other.import_name: other for other in libraries}
    declared_deps = (
        {canonicalize_name(r.name) for r in pyproject.dependencies} if pyproject else set()
    )
    # a sibling used only through an extra: named in that extra and in extras_depend_on
    extra_deps = {canonicalize_name(r.name) for extra, deps in lib.extras_depend_on.items()
                  for r in (pyproject.extras.get(extra, ()) if pyproject else ())}
    problems: list[Problem] = []
    for source in source_files(root / lib.path):
        rel = source.path.relative_to(root).as_posix()
        try:
            tree = ast.parse(source.path.read_text(encoding="utf-8"), filename=rel)
        except (SyntaxError, UnicodeDecodeError) as exc:
            problems.append(Problem(rel, f"cannot parse: {exc}"))
            continue
        for line, top in sorted(set(mts1b_imports(tree))):
            if top == lib.import_name:
                continue
            target = by_import.get(top)
            if target is None:
                problems.append(Problem(
                    f"{rel}:{line}",
                    f"imports {top}, which is not the import_name of any library in {MANIFEST}",
                ))
                continue
            reasons = []
            optional = (target.name in lib.optional_siblings()
                        and canonicalize_name(target.distribution) in extra_deps)
            if target.name not in lib.depends_on and not optional:
                reasons.append(f"{target.name!r} is not in {MANIFEST} depends_on of {lib.name!r}")
            if (pyproject and canonicalize_name(target.distribution) not in declared_deps
                    and not optional):
                reasons.append(f"{target.distribution} is not in [project] dependencies of "
                               f"{lib.path}/pyproject.toml")
            why = layer_error(lib.name, target.name, layers, only)
            if why:
                reasons.append(why)
            if reasons:
                problems.append(Problem(f"{rel}:{line}", f"imports {top}: " + "; ".join(reasons)))
    return problems


def check_declared_siblings(lib: Library, libraries: Sequence[Library],
                            pyproject: Pyproject) -> list[Problem]:
    """The sibling requirements of pyproject.toml are exactly repos.yaml's depends_on."""
    by_dist = {canonicalize_name(other.distribution): other for other in libraries}
    in_pyproject = {by_dist[n].name for r in pyproject.dependencies
                    if (n := canonicalize_name(r.name)) in by_dist}
    where = f"{lib.path}/pyproject.toml"
    problems = [
        Problem(where, f"[project] dependencies: {name!r} is required here but not in "
                       f"{MANIFEST} depends_on of {lib.name!r}")
        for name in sorted(in_pyproject - set(lib.depends_on))
    ]
    for extra, names in sorted(lib.extras_depend_on.items()):
        in_extra = {by_dist[n].name for r in pyproject.extras.get(extra, ())
                    if (n := canonicalize_name(r.name)) in by_dist}
        problems += [
            Problem(lib.where, f"field 'extras_depend_on' {extra!r} value {name!r} is not in "
                               f"[project.optional-dependencies] {extra} of {where}")
            for name in sorted(set(names) - in_extra)]
    known = {other.name for other in libraries}
    problems += [
        Problem(lib.where, f"field 'depends_on' value {name!r} is not in [project] dependencies "
                           f"of {where}")
        for name in sorted(set(lib.depends_on) - in_pyproject) if name in known
    ]
    return problems


def normalize_license_text(text: str) -> str:
    """The license text without surrounding blank lines and trailing spaces (see
    APACHE_2_0_SHA256)."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def check_licenses(root: Path, libraries: Sequence[Library]) -> list[Problem]:
    """The root LICENSE is the Apache-2.0 text; every library's LICENSE and NOTICE equal the
    root's byte for byte.

    Each library ships as its own wheel (and may one day be its own repository), so each carries
    the files; one copy that drifts would put different terms on one wheel.
    """
    problems: list[Problem] = []
    originals: dict[str, bytes] = {}
    for name in LICENSE_FILES:
        try:
            originals[name] = (root / name).read_bytes()
        except FileNotFoundError:
            problems.append(Problem(name, "file not found at the repository root"))
    if "LICENSE" in originals:
        text = originals["LICENSE"].decode("utf-8", errors="replace")
        digest = hashlib.sha256(normalize_license_text(text).encode("utf-8")).hexdigest()
        if digest != APACHE_2_0_SHA256:
            problems.append(Problem("LICENSE", "is not the Apache License 2.0 text (normalized "
                                               f"sha256 {digest}, expected {APACHE_2_0_SHA256})"))
    for lib in libraries:
        for name, original in originals.items():
            path = root / lib.path / name
            if path.is_file() and path.read_bytes() != original:
                problems.append(Problem(f"{lib.path}/{name}", f"differs from the root {name}: "
                                                              f"copy it (cp {name} {lib.path}/)"))
    return problems


@dataclass
class StaticResult:
    """The manifest, its libraries, their parsed pyprojects and every problem found."""

    libraries: list[Library]
    pyprojects: dict[str, Pyproject | None]
    problems: list[Problem]
    python_versions: tuple[str, ...] = ()


def check_static(
    root: Path,
    layers: Mapping[str, int] = LAYERS,
    only: Mapping[str, frozenset[str]] = ONLY,
) -> StaticResult:
    """All checks that need no build, for the repository at ``root``."""
    manifest, problems = load_manifest(root)
    libraries = list(manifest.libraries)
    problems += check_folders(root, libraries)
    problems += check_graph(libraries, layers, only)
    versions = {str(canonicalize_name(lib.distribution)): lib.version for lib in libraries}
    pyprojects: dict[str, Pyproject | None] = {}
    for lib in libraries:
        if not (root / lib.path).is_dir():
            continue
        problems += check_naming(lib)
        pyproject, found = check_pyproject(root, lib, versions)
        pyprojects[lib.name] = pyproject
        problems += found
        if pyproject is not None:
            problems += check_declared_siblings(lib, libraries, pyproject)
        problems += check_imports(root, lib, libraries, pyproject, layers, only)
    problems += check_licenses(root, [lib for lib in libraries if (root / lib.path).is_dir()])
    problems += check_documented_commands(root, libraries, pyprojects)
    return StaticResult(libraries, pyprojects, problems, manifest.python_versions)
