"""The library's docs page runs as written, against a real PostgreSQL, and prints what it shows.

``docs/libraries/research.md`` pairs each ```python block with the ```text block that follows
it; the blocks run in order in one namespace with ``MTS_RESEARCH_SCHEMA`` set to a fresh schema
(dropped afterwards). Skipped when the docs are not next to the library or PostgreSQL is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import uuid
from pathlib import Path

import pytest

from .conftest import DSN

PAGE = Path(__file__).resolve().parents[2] / "docs" / "libraries" / "research.md"
BLOCK = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.S)

pytestmark = pytest.mark.integration


def test_docs_examples_print_what_the_page_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    if not PAGE.exists():
        pytest.skip(f"docs page not found at {PAGE}")
    asyncpg = pytest.importorskip("asyncpg")
    schema = f"rs_docs_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MTS_DATABASE_URL", DSN)
    monkeypatch.setenv("MTS_RESEARCH_SCHEMA", schema)
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "the page lost its examples"
    namespace: dict[str, object] = {"__name__": "research_docs"}
    try:
        for i, (code, shown) in enumerate(blocks):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{PAGE.name} block {i}", "exec"), namespace)
            assert out.getvalue() == shown, f"block {i} printed something else:\n{code}"
    finally:
        async def drop() -> None:
            conn = await asyncpg.connect(DSN)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()

        asyncio.run(drop())
