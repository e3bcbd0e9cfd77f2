"""Every shell block of the documentation is run, run by a named test, or skipped with a reason
(``tools.docs.shell``, issue #25).

The executor's own tests write small pages that must fail (a failing command, a wrong shown
output, a skip without a reason, a tested-by naming a test that does not run the commands), so
a page cannot pass by the executor ignoring something. The page tests are generated from the
site: a new block without a marker is run here, so nothing is left out silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.docs.shell import (
    REPO,
    ShellBlock,
    ShellError,
    check_run_by_repocheck,
    check_tested_by,
    commands_of,
    inventory,
    parse_shell_blocks,
    run_shell_page,
    shell_pages,
)

# The blocks that cannot run here; lowering it is progress, raising it needs a reason in review.
MAX_SKIPPED = 25


def _page(tmp_path: Path, text: str, name: str = "page.md") -> Path:
    page = tmp_path / name
    page.write_text(text, encoding="utf-8")
    return page


def test_state_carries_over_and_output_is_compared(tmp_path: Path) -> None:
    page = _page(tmp_path, "```bash\nexport GREETING=hi\nmkdir sub && cd sub\n```\n\n"
                           "```bash\necho \"$GREETING from $PWD\"\n```\n\n"
                           "```text\nhi from ./sub\n```\n")
    timings = run_shell_page(page, timeout=30)
    assert [b.line for b, _ in timings] == [1, 6]


def test_a_failing_or_wrong_block_is_caught(tmp_path: Path) -> None:
    failing = _page(tmp_path, "```bash\ntrue\nfalse\necho never\n```\n")
    with pytest.raises(ShellError, match=r"page.md:1: exited with 1"):
        run_shell_page(failing, timeout=30)
    wrong = _page(tmp_path, "```console\n$ echo 2\n3\n```\n", "wrong.md")
    with pytest.raises(ShellError, match="the page shows\n3\nbut the block printed\n2"):
        run_shell_page(wrong, timeout=30)
    piped = _page(tmp_path, "```bash\nfalse | cat\n```\n", "piped.md")
    with pytest.raises(ShellError, match="exited with 1"):
        run_shell_page(piped, timeout=30)


def test_timeout_and_normalisation(tmp_path: Path) -> None:
    slow = _page(tmp_path, "```sh\nsleep 30\n```\n")
    with pytest.raises(ShellError, match="did not finish within 1 s"):
        run_shell_page(slow, timeout=1)
    stamped = _page(tmp_path, "```console\n$ date -u +%Y-%m-%dT%H:%M:%SZ; echo \"$HOME/x\"\n"
                              "2026-01-02T03:04:05Z\n~/x\n```\n", "stamped.md")
    run_shell_page(stamped, timeout=30)


def test_markers_are_parsed_and_checked(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    text = ("<!-- shell: skip - no Docker engine here -->\n```bash\ndocker compose up\n```\n\n"
            "<!-- shell: cwd=repo -->\n```shell\nls\n```\n\n"
            "<!-- shell: tested-by t/test_x.py::test_y -->\n```bash\nmts a\n```\n\n"
            "```console\n$ echo a \\\n> b\na b\n```\n")
    skip, repo, tested, console = parse_shell_blocks(text, page)
    assert (skip.mode, skip.detail) == ("skip", "no Docker engine here")
    assert (repo.mode, repo.cwd_repo) == ("run", True)
    assert (tested.mode, tested.detail) == ("tested-by", "t/test_x.py::test_y")
    assert (console.source, console.expected) == ("echo a \\\nb\n", "a b")
    with pytest.raises(ShellError, match="must say why"):
        parse_shell_blocks("<!-- shell: skip -->\n```bash\nx\n```\n", page)
    with pytest.raises(ShellError, match="unknown shell marker"):
        parse_shell_blocks("<!-- shell: maybe -->\n```bash\nx\n```\n", page)
    with pytest.raises(ShellError, match="PATH::TEST"):
        parse_shell_blocks("<!-- shell: tested-by t/test_x.py -->\n```bash\nx\n```\n", page)


def test_commands_are_read_as_a_shell_joins_them() -> None:
    source = "mts a --x 1 \\\n    --y 2   # a comment\n# only a comment\n\nmts b\n"
    assert commands_of(source) == ["mts a --x 1 --y 2", "mts b"]


def test_tested_by_must_name_a_test_that_runs_the_commands(tmp_path: Path) -> None:
    docs = tmp_path / "docs" / "tutorials"
    docs.mkdir(parents=True)
    page = docs / "t.md"
    (tmp_path / "test_ok.py").write_text(
        'def test_it():\n    run("mts a --x 1 --y 2")\n    run("mts b")\n', encoding="utf-8")
    (tmp_path / "test_reads.py").write_text(
        'PAGE = ROOT / "docs" / "tutorials" / "t.md"\nBASH = "```bash"\n'
        "async def test_it():\n    pass\n", encoding="utf-8")
    (tmp_path / "test_partial.py").write_text('def test_it():\n    run("mts b")\n',
                                              encoding="utf-8")
    block = "```bash\nmts a --x 1 \\\n  --y 2\nmts b\n```\n"
    for name, how in (("test_ok.py", "contains every command"),
                      ("test_reads.py", "reads the ```bash blocks of tutorials/t.md")):
        (b,) = parse_shell_blocks(f"<!-- shell: tested-by {name}::test_it -->\n{block}", page)
        assert check_tested_by(b, repo=tmp_path) == how
    for marker, error in (("test_partial.py::test_it", "nor contains: 'mts a --x 1 --y 2'"),
                          ("test_ok.py::test_other", "defines no test test_other"),
                          ("test_gone.py::test_it", "does not exist")):
        (b,) = parse_shell_blocks(f"<!-- shell: tested-by {marker} -->\n{block}", page)
        with pytest.raises(ShellError, match=error):
            check_tested_by(b, repo=tmp_path)


def test_run_by_repocheck_must_be_an_install_repocheck_runs() -> None:
    page = REPO / "docs" / "libraries" / "quantkit.md"
    ok = ShellBlock(page, 8, "bash", "python3 dev.py wheels   # fills dist/\n"
                    "pip install --no-index --find-links dist mts1b-quantkit  # brings numpy\n",
                    "run-by", "repocheck")
    assert check_run_by_repocheck(ok) == 1
    for source in ("pip install --no-index --find-links dist mts1b-nothing\n",
                   "pip install --no-index --find-links dist mts1b-oms\n",  # another page's
                   "python3 dev.py wheels\nmts --help\n"):
        block = ShellBlock(page, 8, "bash", source, "run-by", "repocheck")
        with pytest.raises(ShellError, match="repocheck does not run"):
            check_run_by_repocheck(block)
    (parsed,) = parse_shell_blocks("<!-- shell: run-by repocheck -->\n```bash\nx\n```\n", page)
    assert (parsed.mode, parsed.detail) == ("run-by", "repocheck")


# --- the site ------------------------------------------------------------------------------------

SITE = inventory(shell_pages())
RUN_PAGES = sorted({b.page for b in SITE["run"]})


def test_every_shell_block_is_accounted_for() -> None:
    """Each tested-by block's test runs it, repocheck runs each run-by block's installs, each
    skip has its reason, and the skips are few."""
    assert sum(len(v) for v in SITE.values()) > 0
    for block in SITE["tested-by"]:
        check_tested_by(block)
    for block in SITE["run-by"]:
        assert check_run_by_repocheck(block) >= 1
    assert all(b.detail for b in SITE["skip"])
    listed = "\n".join(f"{b.where}: {b.detail}" for b in SITE["skip"])
    assert len(SITE["skip"]) <= MAX_SKIPPED, f"more skipped blocks than before:\n{listed}"


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.relative_to(REPO).as_posix()
                                                 for p in RUN_PAGES])
def test_the_page_s_shell_blocks_run(page: Path) -> None:
    timings = run_shell_page(page, timeout=180)
    assert len(timings) == sum(1 for b in SITE["run"] if b.page == page)
