"""``repos.yaml``, the manifest: one entry per library that exists in the repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

MANIFEST = "repos.yaml"
FIELDS = ("name", "path", "distribution", "import_name", "version", "depends_on", "summary")


@dataclass(frozen=True)
class Problem:
    """One finding: where (a file, optionally with a line or field) and what is wrong."""

    where: str
    message: str

    def render(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Library:
    """One ``libraries:`` entry of repos.yaml."""

    name: str
    path: str
    distribution: str
    import_name: str
    version: str
    depends_on: tuple[str, ...]
    summary: str

    @property
    def where(self) -> str:
        return f"{MANIFEST} ({self.name})"


def load_manifest(root: Path) -> tuple[list[Library], list[Problem]]:
    """Parse ``<root>/repos.yaml``; entries with a malformed field are reported and skipped."""
    path = root / MANIFEST
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], [Problem(MANIFEST, "file not found")]
    except yaml.YAMLError as exc:
        return [], [Problem(MANIFEST, f"invalid YAML: {exc}")]
    if not isinstance(data, dict) or not isinstance(data.get("libraries"), list):
        return [], [Problem(MANIFEST, "expected a mapping with a 'libraries' list")]
    problems = [
        Problem(MANIFEST, f"unknown top-level key {key!r}")
        for key in sorted(set(data) - {"libraries"})
    ]
    libraries: list[Library] = []
    for i, entry in enumerate(data["libraries"]):
        where = f"{MANIFEST}: libraries[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(where, f"must be a mapping, got {entry!r}"))
            continue
        if isinstance(entry.get("name"), str):
            where += f" ({entry['name']})"
        bad = [Problem(where, f"unknown field {k!r}") for k in sorted(set(entry) - set(FIELDS))]
        bad += [Problem(where, f"missing field {k!r}") for k in FIELDS if k not in entry]
        for key in FIELDS:
            value = entry.get(key)
            if key == "depends_on":
                if key in entry and not (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)
                ):
                    bad.append(Problem(where, f"field 'depends_on' must be a list of library "
                                              f"names, got {value!r}"))
            elif key in entry and not (isinstance(value, str) and value.strip()):
                hint = " (quote it)" if key == "version" else ""
                bad.append(Problem(where, f"field {key!r} must be a non-empty string{hint}, "
                                          f"got {value!r}"))
        if isinstance(entry.get("summary"), str) and "\n" in entry["summary"].strip():
            bad.append(Problem(where, "field 'summary' must be one line"))
        problems += bad
        if not bad:
            libraries.append(Library(
                entry["name"], entry["path"], entry["distribution"], entry["import_name"],
                entry["version"], tuple(entry["depends_on"]), entry["summary"],
            ))
    for key in ("name", "path", "distribution", "import_name"):
        seen: set[str] = set()
        for lib in libraries:
            value = getattr(lib, key)
            if value in seen:
                problems.append(Problem(lib.where, f"field {key!r} value {value!r} is not unique"))
            seen.add(value)
    return libraries, problems
