"""Normalised AST fingerprints of function and class definitions.

Two definitions get the same fingerprint when they have the same syntax tree once the parts that a
copy-and-paste usually changes are abstracted away:

- every identifier (the definition's own name, variables, attribute names, argument and keyword
  names, imported names) is replaced by its order of first appearance inside the definition
  (``v0``, ``v1``, ...), so a consistently renamed copy still matches, while ``a + a`` and
  ``a + b`` do not;
- every literal becomes the same placeholder (``252`` and ``365``, ``"x"`` and ``"y"`` match);
- docstrings, decorators, parameter and return annotations and type comments are dropped.

Operators, control flow, call shapes and the number and order of statements are kept, so a
different operator or a different structure gives a different fingerprint.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from dataclasses import dataclass

DefNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
LITERAL = "<literal>"


@dataclass(frozen=True)
class Fingerprint:
    """The digest of a normalised definition and its size in AST nodes."""

    digest: str
    size: int


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return body[1:]
    return body


class _Normaliser(ast.NodeTransformer):
    """Rewrites a (copied) definition in place; see the module docstring for the rules."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.body = _without_docstring(node.body)
            node.decorator_list = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
        if isinstance(node, ast.arg):
            node.annotation = None
        if hasattr(node, "type_comment"):
            node.type_comment = None
        if isinstance(node, ast.Constant):
            node.value = LITERAL
            node.kind = None
            return node
        for field, value in ast.iter_fields(node):
            if isinstance(value, str):
                setattr(node, field, self._name(value))
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                setattr(node, field, [self._name(v) for v in value])
        return super().generic_visit(node)


def _size(node: ast.AST) -> int:
    """Number of AST nodes, not counting the Load/Store/Del context markers."""
    return sum(1 for n in ast.walk(node) if not isinstance(n, ast.expr_context))


def fingerprint(node: DefNode) -> Fingerprint:
    """Fingerprint of one definition (the original tree is not modified)."""
    normalised = _Normaliser().visit(copy.deepcopy(node))
    dump = ast.dump(normalised, annotate_fields=True, include_attributes=False)
    return Fingerprint(hashlib.sha256(dump.encode()).hexdigest(), _size(normalised))
