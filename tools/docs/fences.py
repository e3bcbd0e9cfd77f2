"""The fenced code blocks of a markdown page, read once for every docs checker.

Why one reader: ``tools.docs.executed`` (python blocks) and ``tools.docs.shell`` (shell blocks)
both need each fence's language, text and line, the line just before it (where a page puts its
``<!-- ... -->`` marker) and the ```text block that may follow it (the output the page shows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Fence", "fences"]

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Fence:
    """One fenced block: ``lang`` lower-cased, ``source`` its text, ``line`` where its fence
    opens (1-based), ``before`` the page's line just above it, and ``shown`` the text of the
    next fence when that one is a ```text block; ``shown_adjacent`` tells whether only blank
    lines stand between the two."""

    lang: str
    source: str
    line: int
    before: str
    shown: str | None
    shown_adjacent: bool


def fences(text: str) -> list[Fence]:
    """Every fenced block of ``text``, in page order."""
    found = list(_FENCE.finditer(text))
    out: list[Fence] = []
    for i, fence in enumerate(found):
        following = found[i + 1] if i + 1 < len(found) else None
        is_text = following is not None and following.group(1).lower() == "text"
        out.append(Fence(
            lang=fence.group(1).lower(),
            source=fence.group(2),
            line=text.count("\n", 0, fence.start()) + 1,
            before=text[:fence.start()].rstrip("\n").rsplit("\n", 1)[-1],
            shown=following.group(2) if is_text and following is not None else None,
            shown_adjacent=is_text and following is not None
            and not text[fence.end():following.start()].strip()))
    return out
