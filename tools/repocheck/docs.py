"""The install and test commands the documentation gives, read from the documentation itself.

repocheck runs exactly what the READMEs and CONTRIBUTING.md tell a user to type, so the commands
are parsed out of those files rather than copied into the checker (a copy would pass while the
page drifts). Two kinds are read:

- **install commands**: every ``pip install`` in the fenced blocks of ``README.md``, each
  library's README and the docs site's pages (``docs/**/*.md``). One that names an ``mts1b-*``
  distribution must take it from the local wheelhouse only: ``pip install --no-index
  --find-links dist <distribution>...`` (after ``python3 dev.py wheels``). No ``mts1b-*`` name is
  registered on PyPI, so any command that lets pip look a sibling up on an index would install
  whoever registers the name first. An inline ``pip install`` in the prose of those files (a
  quoted message, a hint) is held to the same form when it names an ``mts1b-*`` distribution,
  but is not run.
- **test routes**: fenced blocks of CONTRIBUTING.md preceded by ``<!-- repocheck: every-python
  -->`` (run on every Python found) or ``<!-- repocheck: collect -->`` (installed and collected on
  the running Python). A route starts with ``cd mts1b-<name>``, installs with ``pip install``
  taking every sibling from its folder (``-e ../mts1b-foundation``) and ends with ``pytest``.

The static checks here only read files; ``tools.repocheck.commands`` runs what they return.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tools.repocheck.manifest import Library, Problem, closure
from tools.repocheck.wheelhouse import SKIPPED_EXTRAS

if TYPE_CHECKING:
    from tools.repocheck.static import Pyproject

CONTRIBUTING = "CONTRIBUTING.md"
README = "README.md"
DOCS = "docs"
WHEELHOUSE = "dist"
WHEELS_COMMAND = "python3 dev.py wheels"
# The libraries whose own-folder tests run on every Python found but the running one, where they
# are installed and collected like the others' (`python3 dev.py test` runs all of their tests).
EVERY_PYTHON_LIBRARIES = ("foundation", "quantkit", "platform")
MODES = ("every-python", "collect")

MARKER = re.compile(r"^<!--\s*repocheck:\s*(?P<mode>[\w-]+)\s*-->\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Command:
    """One documented command line: where it is written and its words as a shell splits them."""

    file: str
    line: int
    text: str
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class InstallCommand(Command):
    """A README's ``pip install --no-index --find-links dist ...`` and the requirements it names."""

    requirements: tuple[Requirement, ...] = ()


@dataclass(frozen=True)
class TestRoute:
    """A CONTRIBUTING.md block: run a library's tests from its folder in a fresh virtualenv."""

    file: str
    line: int
    library: str
    mode: str
    commands: tuple[Command, ...]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def label(self) -> str:
        """The library, plus ``(core)`` when the route installs its folder without extras."""
        own = [word for command in self.commands if command.argv[:2] == ("pip", "install")
               for word in command.argv[2:] if word == "." or word.startswith(".[")]
        return f"{self.library} (core)" if own and all("[" not in w for w in own) \
            else self.library


def _split(text: str) -> tuple[str, ...] | None:
    try:
        return tuple(shlex.split(text, comments=True))
    except ValueError:
        return None


def _fenced_lines(text: str) -> Iterator[tuple[int, str, int | None]]:
    """(line number, line, number of the fence that opened the block or None outside one)."""
    opened: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            opened = number if opened is None else None
            continue
        yield number, line, opened


