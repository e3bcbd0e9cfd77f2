"""``python -m tools.dedupe``: exit 0 with a one-line summary, or 1 with one line per finding."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.dedupe.lists import DEFAULT_ALLOWLIST, DEFAULT_CANONICAL
from tools.dedupe.scan import DEFAULT_MIN_NODES, scan

ROOT = Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.dedupe",
        description="Find code duplicated across mts1b-* libraries and canonical primitives "
        "defined outside their home.",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: %(default)s)"
    )
    parser.add_argument("--canonical", type=Path, default=DEFAULT_CANONICAL)
    parser.add_argument("--allowlist", type=Path, default=DEFAULT_ALLOWLIST)
    parser.add_argument(
        "--min-nodes", type=int, default=DEFAULT_MIN_NODES,
        help="smallest definition, in AST nodes, compared for duplicates (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    report = scan(
        args.root.resolve(), canonical=args.canonical, allowlist=args.allowlist,
        min_nodes=args.min_nodes,
    )
    for finding in report.findings:
        sys.stdout.write(finding.render() + "\n")
    sys.stdout.write(report.summary() + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
