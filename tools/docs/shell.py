"""Account for every shell block of the documentation: run it, name the test that runs it, or
say why it cannot run here.

Why: a command a page prints is a promise to the reader, like its Python. ``tools.docs.executed``
keeps the Python promises; this module keeps the shell ones, and makes a block nobody runs
visible instead of silently trusted. Every ```bash, ```console, ```shell and ```sh block of a
page is in exactly one of four states, chosen by an HTML comment on the line just before its
fence (no comment means *run*):

* **run** - the block runs in ``bash -e -o pipefail`` with a timeout, in one fresh temporary
  folder per page (``<!-- shell: cwd=repo -->`` runs it in the repository root instead, for
  commands the page says to type there). The blocks of a page run in order and share what a
  reader's terminal would carry over: the working directory and the exported variables. The
  workspace's ``.venv/bin`` is first on ``PATH`` (``mts`` and the library commands), ``HOME``
  is a folder inside the temporary one (so ``~/...`` writes stay there) and
  ``MTS_DATALAKE_ROOT`` points into it. A ```console block's commands are its ``$ `` lines
  (``> `` continues one); its other lines are the output shown. A ```bash block's output is
  the ```text block that follows it with nothing but blank lines between. Output shown is
  compared with stdout and stderr together after the one normalisation allowed: the absolute
  paths of the page's temporary folder and of the repository read ``.`` and ``HOME`` reads
  ``~``, ISO timestamps read ``<time>``, trailing whitespace and blank edges are dropped.
* **tested-by** - ``<!-- shell: tested-by PATH::TEST -->``: a named test already runs these
  commands verbatim (Tutorials 2 and 4 run on real servers there; running them twice would
  double the suite's slowest tests). :func:`check_tested_by` verifies that the file exists,
  defines the test, and either contains every command of the block or reads this very page's
  ```bash blocks (names the page's file and extracts ```bash fences).
* **run-by repocheck** - ``<!-- shell: run-by repocheck -->``: an install block that the wheel
  stage of ``python -m tools.repocheck`` (part of ``python3 dev.py test``) runs: it builds the
  wheelhouse as ``python3 dev.py wheels`` does (both run ``tools.repocheck.wheelhouse``) and runs
  every ``pip install --no-index --find-links dist ...`` of the docs in its own clean virtualenv.
  :func:`check_run_by_repocheck` verifies that each command of the block is one of those.
* **skip** - ``<!-- shell: skip - reason -->``: cannot run on this machine (no Docker engine,
  no Proxmox host, an install from an index). The reason is required; :func:`inventory` lists
  every skipped block so the count stays visible.

``python -m tools.docs.shell`` prints that inventory.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.docs.fences import fences

__all__ = ["REPO", "ShellBlock", "ShellError", "check_run_by_repocheck", "check_tested_by",
           "commands_of",
           "inventory", "parse_shell_blocks", "run_shell_page", "shell_pages"]

REPO = Path(__file__).resolve().parents[2]
SHELL_LANGS = frozenset({"bash", "console", "shell", "sh"})
_MARKER = re.compile(r"<!--\s*shell:\s*(.*?)\s*-->\s*$")
_SKIP = re.compile(r"skip\b\s*(?:[-:]\s*)?(.*)$", re.S)
_TESTED = re.compile(r"tested-by\s+(\S+?)(?:::(\w+))?$")
WHEELS = "python3 dev.py wheels"
_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
# the exported state a block hands to the next one: its variables and its folder
_TRAILER = '\n__mts_status=$?; export -p > "$__MTS_STATE"; pwd > "$__MTS_STATE.pwd"; ' \
           'exit $__mts_status\n'


class ShellError(AssertionError):
    """A shell block does not run as written, shows other output, or is wrongly accounted for."""


@dataclass(frozen=True)
class ShellBlock:
    """One shell block: its page, the line its fence opens on, its language and text, how it is
    accounted for (``run``, ``tested-by``, ``run-by`` or ``skip``), and the output the page
    shows."""

    page: Path
    line: int
    lang: str
    source: str
    mode: str
    detail: str = ""
    cwd_repo: bool = False
    expected: str | None = None

    @property
    def where(self) -> str:
        return f"{_rel(self.page)}:{self.line}"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _console_split(source: str) -> tuple[str, str]:
    """A console block's commands (its ``$ `` lines) and the output it shows (the rest)."""
    commands: list[str] = []
    output: list[str] = []
    for line in source.splitlines():
        continued = line.startswith("> ") and bool(commands) and commands[-1].endswith("\\")
        if line.startswith("$ ") or continued:
            commands.append(line[2:])
        else:
            output.append(line)
    return "\n".join(commands) + "\n", "\n".join(output)


