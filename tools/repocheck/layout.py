"""Where libraries and their sources live in the repository.

One definition of the layout, shared by ``tools.repocheck`` and ``tools.dedupe``: a library is a
top-level ``mts1b-*`` folder, and its importable code is every ``.py`` file under its ``src/``
(tests and benchmarks are not library code).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LIBRARY_GLOB = "mts1b-*"


@dataclass(frozen=True)
class SourceFile:
    """One ``.py`` file of a library: its folder name, dotted module name and path."""

    library: str
    module: str
    path: Path


def library_dirs(root: Path) -> list[Path]:
    """The ``mts1b-*`` folders directly under ``root``, sorted by name."""
    return sorted(p for p in root.glob(LIBRARY_GLOB) if p.is_dir())


def module_name(src: Path, path: Path) -> str:
    """Dotted module name of ``path`` relative to the ``src`` folder (``__init__`` dropped)."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(library_dir: Path) -> Iterator[SourceFile]:
    """Every ``.py`` file under ``<library_dir>/src``, in a stable order."""
    src = library_dir / "src"
    for path in sorted(src.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        yield SourceFile(library_dir.name, module_name(src, path), path)
