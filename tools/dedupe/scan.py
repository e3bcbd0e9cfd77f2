"""The duplicate scan: collect definitions, compare them, apply the canonical list and allowlist.

Scope: every ``.py`` file under ``mts1b-*/src`` (see ``tools.repocheck.layout``); tests and
benchmarks are not scanned. Two kinds of finding:

``duplicate``
    a function or class whose normalised AST (``tools.dedupe.normalise``) equals one in another
    library, for definitions of at least ``min_nodes`` nodes. Duplicates inside one library are
    not reported. When two classes match, their matching methods are not reported again.
``canonical``
    a module-level or nested function or class (not a method) whose name is one of a primitive's
    names or aliases, defined outside that primitive's home module. A definition that delegates
    (uses the primitive imported from its home, as in a cached accessor or a thin adapter) is
    not a second implementation and is not reported.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from tools.dedupe.lists import (
    DEFAULT_ALLOWLIST,
    DEFAULT_CANONICAL,
    AllowEntry,
    Primitive,
    load_allowlist,
    load_canonical,
    name_key,
)
from tools.dedupe.normalise import fingerprint
from tools.repocheck.layout import library_dirs, source_files

DEFAULT_MIN_NODES = 25


@dataclass(frozen=True)
class Definition:
    """One function or class definition found in a library's sources."""

    library: str
    module: str
    qualname: str
    path: str
    line: int
    is_method: bool
    parent: str | None
    digest: str
    size: int
    refs: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    @property
    def symbol(self) -> str:
        return f"{self.module}:{self.qualname}"

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Finding:
    """A problem: ``where ~ other  [kind] reason`` (``other`` is empty for list errors)."""

    kind: str
    where: str
    other: str
    reason: str

    def render(self) -> str:
        pair = f"{self.where} ~ {self.other}" if self.other else self.where
        return f"{pair}  [{self.kind}] {self.reason}"


@dataclass
class Report:
    """Everything one scan found, plus the counts for the summary line."""

    findings: list[Finding] = field(default_factory=list)
    definitions: int = 0
    libraries: int = 0
    primitives: int = 0
    allowed: int = 0
    min_nodes: int = DEFAULT_MIN_NODES

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        state = "ok" if self.ok else f"{len(self.findings)} problem(s)"
        return (
            f"dedupe: {state} - {self.definitions} definitions in {self.libraries} libraries, "
            f"{self.primitives} canonical primitives, duplicates compared from "
            f"{self.min_nodes} AST nodes, {self.allowed} allowlisted"
        )


