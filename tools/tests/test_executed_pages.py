"""The documentation pages that ``tools.docs.executed`` runs (issue #25), and the executor.

The executor's own tests write small pages that must fail (a block that raises, a wrong shown
output, an output the page leaves out, a skip without a reason) so a page test cannot pass
by the executor ignoring something. The page tests run each page as a reader would; the
synthetic market is installed once into a store shared by the page tests (the pages call
``install_demo_market()``, which finds it there) so the suite stays fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.docs.executed import PageError, parse_page, run_page

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_blocks_share_one_namespace_and_outputs_match(tmp_path: Path) -> None:
    page = _page(tmp_path, "# t\n\n```python\nx = 2\n```\n\nThen:\n\n```python\n"
                           "print(x * 21)   \n```\n\nIt prints:\n\n```text\n42\n```\n")
    run = run_page(page, timeout=30)
    assert (run.ran, run.skipped, run.outputs) == (2, 0, ("", "42"))


def test_a_failing_block_is_caught(tmp_path: Path) -> None:
    page = _page(tmp_path, "```python\nprint('a')\n```\n\n```text\na\n```\n\n"
                           "```python\nraise ValueError('boom')\n```\n")
    with pytest.raises(PageError, match=r"line 9 raised:(.|\n)*ValueError: boom"):
        run_page(page, timeout=30)


def test_a_wrong_output_is_caught(tmp_path: Path) -> None:
    page = _page(tmp_path, "```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n")
    with pytest.raises(PageError, match="the page shows\n3\nbut the block printed\n2"):
        run_page(page, timeout=30)


def test_a_missing_output_is_caught(tmp_path: Path) -> None:
    shown_nothing_printed = _page(tmp_path, "```python\nx = 1\n```\n\n```text\n1\n```\n")
    with pytest.raises(PageError, match=r"printed\n\(nothing\)"):
        run_page(shown_nothing_printed, timeout=30)
    printed_not_shown = _page(tmp_path, "```python\nprint('hidden')\n```\n")
    with pytest.raises(PageError, match="does not show:\nhidden"):
        run_page(printed_not_shown, timeout=30)


def test_skips_need_a_reason_and_a_timeout_is_caught(tmp_path: Path) -> None:
    with pytest.raises(PageError, match="must say why"):
        parse_page("<!-- executed: skip -->\n```python\nx = 1\n```\n")
    blocks = parse_page("<!-- executed: skip - needs a GPU -->\n```python\nx = 1\n```\n")
    assert blocks[0].skip == "needs a GPU"
    slow = _page(tmp_path, "```python\nimport time\ntime.sleep(30)\n```\n")
    with pytest.raises(PageError, match="did not finish within 1 s"):
        run_page(slow, timeout=1)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The datalake's synthetic market, installed once for every page test of this module."""
    from mts1b_datalake.synthetic import install_demo_market

    root = tmp_path_factory.mktemp("datalake")
    install_demo_market(root)
    return {"MTS_DATALAKE_ROOT": str(root)}


def test_tutorial_1_first_backtest(market: dict[str, str]) -> None:
    run = run_page(DOCS / "tutorials" / "first-backtest.md", timeout=120, env=market)
    assert run.skipped == 0 and run.ran == 5


def test_tutorial_3_custom_strategy(market: dict[str, str]) -> None:
    run = run_page(DOCS / "tutorials" / "custom-strategy.md", timeout=120, env=market)
    assert run.skipped == 0 and run.ran == 4


def test_migration_from_backtrader(market: dict[str, str]) -> None:
    pytest.importorskip("backtrader")
    run = run_page(DOCS / "migration" / "backtrader.md", timeout=120, env=market)
    assert run.skipped == 0 and run.ran == 4
    # the two systems print the same final value: not just each equal to the page
    bt_value = run.outputs[1].split(": ")[1]
    assert bt_value == run.outputs[2].split(":", 1)[1].strip()


def test_migration_from_zipline(market: dict[str, str]) -> None:
    run = run_page(DOCS / "migration" / "zipline.md", timeout=120, env=market)
    assert run.skipped == 0 and run.ran == 3


def test_concept_strategies_and_signals(market: dict[str, str]) -> None:
    run = run_page(DOCS / "concepts" / "strategies.md", timeout=120, env=market)
    assert run.skipped == 0 and run.ran == 6
