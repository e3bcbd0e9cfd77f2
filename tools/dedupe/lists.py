"""The two hand-written lists the scanner reads: canonical homes and the allowlist.

Both are TOML (read with the standard library's ``tomllib``). Any mistake in them is reported as
a problem, never silently ignored: a list that cannot be trusted would hide duplicates.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
DEFAULT_CANONICAL = HERE / "canonical.toml"
DEFAULT_ALLOWLIST = HERE / "allowlist.toml"

AllowKind = Literal["duplicate", "canonical"]
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SYMBOL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def name_key(name: str) -> str:
    """How a definition's name is compared with a primitive's names and aliases.

    Leading underscores, the other underscores and case are ignored, so ``sharpe_ratio``,
    ``_sharpe_ratio`` and ``SharpeRatio`` are the same name.
    """
    return name.lstrip("_").replace("_", "").lower()


@dataclass(frozen=True)
class Primitive:
    """A primitive with one canonical home module (or package) and the names that define it."""

    name: str
    home: str
    aliases: tuple[str, ...]

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(name_key(n) for n in (self.name, *self.aliases))

    def is_home(self, module: str) -> bool:
        return module == self.home or module.startswith(self.home + ".")


@dataclass(frozen=True)
class AllowEntry:
    """One allowlist entry: the finding it accepts and the written reason why."""

    index: int
    kind: AllowKind
    symbol: str
    other: str | None
    reason: str

    def label(self) -> str:
        return f"[[allow]] #{self.index} (symbol = {self.symbol!r})"


def _read(path: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh), []
    except FileNotFoundError:
        return {}, [f"{path}: file not found"]
    except tomllib.TOMLDecodeError as exc:
        return {}, [f"{path}: invalid TOML: {exc}"]


def _text(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def load_canonical(path: Path) -> tuple[list[Primitive], list[str]]:
    """Read ``[[primitive]]`` entries (``name``, ``home``, optional ``aliases``).

    Returns the primitives and the errors found in the file (unknown keys, missing fields, a name
    claimed by two primitives).
    """
    data, errors = _read(path)
    primitives: list[Primitive] = []
    owner: dict[str, str] = {}
    for key in sorted(set(data) - {"primitive"}):
        errors.append(f"{path}: unknown top-level key {key!r} (expected [[primitive]] tables)")
    for i, entry in enumerate(data.get("primitive", []), start=1):
        where = f"{path}: [[primitive]] #{i}"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be a table")
            continue
        unknown = sorted(set(entry) - {"name", "home", "aliases"})
        if unknown:
            errors.append(f"{where}: unknown key(s) {unknown}")
        name, home = _text(entry, "name"), _text(entry, "home")
        aliases = entry.get("aliases", [])
        if name is None:
            errors.append(f"{where}: 'name' must be a non-empty string")
            continue
        if home is None or not _MODULE.match(home):
            errors.append(f"{where} ({name}): 'home' must be a dotted module name, got {home!r}")
            continue
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            errors.append(f"{where} ({name}): 'aliases' must be a list of non-empty strings")
            continue
        primitive = Primitive(name, home, tuple(aliases))
        for k in sorted(primitive.keys):
            if k in owner and owner[k] != name:
                errors.append(f"{where} ({name}): name {k!r} is already claimed by {owner[k]!r}")
            owner[k] = name
        primitives.append(primitive)
    return primitives, errors


def load_allowlist(path: Path) -> tuple[list[AllowEntry], list[str]]:
    """Read ``[[allow]]`` entries; every entry must carry a non-empty ``reason``.

    ``kind`` is ``"duplicate"`` (``symbol`` and optionally ``other``: the two sides of a
    cross-library duplicate, each ``module:qualname``) or ``"canonical"`` (``symbol``: a primitive
    defined outside its home). A missing file is an empty allowlist.
    """
    if not path.exists():
        return [], []
    data, errors = _read(path)
    entries: list[AllowEntry] = []
    for key in sorted(set(data) - {"allow"}):
        errors.append(f"{path}: unknown top-level key {key!r} (expected [[allow]] tables)")
    for i, entry in enumerate(data.get("allow", []), start=1):
        where = f"{path}: [[allow]] #{i}"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be a table")
            continue
        unknown = sorted(set(entry) - {"kind", "symbol", "other", "reason"})
        if unknown:
            errors.append(f"{where}: unknown key(s) {unknown}")
        raw_kind, symbol = entry.get("kind"), _text(entry, "symbol")
        other, reason = _text(entry, "other"), _text(entry, "reason")
        kind: AllowKind | None = (
            "duplicate" if raw_kind == "duplicate" else "canonical" if raw_kind == "canonical"
            else None
        )
        problems = []
        if kind is None:
            problems.append(f"'kind' must be \"duplicate\" or \"canonical\", got {raw_kind!r}")
        if symbol is None or not _SYMBOL.match(symbol):
            problems.append(f"'symbol' must be 'module:qualname', got {entry.get('symbol')!r}")
        if "other" in entry and (other is None or not _SYMBOL.match(other)):
            problems.append(f"'other' must be 'module:qualname', got {entry.get('other')!r}")
        if kind == "canonical" and "other" in entry:
            problems.append("'other' only applies to kind = \"duplicate\"")
        if reason is None:
            problems.append("'reason' is missing or empty: every allowlist entry needs a reason")
        if problems or kind is None or symbol is None or reason is None:
            errors.extend(f"{where} (symbol = {entry.get('symbol')!r}): {p}" for p in problems)
            continue
        entries.append(AllowEntry(i, kind, symbol, other, reason))
    return entries, errors