def _imports(tree: ast.AST, package: str) -> dict[str, str]:
    """Local name -> the dotted name it is bound to, for every import in a module (any depth).

    ``package`` is the module's package, to resolve relative imports.
    """
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                bound[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            parts = parts[: len(parts) - node.level + 1] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    return bound


def _references(node: ast.AST, bound: dict[str, str]) -> frozenset[str]:
    """Dotted names of the imported objects a definition uses (``np.linalg.inv`` ->
    ``numpy.linalg.inv``)."""
    refs: set[str] = set()
    for sub in ast.walk(node):
        chain: list[str] = []
        while isinstance(sub, ast.Attribute):
            chain.append(sub.attr)
            sub = sub.value
        if isinstance(sub, ast.Name) and sub.id in bound:
            refs.add(".".join([bound[sub.id], *reversed(chain)]))
    return frozenset(refs)


def _definitions(
    tree: ast.AST, *, library: str, module: str, path: str, is_package: bool
) -> Iterator[Definition]:
    bound = _imports(tree, module if is_package else module.rpartition(".")[0])

    def walk(node: ast.AST, prefix: str, parent: str | None, in_class: bool) -> Iterator[
        Definition
    ]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualname = f"{prefix}{child.name}"
                fp = fingerprint(child)
                definition = Definition(
                    library, module, qualname, path, child.lineno, in_class, parent,
                    fp.digest, fp.size, _references(child, bound),
                )
                yield definition
                yield from walk(
                    child, qualname + ".", definition.symbol, isinstance(child, ast.ClassDef)
                )
            else:
                yield from walk(child, prefix, parent, in_class)

    yield from walk(tree, "", None, False)


def collect(root: Path) -> tuple[list[Definition], list[Finding], int]:
    """Every definition under ``root``'s libraries, parse errors, and the number of libraries."""
    definitions: list[Definition] = []
    errors: list[Finding] = []
    libraries = library_dirs(root)
    for lib in libraries:
        for source in source_files(lib):
            rel = source.path.relative_to(root).as_posix()
            try:
                tree = ast.parse(source.path.read_text(encoding="utf-8"), filename=rel)
            except (SyntaxError, UnicodeDecodeError) as exc:
                errors.append(Finding("parse", rel, "", f"cannot parse: {exc}"))
                continue
            definitions.extend(
                _definitions(tree, library=lib.name, module=source.module, path=rel,
                             is_package=source.path.name == "__init__.py")
            )
    return definitions, errors, len(libraries)


def duplicate_pairs(
    definitions: Sequence[Definition], min_nodes: int
) -> list[tuple[Definition, Definition]]:
    """Cross-library pairs with equal fingerprints, outermost matches only."""
    groups: dict[str, list[Definition]] = defaultdict(list)
    for d in definitions:
        if d.size >= min_nodes:
            groups[d.digest].append(d)
    pairs = [
        (a, b)
        for group in groups.values()
        for a, b in combinations(sorted(group, key=lambda d: (d.path, d.line)), 2)
        if a.library != b.library
    ]
    matched = {frozenset((a.symbol, b.symbol)) for a, b in pairs}
    return [
        (a, b)
        for a, b in pairs
        if not (a.parent and b.parent and frozenset((a.parent, b.parent)) in matched)
    ]


def _delegates(d: Definition, primitive: Primitive) -> bool:
    """Whether ``d`` uses the primitive itself, imported from its home."""
    return any(
        primitive.is_home(ref.rpartition(".")[0]) and name_key(ref.rpartition(".")[2])
        in primitive.keys
        for ref in d.refs
    )


def canonical_violations(
    definitions: Sequence[Definition], primitives: Iterable[Primitive]
) -> list[tuple[Definition, Primitive, Definition | None]]:
    """Definitions of a primitive outside its home, each with the home's definition if any."""
    by_key = {key: p for p in primitives for key in p.keys}
    homes: dict[str, Definition] = {}
    candidates: list[tuple[Definition, Primitive]] = []
    for d in definitions:
        primitive = by_key.get(name_key(d.name))
        if primitive is None or d.is_method or _delegates(d, primitive):
            continue
        if primitive.is_home(d.module):
            homes.setdefault(primitive.name, d)
        else:
            candidates.append((d, primitive))
    return [(d, primitive, homes.get(primitive.name)) for d, primitive in candidates]


def _allowed(entry: AllowEntry, finding_kind: str, a: Definition, b: Definition | None) -> bool:
    if entry.kind != finding_kind:
        return False
    if finding_kind == "canonical":
        return entry.symbol == a.symbol
    sides = {a.symbol, b.symbol} if b is not None else {a.symbol}
    if entry.symbol not in sides:
        return False
    return entry.other is None or (entry.other in sides and entry.other != entry.symbol)


def scan(
    root: Path,
    *,
    canonical: Path = DEFAULT_CANONICAL,
    allowlist: Path = DEFAULT_ALLOWLIST,
    min_nodes: int = DEFAULT_MIN_NODES,
) -> Report:
    """Scan the libraries under ``root`` and return every finding (empty when clean)."""
    primitives, canonical_errors = load_canonical(canonical)
    allow, allow_errors = load_allowlist(allowlist)
    definitions, parse_errors, libraries = collect(root)
    report = Report(
        definitions=len(definitions), libraries=libraries, primitives=len(primitives),
        min_nodes=min_nodes,
    )
    report.findings += [Finding("canonical-list", e, "", "") for e in canonical_errors]
    report.findings += [Finding("allowlist", e, "", "") for e in allow_errors]
    report.findings += parse_errors
    used: set[int] = set()

    def allowed(kind: str, a: Definition, b: Definition | None) -> bool:
        hits = [e.index for e in allow if _allowed(e, kind, a, b)]
        used.update(hits)
        return bool(hits)

    for a, b in duplicate_pairs(definitions, min_nodes):
        if allowed("duplicate", a, b):
            report.allowed += 1
            continue
        report.findings.append(Finding(
            "duplicate", a.location, b.location,
            f"{a.symbol} and {b.symbol} have the same normalised AST ({a.size} nodes) in two "
            f"libraries ({a.library}, {b.library}): keep one and import it",
        ))
    for d, primitive, home in canonical_violations(definitions, primitives):
        if allowed("canonical", d, None):
            report.allowed += 1
            continue
        report.findings.append(Finding(
            "canonical", d.location, home.location if home else f"{primitive.home} (home)",
            f"{d.symbol} defines the primitive {primitive.name!r} outside its home "
            f"{primitive.home}: import it from there",
        ))
    for entry in allow:
        if entry.index not in used:
            report.findings.append(Finding(
                "allowlist", f"{allowlist}: {entry.label()}", "",
                "matches no finding any more: remove the entry",
            ))
    return report
