"""One step of a conversation with Vault, its failures turned into errors an operator can use.

Why one place: hvac's exceptions carry the server's answer, which can echo what the request
held; an error of ours names the step, the path and the kind of failure, and never passes that
text on (nor a credential).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hvac.exceptions

from mts1b_deploy.errors import VaultBootstrapError
from mts1b_deploy.vaultpolicy import DEPLOY_POLICY

__all__ = ["vault_step"]


@contextmanager
def vault_step(name: str, **context: Any) -> Iterator[None]:
    """Turn any hvac or connection failure of a step into a VaultBootstrapError naming the step
    (and its path) and the kind of failure; the server's answer text is not passed on, as it
    may echo a request's content."""
    try:
        yield
    except VaultBootstrapError:
        raise
    except hvac.exceptions.Forbidden:
        raise VaultBootstrapError(f"{name} failed: permission denied (does the token hold the "
                                  f"{DEPLOY_POLICY} policy?)", step=name, reason="forbidden",
                                  **context) from None
    except hvac.exceptions.VaultError as exc:
        raise VaultBootstrapError(f"{name} failed: the server refused ({type(exc).__name__})",
                                  step=name, reason=type(exc).__name__, **context) from None
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise VaultBootstrapError(f"{name} failed: cannot reach the server "
                                  f"({type(exc).__name__})", step=name, reason="unreachable",
                                  **context) from None
