"""The key that signs checkpoints: a key file, or the operations service's secret in Vault.

Why Vault as well as a file: the deploy tool's bootstrap gives each service, operations
included, an Ed25519 signing key stored at ``secret/mts1b/operations`` (key
``signing_key_file``, the text of the key file ``audit keygen`` writes), so a host set up by it
never has the key on disk. :func:`configured_signing_key` reads it through the platform's
``load_config``: ``MTS_OPERATIONS_SIGNING_KEY_FILE`` (the file's text), a ``.env`` entry, or
Vault, highest first.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

import nacl.signing
from mts1b_platform.config import VaultSettings, load_config
from mts1b_platform.signing import SigningKey
from pydantic import BaseModel, SecretStr

from mts1b_operations.audit.errors import AuditError

__all__ = ["AuditSigningConfig", "configured_signing_key", "signing_key_from_text"]

_KIND = "mts1b-oms-signing-key"  # what SigningKey.save writes (and the deploy tool stores)


class AuditSigningConfig(BaseModel):
    """The operations service's configuration the audit recorder reads."""

    signing_key_file: SecretStr | None = None


def signing_key_from_text(text: str, where: str) -> SigningKey:
    """The key in a key file's ``text``; AuditError names ``where`` and never the content."""
    try:
        data = json.loads(text)
        seed = base64.b64decode(data["seed"], validate=True)
        name = data["name"]
        if data.get("kind") != _KIND or len(seed) != 32 or not isinstance(name, str):
            raise ValueError
        return SigningKey(name, nacl.signing.SigningKey(seed))
    except (ValueError, KeyError, TypeError, binascii.Error, AttributeError):
        raise AuditError(f"{where} does not hold a signing key file (written by `mts "
                         "mts1b-operations audit keygen`)", where=where) from None


def configured_signing_key(*, environ: Mapping[str, str] | None = None,
                           vault: VaultSettings | None = None) -> SigningKey | None:
    """The configured checkpoint key (see the module docstring), or None when there is none."""
    config = load_config("operations", AuditSigningConfig, environ=environ, vault=vault,
                         env_file=None if environ is not None else ".env")
    if config.signing_key_file is None:
        return None
    return signing_key_from_text(config.signing_key_file.get_secret_value(),
                                 "the operations signing_key_file")