def _joined(lines: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """Shell continuation lines (ending in a backslash) joined, numbered by their first line."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in lines:
        start, text = pending if pending else (number, "")
        text += line.rstrip()
        if text.endswith("\\"):
            pending = (start, text[:-1] + " ")
            continue
        pending = None
        joined.append((start, text))
    if pending:
        joined.append(pending)
    return joined


def _pip_installs(file: str, text: str) -> Iterator[Command]:
    """Every ``pip install`` line of the fenced blocks of ``text``.

    Inline code in prose is not read: it often quotes a message (``init_telemetry`` naming the
    extra to install) rather than telling the reader what to type.
    """
    fenced = [(number, line) for number, line, opened in _fenced_lines(text)
              if opened is not None]
    for number, line in _joined(fenced):
        stripped = line.strip().removeprefix("$ ")
        if stripped.startswith("pip install") or " pip install " in f" {stripped}":
            command = stripped[stripped.index("pip install"):]
            argv = _split(command) or ()
            shown = command.split(" #")[0].strip()
            yield Command(file, number, shown, argv)


def _inline_pip_installs(file: str, text: str) -> Iterator[Command]:
    """Every inline code span of the prose of ``text`` that is a ``pip install`` (a span may run
    over the lines of its paragraph), numbered by the line it starts on."""
    paragraph: list[tuple[int, str]] = []
    outside = [(number, line) for number, line, opened in _fenced_lines(text) if opened is None]
    for number, line in [*outside, (0, "")]:
        if line.strip() and (not paragraph or number == paragraph[-1][0] + 1):
            paragraph.append((number, line))
            continue
        joined = " ".join(part.strip() for _, part in paragraph)
        starts = [0]
        for _, part in paragraph:
            starts.append(starts[-1] + len(part.strip()) + 1)
        for match in INLINE_CODE.finditer(joined):
            span = match.group(1).strip()
            if span.startswith("pip install "):
                index = max(i for i, start in enumerate(starts[:-1]) if start <= match.start())
                yield Command(file, paragraph[index][0], span, _split(span) or ())
        paragraph = [(number, line)] if line.strip() else []


def _names_mts1b(argv: Sequence[str]) -> bool:
    return any("mts1b" in word.lower() for word in argv[2:] if not word.startswith("--"))


def read_install_commands(
    root: Path, libraries: Sequence[Library],
    pyprojects: Mapping[str, Pyproject | None] | None = None,
) -> tuple[list[InstallCommand], list[Problem]]:
    """The wheelhouse installs of the root README, each library's README and the docs pages,
    and what is wrong.

    Every ``pip install`` naming an ``mts1b-*`` distribution must be
    ``pip install --no-index --find-links dist <requirement>...`` with requirements that name
    libraries of the manifest, inline ones in prose included (those are not returned: they
    are not run); each library's README shows the plain install of its own distribution; a
    file that shows a wheelhouse install in a fenced block also says ``python3 dev.py wheels``.
    A third-party install in a library's README or docs page (``docs/libraries/<name>.md``;
    cupy for the ``gpu`` extra) must name a requirement of one of its extras exactly, so the
    bounds live in pyproject.toml only.
    """
    by_dist = {str(canonicalize_name(lib.distribution)): lib for lib in libraries}
    by_name = {lib.name: lib for lib in libraries}
    files = [(README, root / README, None)] + [
        (f"{lib.path}/{README}", root / lib.path / README, lib) for lib in libraries
    ] + [
        (page.relative_to(root).as_posix(), page,
         by_name.get(page.stem) if page.parent.name == "libraries" else None)
        for page in sorted((root / DOCS).rglob("*.md"))
    ]
    commands: list[InstallCommand] = []
    problems: list[Problem] = []
    for name, path, owner in files:
        if not path.is_file():
            continue  # a library without README is reported by the layout check
        text = path.read_text(encoding="utf-8")
        found = 0
        for command in _pip_installs(name, text):
            if not command.argv:
                problems.append(Problem(command.where, f"cannot split `{command.text}` as a "
                                                       "shell would"))
                continue
            if not _names_mts1b(command.argv):
                pyproject = (pyprojects or {}).get(owner.name) if owner else None
                if pyproject is not None:
                    problems += _check_third_party(command, owner, pyproject)
                continue
            parsed, why = _parse_wheelhouse_install(command.argv, by_dist)
            if why:
                problems.append(Problem(command.where, f"`{command.text}` {why}: show `pip "
                                                       f"install --no-index --find-links "
                                                       f"{WHEELHOUSE} <distribution>` (after "
                                                       f"`{WHEELS_COMMAND}`)"))
                continue
            found += 1
            commands.append(InstallCommand(command.file, command.line, command.text,
                                           command.argv, tuple(parsed)))
        for command in _inline_pip_installs(name, text):
            if command.argv and _names_mts1b(command.argv):
                _, why = _parse_wheelhouse_install(command.argv, by_dist)
                if why:
                    problems.append(Problem(command.where, f"`{command.text}` {why}: show `pip "
                                                           "install --no-index --find-links "
                                                           f"{WHEELHOUSE} <distribution>`, or "
                                                           "name the third-party requirements "
                                                           "an extra adds"))
        if found and WHEELS_COMMAND not in text:
            problems.append(Problem(name, f"shows `pip install --no-index --find-links "
                                          f"{WHEELHOUSE}` but not how dist/ is made "
                                          f"(`{WHEELS_COMMAND}`)"))
    for lib in libraries:
        readme = f"{lib.path}/{README}"
        if not (root / readme).is_file():
            continue
        if not any(c.file == readme and base_install_of(c) == lib.distribution
                   for c in commands):
            problems.append(Problem(readme, f"does not show the install of {lib.distribution} "
                                            f"(`pip install --no-index --find-links "
                                            f"{WHEELHOUSE} {lib.distribution}`)"))
    if not any(c.file == README for c in commands) and (root / README).is_file():
        problems.append(Problem(README, f"shows no install from the wheelhouse (`pip install "
                                        f"--no-index --find-links {WHEELHOUSE} mts1b-<name>`)"))
    return commands, problems


def _check_third_party(command: Command, lib: Library | None, pyproject: Pyproject
                       ) -> list[Problem]:
    """The words of a third-party ``pip install`` are requirements of the library's extras."""
    declared = {str(r) for r in pyproject.optional}
    problems = []
    for word in command.argv[2:]:
        if word.startswith("-"):
            continue
        try:
            req = Requirement(word)
        except InvalidRequirement:
            problems.append(Problem(command.where, f"{word!r} in `{command.text}` is not a "
                                                   "requirement"))
            continue
        if str(req) not in declared and lib is not None:
            problems.append(Problem(command.where, f"{word!r} in `{command.text}` is not a "
                                                   "requirement of any extra in [project."
                                                   f"optional-dependencies] of {lib.path}/"
                                                   "pyproject.toml: keep the bounds there"))
    return problems


