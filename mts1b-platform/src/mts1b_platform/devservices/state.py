"""What ``mts dev up`` started, recorded in ``<dev dir>/state.json`` so that ``up`` is idempotent
and ``down`` stops only what ``up`` started."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from mts1b_foundation import MtsError

__all__ = ["DevServiceError", "DevState", "ServiceStatus", "StartedService", "dev_dir"]


class DevServiceError(MtsError, RuntimeError):
    """A local service could not be found, started or stopped."""

    code: ClassVar[str] = "PLATFORM.DEV"


@dataclass
class StartedService:
    """One server this tool started: where it answers, its pid, its data and log."""

    url: str
    pid: int
    data_dir: str
    log: str
    extra: dict[str, str] = field(default_factory=dict)


_SERVICES = ("nats", "postgres", "vault")


@dataclass
class DevState:
    nats: StartedService | None = None
    postgres: StartedService | None = None
    vault: StartedService | None = None

    @classmethod
    def load(cls, path: Path) -> DevState:
        """The recorded state; an unreadable or foreign file counts as nothing started."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        known = {f.name for f in fields(StartedService)}
        state = cls()
        for name in _SERVICES:
            entry = raw.get(name)
            if isinstance(entry, dict) and {"url", "pid", "data_dir", "log"} <= entry.keys():
                setattr(state, name, StartedService(**{k: v for k, v in entry.items()
                                                        if k in known}))
        return state

    def save(self, path: Path) -> None:
        """Write atomically, readable by the owner only (it may name a token file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)


@dataclass
class ServiceStatus:
    name: str
    url: str
    source: str  # "configured", "started", "started earlier", "down"
    reachable: bool
    detail: str = ""
    pid: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def dev_dir() -> Path:
    """Where state, data and logs of locally started services live.

    ``$MTS_DEV_DIR``, else ``.mts1b-dev/`` in the current directory when it can be written,
    else a per-user state directory.
    """
    if os.environ.get("MTS_DEV_DIR"):
        return Path(os.environ["MTS_DEV_DIR"]).resolve()
    here = Path.cwd() / ".mts1b-dev"
    try:
        here.mkdir(exist_ok=True)
        probe = here / ".probe"
        probe.write_text("")
        probe.unlink()
        return here
    except OSError:
        base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
        return base / "mts1b-dev"
