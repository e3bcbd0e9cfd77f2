"""The library's docs page runs as written and prints what it shows.

``docs/libraries/pluginsdk.md`` pairs each ```python block with the ```text block that follows
it. The blocks run in order in one namespace; each one's stdout must equal the text shown.
Skipped when the docs are not next to the library (an installed wheel has no docs folder).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "libraries" / "pluginsdk.md"
BLOCK = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.S)


def test_docs_examples_print_what_the_page_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    if not PAGE.exists():
        pytest.skip(f"docs page not found at {PAGE}")
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) == 3, "the page lost its examples"
    monkeypatch.setattr(sys, "path", list(sys.path))  # the page puts a folder on it
    namespace: dict[str, object] = {"__name__": "pluginsdk_docs"}
    try:
        for i, (code, shown) in enumerate(blocks):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                exec(compile(code, f"{PAGE.name} block {i}", "exec"), namespace)
            assert out.getvalue() == shown, f"block {i} printed something else:\n{code}"
    finally:
        sys.modules.pop("acme_fx", None)
