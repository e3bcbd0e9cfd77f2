"""Errors raised by mts1b-deploy, each with a stable ``code``.

Why a few kinds: an operator fixes an inventory (:class:`InventoryError`, naming the file, the
line, the field and the value), a Vault that refuses (:class:`VaultBootstrapError`, naming the
step and the path, never a credential) and a release or rollback that cannot go ahead
(:class:`ReleaseError`, :class:`RollbackRefused`, saying why) differently.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mts1b_foundation import MtsError

__all__ = ["DeployError", "InventoryError", "ReleaseError", "RollbackRefused",
           "VaultBootstrapError"]


class DeployError(MtsError):
    """Base of every mts1b-deploy error."""

    code: ClassVar[str] = "DEPLOY.ERROR"


class InventoryError(DeployError, ValueError):
    """The inventory is not valid. ``context['errors']`` lists ``{line, field, value, reason}``
    (line 1-based, or None when the file could not be parsed that far); ``str`` shows each."""

    code: ClassVar[str] = "DEPLOY.INVENTORY"

    def __init__(self, source: str, errors: list[dict[str, Any]]) -> None:
        lines = [_describe(source, e) for e in errors]
        super().__init__(f"{source}: {len(errors)} error(s)\n  " + "\n  ".join(lines),
                         source=source, errors=errors)


def _describe(source: str, error: dict[str, Any]) -> str:
    where = f"line {error['line']}" if error.get("line") else "(no line)"
    return f"{where}: {error['field']}: {error['reason']} (got {error['value']})"


class VaultBootstrapError(DeployError):
    """A Vault or OpenBao step failed; ``context`` names the step and the path."""

    code: ClassVar[str] = "DEPLOY.VAULT"


class ReleaseError(DeployError):
    """A release could not be built, installed or switched to."""

    code: ClassVar[str] = "DEPLOY.RELEASE"


class RollbackRefused(DeployError):
    """A rollback target is not kept, unknown, or older than the database's schema allows."""

    code: ClassVar[str] = "DEPLOY.ROLLBACK_REFUSED"
