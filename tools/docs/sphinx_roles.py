"""A Griffe extension that turns the Sphinx roles in the libraries' docstrings into links.

Why: the docstrings are prose that name other objects with Sphinx roles (``:class:`Bar```,
``:func:`~mts1b_quantkit.metrics.sharpe```), the form an IDE and ``help()`` read well. Markdown
does not know them, so the API reference would show ``:class:`` in front of every such name.
This extension, loaded by mkdocstrings (``extensions`` in ``mkdocs.yml``), rewrites each role
into an *optional* autorefs cross-reference before the docstring is rendered: the name links to
its entry when the reference documents it and stays plain code when it does not (a private
helper, a third-party class), so an unresolvable name never fails the ``--strict`` build.

A name is resolved the way Python would see it from the docstring's object: through that
object's scope (its members, its module's imports, its parents), so ``:class:`Bar``` in a module
that imports ``Bar`` points at the class it imported. The identifier is the object's canonical
path, which mkdocstrings registers for the public path it renders under as well.

It also drops reStructuredText's literal-block marker as Sphinx does (``Use it from pytest::``
shows as ``Use it from pytest:``); the indented block after it is already a Markdown code block.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

__all__ = ["ROLE", "SphinxRoles", "drop_literal_markers", "rewrite_roles"]

# ``:role:`target```, ``:role:`~a.b.target``` and ``:role:`title <target>```; ``:py:role:`` too.
ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|mod|attr|data|exc|obj|const):`(?P<body>[^`]+)`")

_CALLABLE_ROLES = frozenset({"func", "meth"})


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full path ``target`` names as seen from ``obj``; ``target`` itself when unknown."""
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except (griffe.NameResolutionError, KeyError, AttributeError):
        return target
    return f"{resolved}.{rest}" if rest else resolved


def rewrite_roles(text: str, obj: griffe.Object) -> str:
    """``text`` with every Sphinx role replaced by an optional autorefs reference."""

    def replace(match: re.Match[str]) -> str:
        role, body = match["role"], match["body"].strip()
        explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^<>]+)>", body)
        if explicit:
            title, target = explicit["title"], explicit["target"].strip()
        else:
            target = body
            title = body.lstrip("~.")
            if body.startswith("~"):
                title = title.rpartition(".")[2]
        target = target.lstrip("~.")
        if role in _CALLABLE_ROLES and not explicit and not title.endswith(")"):
            title += "()"
        identifier = html.escape(_resolve(obj, target), quote=True)
        return f'<autoref identifier="{identifier}" optional>`{title}`</autoref>'

    return ROLE.sub(replace, text)


def drop_literal_markers(text: str) -> str:
    """``text:`` for ``text::``, ``text`` for ``text ::``, nothing for a ``::`` on its own line."""
    lines = []
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped.endswith("::"):
            head = stripped[:-2]
            line = head.rstrip() if not head.strip() or head.endswith((" ", "\t")) else head + ":"
        lines.append(line)
    return "\n".join(lines)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles in every docstring of each package Griffe loads."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Walk the package once it is loaded, when every name in it can be resolved."""
        del loader, kwargs
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = drop_literal_markers(
                    rewrite_roles(obj.docstring.value, obj))
            stack.extend(m for m in obj.members.values() if not m.is_alias
                         and isinstance(m, griffe.Object))