def base_install_of(command: InstallCommand) -> str | None:
    """The distribution a command installs when it is the plain install of one library."""
    if len(command.requirements) != 1:
        return None
    req = command.requirements[0]
    if req.extras or req.specifier or req.marker or req.url:
        return None
    return req.name


def _parse_wheelhouse_install(
    argv: Sequence[str], by_dist: Mapping[str, Library]
) -> tuple[list[Requirement], str | None]:
    prefix = ("pip", "install", "--no-index", "--find-links", WHEELHOUSE)
    if tuple(argv[:5]) != prefix:
        return [], "may take an mts1b-* distribution from an index or a source folder"
    words = argv[5:]
    if not words:
        return [], "names no distribution"
    parsed: list[Requirement] = []
    for word in words:
        if word.startswith("-"):
            return [], f"adds the option {word!r}"
        try:
            req = Requirement(word)
        except InvalidRequirement:
            return [], f"names {word!r}, which is not a requirement"
        if req.url:
            return [], f"names the URL {req.url!r}"
        name = canonicalize_name(req.name)
        if name not in by_dist:
            return [], f"names {req.name!r}, which is not a library of repos.yaml"
        skipped = sorted(set(req.extras) & set(SKIPPED_EXTRAS))
        if skipped:
            return [], (f"asks for the extra(s) {skipped} of {req.name}, whose dependencies the "
                        "wheelhouse leaves out")
        req.name = by_dist[name].distribution
        parsed.append(req)
    return parsed, None


