"""``repos.yaml``, the manifest: one entry per library that exists in the repository.

Besides naming each library and its place in the dependency graph, an entry records what the
library's documented install may bring with it (``forbidden``: distributions that must never be in
its install closure, such as database drivers or server wheels a backtest does not need) and how
large that install may grow on disk without bytecode (``max_install_mb``). A top-level
``python_versions`` lists the Python versions the libraries support: repocheck installs and tests
on those it finds and install-checks the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name

MANIFEST = "repos.yaml"
FIELDS = ("name", "path", "distribution", "import_name", "version", "depends_on", "summary",
          "forbidden", "max_install_mb")
OPTIONAL_FIELDS = ("extras_depend_on",)
"""Fields an entry may leave out. ``extras_depend_on``: ``{extra: [library, ...]}``, the
siblings a library uses only through one of its extras (the portfolio's composer service uses
the platform's bus; its core install has neither)."""
TOP_LEVEL = ("python_versions", "libraries")
PYTHON_VERSION = re.compile(r"^3\.(\d+)$")
MIN_PYTHON = (3, 11)
# A distribution name as PEP 508 allows it (canonicalize_name accepts anything, so check first).
DISTRIBUTION_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    """One finding: where (a file, optionally with a line or field) and what is wrong."""

    where: str
    message: str

    def render(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Library:
    """One ``libraries:`` entry of repos.yaml.

    ``forbidden`` holds PEP 503-normalized distribution names; ``max_install_mb`` bounds the disk
    size (MiB, ``.pyc`` files not counted) of what the library's documented install puts into a
    clean virtualenv, on every Python found.
    """

    name: str
    path: str
    distribution: str
    import_name: str
    version: str
    depends_on: tuple[str, ...]
    summary: str
    forbidden: tuple[str, ...] = ()
    max_install_mb: float = 0.0
    extras_depend_on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def optional_siblings(self) -> set[str]:
        """Every sibling named by one of the extras."""
        return {name for names in self.extras_depend_on.values() for name in names}

    @property
    def where(self) -> str:
        return f"{MANIFEST} ({self.name})"


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest: the supported Python versions and the well-formed entries."""

    python_versions: tuple[str, ...]
    libraries: tuple[Library, ...]


def _check_python_versions(value: Any) -> tuple[tuple[str, ...], list[Problem]]:
    where = MANIFEST
    if not isinstance(value, list) or not value:
        return (), [Problem(where, "field 'python_versions' must be a non-empty list of "
                                   f"quoted versions like \"3.12\", got {value!r}")]
    versions: list[str] = []
    problems: list[Problem] = []
    for item in value:
        match = PYTHON_VERSION.match(item) if isinstance(item, str) else None
        if match is None:
            problems.append(Problem(where, f"field 'python_versions' value {item!r} must be a "
                                           "quoted version like \"3.12\""))
        elif (3, int(match.group(1))) < MIN_PYTHON:
            problems.append(Problem(where, f"field 'python_versions' value {item!r} is below "
                                           f"the minimum {MIN_PYTHON[0]}.{MIN_PYTHON[1]}"))
        elif item in versions:
            problems.append(Problem(where, f"field 'python_versions' value {item!r} is listed "
                                           "twice"))
        else:
            versions.append(item)
    return tuple(versions), problems


def _check_entry_fields(entry: dict[str, Any], where: str) -> list[Problem]:
    bad: list[Problem] = []
    for key in FIELDS:
        if key not in entry:
            continue
        value = entry[key]
        if key == "depends_on":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                bad.append(Problem(where, f"field 'depends_on' must be a list of library "
                                          f"names, got {value!r}"))
        elif key == "forbidden":
            bad += _check_forbidden(value, where)
        elif key == "max_install_mb":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                bad.append(Problem(where, f"field 'max_install_mb' must be a positive number "
                                          f"of MiB, got {value!r}"))
        elif not (isinstance(value, str) and value.strip()):
            hint = " (quote it)" if key == "version" else ""
            bad.append(Problem(where, f"field {key!r} must be a non-empty string{hint}, "
                                      f"got {value!r}"))
    extras = entry.get("extras_depend_on", {})
    if not (isinstance(extras, dict) and all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
            for k, v in extras.items())):
        bad.append(Problem(where, f"field 'extras_depend_on' must map extra names to lists of "
                                  f"library names, got {extras!r}"))
    if isinstance(entry.get("summary"), str) and "\n" in entry["summary"].strip():
        bad.append(Problem(where, "field 'summary' must be one line"))
    return bad


def _check_forbidden(value: Any, where: str) -> list[Problem]:
    if not isinstance(value, list):
        return [Problem(where, f"field 'forbidden' must be a list of distribution names, "
                               f"got {value!r}")]
    bad: list[Problem] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not DISTRIBUTION_NAME.match(item):
            bad.append(Problem(where, f"field 'forbidden' value {item!r} is not a distribution "
                                      "name"))
            continue
        normal = canonicalize_name(item)
        if item != normal:
            bad.append(Problem(where, f"field 'forbidden' value {item!r} is not normalized "
                                      f"(PEP 503): write {normal!r}"))
        elif item in seen:
            bad.append(Problem(where, f"field 'forbidden' value {item!r} is listed twice"))
        seen.add(normal)
    return bad


def load_manifest(root: Path) -> tuple[Manifest, list[Problem]]:
    """Parse ``<root>/repos.yaml``; entries with a malformed field are reported and skipped."""
    path = root / MANIFEST
    empty = Manifest((), ())
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty, [Problem(MANIFEST, "file not found")]
    except yaml.YAMLError as exc:
        return empty, [Problem(MANIFEST, f"invalid YAML: {exc}")]
    if not isinstance(data, dict) or not isinstance(data.get("libraries"), list):
        return empty, [Problem(MANIFEST, "expected a mapping with a 'libraries' list")]
    problems = [
        Problem(MANIFEST, f"unknown top-level key {key!r}")
        for key in sorted(set(data) - set(TOP_LEVEL))
    ]
    if "python_versions" not in data:
        problems.append(Problem(MANIFEST, "missing top-level field 'python_versions' (the "
                                          "supported Python versions, e.g. [\"3.11\", \"3.12\"])"))
        python_versions: tuple[str, ...] = ()
    else:
        python_versions, found = _check_python_versions(data["python_versions"])
        problems += found
    libraries: list[Library] = []
    for i, entry in enumerate(data["libraries"]):
        where = f"{MANIFEST}: libraries[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(where, f"must be a mapping, got {entry!r}"))
            continue
        if isinstance(entry.get("name"), str):
            where += f" ({entry['name']})"
        bad = [Problem(where, f"unknown field {k!r}")
               for k in sorted(set(entry) - set(FIELDS) - set(OPTIONAL_FIELDS))]
        bad += [Problem(where, f"missing field {k!r}") for k in FIELDS if k not in entry]
        bad += _check_entry_fields(entry, where)
        problems += bad
        if not bad:
            libraries.append(Library(
                entry["name"], entry["path"], entry["distribution"], entry["import_name"],
                entry["version"], tuple(entry["depends_on"]), entry["summary"],
                tuple(entry["forbidden"]), float(entry["max_install_mb"]),
                {k: tuple(v) for k, v in entry.get("extras_depend_on", {}).items()},
            ))
    for key in ("name", "path", "distribution", "import_name"):
        seen: set[str] = set()
        for lib in libraries:
            value = getattr(lib, key)
            if value in seen:
                problems.append(Problem(lib.where, f"field {key!r} value {value!r} is not unique"))
            seen.add(value)
    return Manifest(python_versions, tuple(libraries)), problems


def closure(lib: Library, by_name: Mapping[str, Library]) -> list[Library]:
    """``lib``'s depends_on, transitively (known libraries only), sorted by name."""
    seen: dict[str, Library] = {}
    stack = list(lib.depends_on)
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name or name == lib.name:
            continue
        seen[name] = by_name[name]
        stack.extend(by_name[name].depends_on)
    return [seen[n] for n in sorted(seen)]
