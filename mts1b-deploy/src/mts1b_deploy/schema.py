"""Database schema versions of a release, and which older release the database still serves.

Each library with a PostgreSQL schema ships its migrations as ``<package>/migrations/NNNN_*.sql``
(:mod:`mts1b_platform.migrations`); the schema version a release brings is the highest number
its installed packages hold, per library. Migrations only go forward, so the database stands at
the highest version any installed release brought.

Migrations are expand/contract: a release's migrations keep the schema usable by the release
that ran before it (N-1 code runs on schema N), and by nothing older. So, per library, a
rollback may go back to a release whose schema is at least the one that was current just before
the database's version arrived; anything older is refused, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SchemaBlock", "oldest_compatible", "schema_block", "schema_versions"]

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def schema_versions(site_packages: Path) -> dict[str, int]:
    """``{package: highest migration}`` of the ``mts1b_*`` packages installed there."""
    versions: dict[str, int] = {}
    for package in sorted(site_packages.glob("mts1b_*")):
        numbers = [int(m.group(1)) for f in (package / "migrations").glob("*.sql")
                   if (m := _MIGRATION.match(f.name))]
        if numbers:
            versions[package.name] = max(numbers)
    return versions


@dataclass(frozen=True)
class SchemaBlock:
    """Why a release cannot run on the database: the library, the versions, the floor."""

    package: str
    release_version: int
    database_version: int
    floor: int

    def reason(self) -> str:
        return (f"{self.package}'s schema there is {self.release_version:04d}, the database is "
                f"at {self.database_version:04d}, and with expand/contract migrations the "
                f"oldest schema it still serves is {self.floor:04d} (one release back)")


def _floors(history: Sequence[Mapping[str, int]]) -> dict[str, tuple[int, int]]:
    """``{package: (database version, floor)}`` from the schemas of the releases installed,
    in installation order."""
    out: dict[str, tuple[int, int]] = {}
    packages = {p for schema in history for p in schema}
    for package in packages:
        levels = [schema[package] for schema in history if package in schema]
        top = max(levels)
        first = next(i for i, schema in enumerate(history) if schema.get(package) == top)
        before = [schema[package] for schema in history[:first] if package in schema]
        out[package] = (top, max(before) if before else top)
    return out


def schema_block(history: Sequence[Mapping[str, int]], target: Mapping[str, int]
                 ) -> SchemaBlock | None:
    """The first reason ``target`` (a release's schema) cannot run on the database that the
    releases of ``history`` (installation order) left, or None when it can."""
    for package, (top, floor) in sorted(_floors(history).items()):
        version = target.get(package)
        if version is not None and version < floor:
            return SchemaBlock(package, version, top, floor)
    return None


def oldest_compatible(history: Sequence[Mapping[str, int]],
                      candidates: Sequence[tuple[int, Mapping[str, int]]]) -> int | None:
    """The lowest generation among ``candidates`` ``(generation, schema)`` that may run."""
    fits = [gen for gen, schema in candidates if schema_block(history, schema) is None]
    return min(fits) if fits else None
