"""systemd units for the services that run MTS1B code: oms, brokers, research, treasury and
operations (NATS, PostgreSQL and OpenBao run as their own packages' units).

Why these settings: each service runs as its own user (``mts1b-<service>``), with no
capability, no new privileges, a read-only file system except its state folder, no view of
other processes, devices or home folders, its system calls limited to ``@system-service`` and
its address families to IP and Unix sockets: ``systemd-analyze security`` rates the exposure
of every unit at or below 3.0 ("OK"). The sandboxing needs mount and user namespaces, which an
*unprivileged* LXC container provides only with the ``nesting`` feature - without it systemd
fails the start with status 226/NAMESPACE - hence the inventory's ``nesting: true`` default.
``Restart=on-failure`` with a start limit restarts a crashed service, not one stopped on
purpose, and gives up on a crash loop. The unit runs whatever release ``current`` points at, so
switching releases needs only a restart.

The configuration comes from the release's rendered ``config/<service>.env``; what a service
takes from Vault (:mod:`mts1b_deploy.bootstrap`) it reads at start with the token that
``mts1b-deploy vault login`` wrote to ``/var/lib/mts1b-<service>/vault-token`` (its state
folder, :mod:`mts1b_deploy.delivery`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from mts1b_deploy.servicesecrets import BUS_SERVICES

__all__ = ["UNIT_SERVICES", "render_unit", "unit_name"]

UNIT_SERVICES: tuple[str, ...] = BUS_SERVICES
"""The services that get a unit: those running MTS1B code."""

_SERVE = {
    "oms": "mts1b-oms serve",
    "brokers": "mts1b-brokers serve",
    "research": "mts1b-research serve",
    "treasury": "mts1b-treasury serve",
    "operations": "mts1b-operations serve",
}
# Numerical libraries may generate machine code at run time (a JIT), which
# MemoryDenyWriteExecute forbids; the research service computes, the others do not.
_MAY_JIT = frozenset({"research"})

_HARDENING = """NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
RemoveIPC=yes
DevicePolicy=closed
KeyringMode=private
UMask=0077
"""


def unit_name(service: str) -> str:
    return f"mts1b-{service}.service"


def render_unit(service: str, root: str = "/opt/mts") -> str:
    """The unit of ``service`` for releases under ``root`` (the local target's layout)."""
    if service not in _SERVE:
        raise ValueError(f"service: {service!r} has no unit; the units are {list(_SERVE)}")
    base = PurePosixPath(root)
    if not base.is_absolute():
        raise ValueError(f"root: {root!r} must be an absolute path")
    current = base / "current"
    jit = "" if service in _MAY_JIT else "MemoryDenyWriteExecute=yes\n"
    return f"""[Unit]
Description=MTS1B {service} ({_SERVE[service].split()[0]})
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=exec
User=mts1b-{service}
Group=mts1b-{service}
EnvironmentFile={current}/config/{service}.env
ExecStart={current}/venv/bin/mts {_SERVE[service]}
Restart=on-failure
RestartSec=5s
TimeoutStopSec=30s
KillSignal=SIGTERM
StateDirectory=mts1b-{service}
WorkingDirectory=/var/lib/mts1b-{service}
{_HARDENING}{jit}
[Install]
WantedBy=multi-user.target
"""