def read_test_routes(root: Path) -> tuple[list[TestRoute], list[Problem]]:
    """The marked blocks of CONTRIBUTING.md, with each block's lines split as a shell would."""
    path = root / CONTRIBUTING
    if not path.is_file():
        return [], [Problem(CONTRIBUTING, "file not found (it gives each library's test "
                                          "command)")]
    routes: list[TestRoute] = []
    problems: list[Problem] = []
    mode: tuple[int, str] | None = None
    block: list[tuple[int, str]] = []
    opened: int | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if opened is None:
            marker = MARKER.match(line.strip())
            if marker:
                if marker.group("mode") not in MODES:
                    problems.append(Problem(f"{CONTRIBUTING}:{number}", f"unknown repocheck "
                                            f"marker {marker.group('mode')!r} (one of {MODES})"))
                mode = (number, marker.group("mode"))
            elif FENCE.match(line):
                opened, block = number, []
            elif line.strip() and mode:
                problems.append(Problem(f"{CONTRIBUTING}:{mode[0]}", "a repocheck marker must be "
                                        "followed by a fenced block"))
                mode = None
            continue
        if not FENCE.match(line):
            block.append((number, line))
            continue
        if mode and mode[1] in MODES:
            route, found = _route(opened, mode[1], block)
            problems += found
            if route:
                routes.append(route)
        opened, mode = None, None
    return routes, problems


def _route(
    opened: int, mode: str, block: Sequence[tuple[int, str]]
) -> tuple[TestRoute | None, list[Problem]]:
    commands: list[Command] = []
    for number, text in _joined(block):
        if not text.strip() or text.strip().startswith("#"):
            continue
        argv = _split(text)
        if not argv:
            return None, [Problem(f"{CONTRIBUTING}:{number}", f"cannot split `{text.strip()}` "
                                                              "as a shell would")]
        commands.append(Command(CONTRIBUTING, number, text.strip(), argv))
    where = f"{CONTRIBUTING}:{opened}"
    if not commands or len(commands[0].argv) != 2 or commands[0].argv[0] != "cd" \
            or not commands[0].argv[1].startswith("mts1b-"):
        return None, [Problem(where, "a test route starts with `cd mts1b-<name>`")]
    library = commands[0].argv[1].removeprefix("mts1b-").rstrip("/")
    return TestRoute(CONTRIBUTING, opened, library, mode, tuple(commands)), []


def check_routes(
    root: Path,
    routes: Sequence[TestRoute],
    libraries: Sequence[Library],
    pyprojects: Mapping[str, Pyproject | None],
) -> list[Problem]:
    """Each route installs its siblings from their folders, its test tools from its own dev
    extra, and ends with pytest; the selections it names exist; every library has a route."""
    by_name = {lib.name: lib for lib in libraries}
    by_path = {lib.path: lib for lib in libraries}
    problems: list[Problem] = []
    for route in routes:
        lib = by_name.get(route.library)
        if lib is None:
            problems.append(Problem(route.where, f"`cd mts1b-{route.library}`: no library "
                                                 f"{route.library!r} in repos.yaml"))
            continue
        folder = root / lib.path
        installs = [c for c in route.commands[1:] if c.argv[:2] == ("pip", "install")]
        if not installs:
            problems.append(Problem(route.where, f"the {route.library} route installs nothing "
                                                 "(`pip install ...`)"))
        local: set[str] = set()
        for command in installs:
            local |= _check_install_words(command, folder, root, lib, by_path,
                                          pyprojects.get(lib.name), problems)
        needed = {lib.name, *(d.name for d in closure(lib, by_name))}
        for missing in sorted(needed - local):
            path = "." if missing == lib.name else f"../{by_name[missing].path}"
            problems.append(Problem(route.where, f"the {route.library} route does not install "
                                                 f"{by_name[missing].distribution} from its "
                                                 f"folder (add `-e {path}`): pip would look it "
                                                 "up on an index"))
        last = route.commands[-1]
        if last.argv[0] != "pytest":
            problems.append(Problem(last.where, f"a test route ends with `pytest ...`, not "
                                                f"`{last.text}`"))
        else:
            problems += _check_selection(last, folder)
    for name in EVERY_PYTHON_LIBRARIES:
        if name in by_name and not any(r.library == name and r.mode == "every-python"
                                       for r in routes):
            problems.append(Problem(CONTRIBUTING, f"no `<!-- repocheck: every-python -->` route "
                                                  f"for {name} (its tests run on every Python)"))
    for lib in libraries:
        if not any(r.library == lib.name for r in routes):
            problems.append(Problem(CONTRIBUTING, f"no test route for {lib.name} "
                                                  f"(`cd {lib.path}`, `pip install ...`, "
                                                  "`pytest`)"))
    return problems


