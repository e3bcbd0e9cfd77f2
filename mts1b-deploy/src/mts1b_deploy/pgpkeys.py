"""Operators' OpenPGP public keys, as Vault's and OpenBao's init takes them.

Why: key shares encrypted to the operators' keys are never readable on the machine that ran the
bootstrap - only each operator, with their private key, can decrypt theirs. The server takes
each key as the base64 of its binary (not armored) form; an armored export (``gpg --armor
--export``) is converted here by reading its base64 body (the armor's header lines and its
checksum line are not part of the key).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from mts1b_deploy.errors import VaultBootstrapError

__all__ = ["pgp_key_base64"]

_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_END = "-----END PGP PUBLIC KEY BLOCK-----"


def pgp_key_base64(path: Path) -> str:
    """The public key in ``path`` (armored or binary) as the base64 of its binary form."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VaultBootstrapError(f"pgp key {path}: cannot read it ({type(exc).__name__})",
                                  field="pgp_keys", value=str(path)) from None
    text = raw.decode("ascii", errors="replace")
    if _BEGIN in text:
        body = text.split(_BEGIN, 1)[1].split(_END, 1)[0]
        # skipped: header lines ("Comment: ...", base64 has no colon), blank lines and the
        # checksum line ("=" and 4 characters; body lines never start with padding)
        data = "".join(line.strip() for line in body.splitlines()
                       if line.strip() and ":" not in line and not line.startswith("="))
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
    if not raw or not raw[0] & 0x80:  # an OpenPGP packet's first octet has its high bit set
        raise VaultBootstrapError(f"pgp key {path}: not an OpenPGP public key (export it with "
                                  "gpg --export or gpg --armor --export)", field="pgp_keys",
                                  value=str(path))
    return base64.b64encode(raw).decode()
