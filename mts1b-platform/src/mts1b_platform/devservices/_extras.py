"""One message for a missing optional dependency, naming the extra that brings it."""

from __future__ import annotations

from mts1b_platform.devservices.state import DevServiceError

__all__ = ["missing"]


def missing(distribution: str, what: str) -> DevServiceError:
    """The error for ``what`` needing ``distribution``, which ``mts1b-platform[devservers]``
    installs."""
    return DevServiceError(
        f"{what} needs {distribution}, which is not installed: "
        'pip install "mts1b-platform[devservers]"', distribution=distribution)
