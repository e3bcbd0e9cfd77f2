"""Files that hold secrets or must change in one step.

Why here: key shares, the deploy token and the wrapped secret ids are written mode 0600 from
the first byte (``os.open`` with the mode, never ``chmod`` afterwards, so there is no moment a
umask leaves them readable), replaced atomically (a temporary file in the same folder, then
``rename(2)``), in a folder only the owner may enter.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["private_dir", "write_atomic", "write_secret_file"]


def private_dir(path: Path) -> Path:
    """``path`` created if needed and made mode 0700 (owner only)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # whatever the umask left
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_secret_file(path: Path, text: str) -> None:
    """:func:`write_atomic` with mode 0600."""
    write_atomic(path, text, 0o600)
