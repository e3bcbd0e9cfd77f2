"""Run a documentation page's Python and compare what it prints with what the page shows.

Why: a tutorial whose code no longer runs, or whose shown output is no longer what the code
prints, misleads every reader who follows it. ``run_page`` executes the page the way a reader
would: every ```python block in order, in ONE fresh interpreter (one namespace, so a later
block sees an earlier block's names), with a temporary folder as the working directory and a
wall-clock timeout. Each ```text block that follows a python block (with no other fenced
block between them; prose may stand between) is the output that python block must print,
compared exactly after stripping trailing whitespace from every line and trailing blank lines.
A python block that prints something while the page shows no output for it is an error too:
the page would hide what the reader sees.

A block is left out only with an explicit reason, in an HTML comment on the line just before
its fence: ``<!-- executed: skip - why it cannot run here -->``. A skip without a reason is
an error.

``python -m tools.docs.executed PAGE...`` runs pages from the command line (exit 1 on a
failure); the tests call :func:`run_page`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.docs.fences import fences

__all__ = ["Block", "PageError", "PageRun", "parse_page", "run_page"]

_SKIP = re.compile(r"<!--\s*executed:\s*skip\b\s*(?:[-:]\s*)?(.*?)\s*-->\s*$")

# The child: runs each block in one namespace, capturing its stdout, and writes one JSON record
# per block; it stops at the first block that raises.
_DRIVER = r"""
import contextlib, io, json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
results = []
scope = {"__name__": "__main__"}
for index, source in blocks:
    buffer = io.StringIO()
    error = None
    try:
        with contextlib.redirect_stdout(buffer):
            exec(compile(source, f"<block {index}>", "exec"), scope)
    except BaseException:
        error = traceback.format_exc(limit=-3)
    results.append({"index": index, "stdout": buffer.getvalue(), "error": error})
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(results, out)
    if error is not None:
        break
"""


class PageError(AssertionError):
    """The page does not run as written, or prints something other than what it shows."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, its text, the line its fence opens on, the
    shown output that follows it (python blocks only), and a skip reason if the page gives one."""

    lang: str
    source: str
    line: int
    expected: str | None = None
    skip: str | None = None


@dataclass(frozen=True)
class PageRun:
    """What running a page did: the python blocks run (and skipped), and each block's output."""

    page: Path
    ran: int
    skipped: int
    outputs: tuple[str, ...]


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n").strip("\n")


def parse_page(text: str) -> list[Block]:
    """The python blocks of a markdown page, each with the ```text block that follows it."""
    blocks: list[Block] = []
    for fence in fences(text):
        if fence.lang != "python":
            continue
        line = fence.line
        skip: str | None = None
        marker = _SKIP.search(fence.before)
        if marker:
            skip = marker.group(1).strip()
            if not skip:
                raise PageError(f"line {line}: a skipped block must say why "
                                "(<!-- executed: skip - reason -->)")
        expected = fence.shown
        blocks.append(Block("python", fence.source, line, expected, skip))
    return blocks


def run_page(page: Path | str, *, timeout: float = 120.0,
             env: Mapping[str, str] | None = None, python: str = sys.executable) -> PageRun:
    """Run every python block of ``page`` in order in one fresh subprocess and compare outputs.

    ``env`` is added to this process's environment for the child (a test points the datalake at
    a shared store this way). Raises :class:`PageError` naming the block's line on the first
    failure: an exception, a timeout, a wrong or missing output, or unshown output.
    """
    path = Path(page)
    blocks = parse_page(path.read_text(encoding="utf-8"))
    runnable = [b for b in blocks if b.skip is None]
    if not runnable:
        raise PageError(f"{path}: no python block to run")
    child_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryDirectory(prefix="mts-page-") as work:
        source_file = Path(work, ".blocks.json")
        result_file = Path(work, ".results.json")
        source_file.write_text(json.dumps([[i, b.source] for i, b in enumerate(runnable)]),
                               encoding="utf-8")
        try:
            argv = [python, "-c", _DRIVER, str(source_file), str(result_file)]
            done = subprocess.run(argv, cwd=work,  # noqa: S603 - our interpreter, our driver
                                  env=child_env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PageError(f"{path}: did not finish within {timeout:g} s") from exc
        results = (json.loads(result_file.read_text(encoding="utf-8"))
                   if result_file.exists() else [])
    if done.returncode != 0 or len(results) == 0:
        raise PageError(f"{path}: the interpreter exited with {done.returncode}\n"
                        f"{done.stderr[-2000:]}")
    outputs: list[str] = []
    for block, result in zip(runnable, results, strict=False):
        where = f"{path.name}, the python block at line {block.line}"
        if result["error"] is not None:
            raise PageError(f"{where} raised:\n{result['error']}")
        printed = _normalise(result["stdout"])
        outputs.append(printed)
        if block.expected is None:
            if printed:
                raise PageError(f"{where} prints output the page does not show:\n{printed}")
            continue
        shown = _normalise(block.expected)
        if printed != shown:
            raise PageError(f"{where}: the page shows\n{shown}\nbut the block printed\n"
                            f"{printed or '(nothing)'}")
    return PageRun(path, len(runnable), len(blocks) - len(runnable), tuple(outputs))


def main(argv: Sequence[str] | None = None) -> int:
    """Run each page given; print one line per page; 1 if any failed."""
    failed = 0
    for name in argv if argv is not None else sys.argv[1:]:
        try:
            run = run_page(name)
        except PageError as exc:
            failed += 1
            sys.stdout.write(f"FAIL {name}: {exc}\n")
        else:
            sys.stdout.write(f"ok   {name}: {run.ran} blocks ran, {run.skipped} skipped\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
