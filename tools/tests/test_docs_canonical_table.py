"""tools.docs.canonical_table: the dedupe concept page's table is the canonical list, generated."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.dedupe import DEFAULT_CANONICAL, Primitive, load_canonical
from tools.docs.canonical_table import END, PAGE, START, main, render_table, splice


def test_the_committed_page_matches_canonical_toml() -> None:
    """Fails when canonical.toml changed and the page was not regenerated."""
    assert main(["--check"]) == 0, "run: python -m tools.docs.canonical_table"


def test_every_primitive_has_a_row() -> None:
    primitives, errors = load_canonical(DEFAULT_CANONICAL)
    assert not errors
    page = PAGE.read_text(encoding="utf-8")
    for p in primitives:
        assert f"| `{p.name}` | `{p.home}` |" in page


def test_render_and_splice() -> None:
    table = render_table([Primitive("sharpe", "mts1b_quantkit.metrics", ("sharpe_ratio",)),
                          Primitive("MtsError", "mts1b_foundation.errors", ())])
    assert "| `sharpe` | `mts1b_quantkit.metrics` | mts1b-quantkit | `sharpe_ratio` |" in table
    assert "| `MtsError` | `mts1b_foundation.errors` | mts1b-foundation | - |" in table
    page = f"# t\n\nprose\n\n{START}\nold rows\n{END}\n\nafter\n"
    out = splice(page, table)
    assert "old rows" not in out
    assert out.startswith("# t\n\nprose\n\n") and out.endswith(f"{END}\n\nafter\n")
    assert splice(out, table) == out
    with pytest.raises(ValueError, match="canonical-table:start"):
        splice("# no markers\n", table)


def test_check_fails_on_a_stale_page_and_the_writer_fixes_it(tmp_path: Path) -> None:
    page = tmp_path / "dedupe.md"
    page.write_text(f"# d\n\n{START}\n| stale |\n{END}\n", encoding="utf-8")
    assert main(["--check", "--page", str(page)]) == 1
    assert "| stale |" in page.read_text(encoding="utf-8")
    assert main(["--page", str(page)]) == 0
    assert main(["--check", "--page", str(page)]) == 0
    assert "| stale |" not in page.read_text(encoding="utf-8")


def test_a_broken_canonical_list_is_an_error_not_a_table(tmp_path: Path) -> None:
    bad = tmp_path / "canonical.toml"
    bad.write_text('[[primitive]]\nname = "x"\n', encoding="utf-8")
    assert main(["--check", "--canonical", str(bad)]) == 1
