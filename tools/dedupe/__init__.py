"""AST duplicate scanner: ``python -m tools.dedupe`` (see tools/README.md)."""

from tools.dedupe.lists import (
    DEFAULT_ALLOWLIST,
    DEFAULT_CANONICAL,
    AllowEntry,
    Primitive,
    load_allowlist,
    load_canonical,
)
from tools.dedupe.normalise import Fingerprint, fingerprint
from tools.dedupe.scan import DEFAULT_MIN_NODES, Definition, Finding, Report, scan

__all__ = [
    "DEFAULT_ALLOWLIST",
    "DEFAULT_CANONICAL",
    "DEFAULT_MIN_NODES",
    "AllowEntry",
    "Definition",
    "Finding",
    "Fingerprint",
    "Primitive",
    "Report",
    "fingerprint",
    "load_allowlist",
    "load_canonical",
    "scan",
]