def parse_shell_blocks(text: str, page: Path) -> list[ShellBlock]:
    """The shell blocks of one markdown page, each with its marker and its shown output."""
    blocks: list[ShellBlock] = []
    for fence in fences(text):
        lang = fence.lang
        if lang not in SHELL_LANGS:
            continue
        line = fence.line
        where = f"{_rel(page)}:{line}"
        marker = _MARKER.search(fence.before)
        mode, detail, cwd_repo = "run", "", False
        if marker:
            body = marker.group(1).strip()
            skip, tested = _SKIP.match(body), _TESTED.match(body)
            if skip:
                mode, detail = "skip", skip.group(1).strip()
                if not detail:
                    raise ShellError(f"{where}: a skipped block must say why "
                                     "(<!-- shell: skip - reason -->)")
            elif tested:
                if not tested.group(2):
                    raise ShellError(f"{where}: tested-by names PATH::TEST")
                mode, detail = "tested-by", f"{tested.group(1)}::{tested.group(2)}"
            elif body == "run-by repocheck":
                mode, detail = "run-by", "repocheck"
            elif body == "cwd=repo":
                cwd_repo = True
            else:
                raise ShellError(f"{where}: unknown shell marker {body!r}")
        source = fence.source
        expected: str | None = None
        if lang == "console":
            source, shown = _console_split(source)
            expected = shown if shown.strip() else None
        elif fence.shown_adjacent:
            expected = fence.shown
        blocks.append(ShellBlock(page, line, lang, source, mode, detail, cwd_repo, expected))
    return blocks


def shell_pages(docs: Path | None = None) -> list[Path]:
    """Every markdown page of the site (the tutorials are under ``docs/tutorials``)."""
    return sorted((docs or REPO / "docs").rglob("*.md"))


def commands_of(source: str) -> list[str]:
    """The commands of a block as a shell reads them: continuation lines joined, comments and
    blank lines dropped, runs of blanks made one."""
    joined = re.sub(r"\\\n\s*", " ", source)
    commands: list[str] = []
    for raw in joined.splitlines():
        text = re.sub(r"(?:^|\s)#.*$", "", raw)
        if text.strip():
            commands.append(" ".join(text.split()))
    return commands


def check_tested_by(block: ShellBlock, repo: Path = REPO) -> str:
    """Verify a ``tested-by`` block's test runs its commands; returns how it does."""
    path, _, test = block.detail.partition("::")
    test_file = repo / path
    if not test_file.is_file():
        raise ShellError(f"{block.where}: tested-by names {path}, which does not exist")
    code = test_file.read_text(encoding="utf-8")
    if not re.search(rf"^\s*(?:async\s+)?def {re.escape(test)}\(", code, re.M):
        raise ShellError(f"{block.where}: {path} defines no test {test}")
    flat = " ".join(code.split())
    missing = [c for c in commands_of(block.source) if c not in flat]
    if not missing:
        return "contains every command"
    parent, name = block.page.parent.name, block.page.name
    names_page = re.search(rf"""{re.escape(parent)}["']?\s*/\s*["']?{re.escape(name)}""", code)
    if names_page and "```bash" in code and block.lang == "bash":
        return f"reads the ```bash blocks of {parent}/{name}"
    raise ShellError(f"{block.where}: {path} neither reads {block.page.name}'s ```bash blocks "
                     f"nor contains: {missing[0]!r}")