def _check_install_words(
    command: Command,
    folder: Path,
    root: Path,
    lib: Library,
    by_path: Mapping[str, Library],
    pyproject: Pyproject | None,
    problems: list[Problem],
) -> set[str]:
    """The libraries this ``pip install`` takes from folders; problems for the other words."""
    local: set[str] = set()
    dev = {str(r) for r in (pyproject.extras.get("dev", ()) if pyproject else ())}
    for word in command.argv[2:]:
        if word == "-e" or word == "--editable":
            continue
        if word.startswith("-"):
            problems.append(Problem(command.where, f"option {word!r}: a test route installs "
                                                   "folders and requirements only"))
            continue
        if word.startswith((".", "/")):
            target, _, extras = word.partition("[")
            resolved = (folder / target).resolve()
            owner = next((other for path, other in by_path.items()
                          if (root / path).resolve() == resolved), None)
            if owner is None:
                problems.append(Problem(command.where, f"{word!r} is not a library folder"))
                continue
            if extras and owner.name != lib.name:
                problems.append(Problem(command.where, f"{word!r}: extras of a sibling come "
                                                       "through the library's own dev extra"))
            local.add(owner.name)
            continue
        try:
            req = Requirement(word)
        except InvalidRequirement:
            problems.append(Problem(command.where, f"{word!r} is neither a folder nor a "
                                                   "requirement"))
            continue
        if canonicalize_name(req.name).startswith("mts1b-"):
            problems.append(Problem(command.where, f"{word!r} would come from an index: "
                                                   "install the sibling from its folder "
                                                   f"(-e ../{req.name})"))
        elif str(req) not in dev:
            problems.append(Problem(command.where, f"{word!r} is not in [project.optional-"
                                                   f"dependencies] dev of {lib.path}/"
                                                   "pyproject.toml: test tools have one home"))
    return local


def _check_selection(command: Command, folder: Path) -> list[Problem]:
    """The test files, ``--ignore`` and ``--deselect`` name files and tests that exist: pytest
    accepts a stale ``--ignore`` or ``--deselect`` silently, and the route would then run more or
    fewer tests than CONTRIBUTING says."""
    problems: list[Problem] = []
    words = list(command.argv[1:])
    for i, word in enumerate(words):
        takes_value = i > 0 and words[i - 1] in ("-m", "-k", "-p", "-c", "--ignore",
                                                 "--deselect", "--rootdir", "-o")
        if not word.startswith("-") and not takes_value and "/" in word:
            file = word.split("::")[0]
            if not (folder / file).exists():
                problems.append(Problem(command.where, f"test path {word!r}: {file} does not "
                                                       f"exist in {folder.name}/"))
        for option in ("--ignore", "--deselect"):
            if word == option and i + 1 < len(words):
                value = words[i + 1]
            elif word.startswith(option + "="):
                value = word.split("=", 1)[1]
            else:
                continue
            file, _, node = value.partition("::")
            path = folder / file
            if not path.exists():
                problems.append(Problem(command.where, f"{option} {value!r}: {file} does not "
                                                       f"exist in {folder.name}/"))
            elif node:
                name = node.split("::")[-1].split("[")[0]
                if not re.search(rf"^\s*(async\s+)?(def|class)\s+{re.escape(name)}\b",
                                 path.read_text(encoding="utf-8"), re.MULTILINE):
                    problems.append(Problem(command.where, f"{option} {value!r}: no test "
                                                           f"{name!r} in {file}"))
    return problems


def check_documented_commands(
    root: Path, libraries: Sequence[Library], pyprojects: Mapping[str, Pyproject | None]
) -> list[Problem]:
    """The static half: README installs and CONTRIBUTING routes are well formed."""
    present = [lib for lib in libraries if (root / lib.path).is_dir()]
    _, problems = read_install_commands(root, present, pyprojects)
    routes, found = read_test_routes(root)
    problems += found
    problems += check_routes(root, routes, present, pyprojects)
    return problems
