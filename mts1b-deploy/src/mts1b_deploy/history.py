"""The record of a target's releases: ``generations.jsonl``, one JSON object a line.

Why a log and not a folder listing: the folders say what is kept; the log says what was
installed, in which order, from which commit, lock and config, by whom, with which schemas
- and every switch of ``current`` (install or rollback) with its reason. Lines are only ever
appended (one ``write`` of a whole line on an ``O_APPEND`` descriptor, then ``fsync``).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mts1b_deploy.errors import ReleaseError

__all__ = ["HISTORY_FILE", "Generation", "Switch", "append", "read_history"]

HISTORY_FILE = "generations.jsonl"


@dataclass(frozen=True)
class Generation:
    """One installed release."""

    generation: int
    sha: str
    directory: str
    libraries: dict[str, str]
    schema: dict[str, int]
    lock_sha256: str
    config_sha256: str
    installed_at: str
    by: str
    kind: str = "release"


@dataclass(frozen=True)
class Switch:
    """``current`` pointed at a generation (an install, or a rollback with its reason)."""

    generation: int
    reason: str
    at: str = field(default_factory=lambda: now())
    by: str = field(default_factory=lambda: who())
    kind: str = "switch"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def append(root: Path, record: Generation | Switch) -> None:
    line = (json.dumps(asdict(record), sort_keys=True) + "\n").encode()
    fd = os.open(root / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(root: Path) -> tuple[list[Generation], list[Switch]]:
    """Every generation and every switch recorded, in order."""
    path = root / HISTORY_FILE
    if not path.exists():
        return [], []
    generations: list[Generation] = []
    switches: list[Switch] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data: dict[str, Any] = json.loads(line)
            if data.get("kind") == "switch":
                switches.append(Switch(**data))
            else:
                generations.append(Generation(**data))
        except (ValueError, TypeError) as exc:
            raise ReleaseError(f"{path} line {number} is not a history record "
                               f"({type(exc).__name__})", path=str(path), line=number) from None
    return generations, switches