def check_run_by_repocheck(block: ShellBlock, repo: Path = REPO) -> int:
    """Verify that repocheck's wheel stage runs every command of a ``run-by repocheck`` block;
    returns how many installs of the block it runs."""
    from tools.repocheck.docs import read_install_commands
    from tools.repocheck.manifest import load_manifest

    manifest, _ = load_manifest(repo)
    installs, _ = read_install_commands(repo, manifest.libraries)
    page = _rel(block.page)
    run = {" ".join(c.text.split()) for c in installs if c.file == page}
    dev = (repo / "dev.py").read_text(encoding="utf-8")
    found = 0
    for command in commands_of(block.source):
        if command == WHEELS and "tools.repocheck.wheelhouse" in dev:
            continue
        if command not in run:
            raise ShellError(f"{block.where}: repocheck does not run {command!r}")
        found += 1
    return found


def _normalise(text: str, paths: Mapping[str, str]) -> str:
    for path in sorted(paths, key=len, reverse=True):
        text = text.replace(path, paths[path])
    text = _TIME.sub("<time>", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def run_shell_page(page: Path, *, timeout: float = 120.0, env: Mapping[str, str] | None = None,
                   venv_bin: Path | None = None) -> list[tuple[ShellBlock, float]]:
    """Run the page's ``run`` blocks in order (one folder, one carried-over state); returns each
    block with its seconds. Raises :class:`ShellError` on a failing block or a wrong output."""
    blocks = [b for b in parse_shell_blocks(page.read_text(encoding="utf-8"), page)
              if b.mode == "run"]
    bin_dir = venv_bin or REPO / ".venv" / "bin"
    timings: list[tuple[ShellBlock, float]] = []
    with tempfile.TemporaryDirectory(prefix="mts-shell-") as tmp:
        work = Path(tmp).resolve()
        home = work / "home"
        home.mkdir()
        state = work / ".shell-state"
        state.write_text("", encoding="utf-8")
        base = {**os.environ, "HOME": str(home), "MTS_DATALAKE_ROOT": str(work / "datalake"),
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "VIRTUAL_ENV": str(bin_dir.parent), "__MTS_STATE": str(state),
                **(env or {})}
        base = {k: v for k, v in base.items() if not k.startswith("PYTEST")}
        cwd = work
        for block in blocks:
            here = REPO if block.cwd_repo else cwd
            script = f'. "$__MTS_STATE"\n{block.source}{_TRAILER}'
            started = time.monotonic()
            try:
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script],  # noqa: S603,S607
                                      cwd=here, env=base, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                      check=False)
            except subprocess.TimeoutExpired as exc:
                raise ShellError(f"{block.where}: did not finish within {timeout:g} s") from exc
            timings.append((block, time.monotonic() - started))
            if done.returncode != 0:
                raise ShellError(f"{block.where}: exited with {done.returncode}\n"
                                 f"{done.stdout[-3000:]}")
            pwd_file = Path(f"{state}.pwd")
            if not block.cwd_repo and pwd_file.is_file():
                cwd = Path(pwd_file.read_text(encoding="utf-8").strip() or cwd)
            if block.expected is not None:
                paths = {str(work): ".", str(REPO): ".", str(home): "~"}
                printed = _normalise(done.stdout, paths)
                shown = _normalise(block.expected, paths)
                if printed != shown:
                    raise ShellError(f"{block.where}: the page shows\n{shown}\n"
                                     f"but the block printed\n{printed or '(nothing)'}")
    return timings


def inventory(pages: Sequence[Path]) -> dict[str, list[ShellBlock]]:
    """Every shell block of ``pages`` by how it is accounted for: run, tested-by, run-by,
    skip."""
    found: dict[str, list[ShellBlock]] = {"run": [], "tested-by": [], "run-by": [],
                                          "skip": []}
    for page in pages:
        for block in parse_shell_blocks(page.read_text(encoding="utf-8"), page):
            found[block.mode].append(block)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Print each shell block of the site with how it is accounted for."""
    del argv
    found = inventory(shell_pages())
    for mode, blocks in found.items():
        for block in blocks:
            note = f"  {block.detail}" if block.detail else ""
            print(f"{mode:9} {block.where}{note}")  # noqa: T201 - the command's output
    print(" ".join(f"{mode}: {len(blocks)}" for mode, blocks in found.items()))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
