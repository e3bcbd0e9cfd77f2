"""The Proxmox target's containers: what a node has against what the inventory asks, and making
them match through the Proxmox VE API (proxmoxer, an API token).

Why each guard (from what users of the API run into):

- **a privilege-separated token sees an empty list, not a 403**, when it lacks ``VM.Audit``:
  an empty node and a blind token look alike. :meth:`ProxmoxTarget.check_privileges` reads the
  token's own permissions (``/access/permissions``) first and refuses to go on without
  ``VM.Audit`` and ``VM.Allocate`` on ``/vms``, naming the ``pveum`` command that grants them.
- **HTTP 596** (a long task blocks the daemon) and **"CT is locked"** (a task still holds the
  container) are retried with backoff; any other refusal is an error naming the call.
- **tasks return a UPID**: each create, start or stop is polled until it stops, and an exit
  status other than ``OK`` is an error naming it.
- **feature flags are root@pam's only**: an API token is refused ``features``, so nesting is
  never sent; a container without it is reported with the ``pct set`` line the node's
  administrator runs once.

:meth:`ProxmoxTarget.apply` is idempotent: it changes only what :meth:`ProxmoxTarget.drift`
finds, and a second run finds nothing (it says so). A release goes inside a container over SSH
to its node (``pct push``, ``pct exec``): :mod:`mts1b_deploy.containers`.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mts1b_platform.redaction import register_secret
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from mts1b_deploy.errors import DeployError
from mts1b_deploy.inventory import Inventory
from mts1b_deploy.plan import ROOT_ONLY, container_params

__all__ = ["Change", "ProxmoxError", "ProxmoxTarget", "resolve_secret_ref"]

_UPDATABLE = ("cores", "memory", "swap", "net0", "nameserver", "onboot")
"""Config keys a token may change in place (disks and mount points need a resize or a move)."""
_NEEDED = ("VM.Audit", "VM.Allocate")
Log = Callable[[str], None]


class ProxmoxError(DeployError):
    """The Proxmox API refused a call, or a task failed; ``context`` names the call."""

    code = "DEPLOY.PROXMOX"


def resolve_secret_ref(ref: str) -> str:
    """The API token's secret from its inventory reference (``env:NAME`` or ``file:/path``);
    registered with the log redaction at once."""
    kind, _, where = ref.partition(":")
    if kind == "env":
        value = os.environ.get(where, "")
        if not value:
            raise ProxmoxError(f"token_secret_ref {ref}: ${where} is not set", field="token",
                               value=ref)
    elif kind == "file":
        try:
            value = Path(where).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ProxmoxError(f"token_secret_ref {ref}: cannot read it ({type(exc).__name__})",
                               field="token", value=ref) from None
    else:
        raise ProxmoxError(f"token_secret_ref {ref}: only env: and file: references are read "
                           "so far", field="token", value=ref)
    register_secret(value)
    return value


@dataclass(frozen=True)
class Change:
    """One difference between the node and the inventory, and what applying does about it."""

    service: str
    vmid: int
    action: str  # create | update | start | root-only
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        if self.action == "create":
            return f"+ create CT {self.vmid} ({self.service})"
        if self.action == "update":
            diffs = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in self.details.items())
            return f"~ update CT {self.vmid} ({self.service}): {diffs}"
        if self.action == "start":
            return f"> start CT {self.vmid} ({self.service})"
        return (f"! CT {self.vmid} ({self.service}) needs root@pam: pct set {self.vmid} "
                f"--{' --'.join(f'{k} {v}' for k, v in self.details.items())}")


class ProxmoxTarget:
    """The inventory's containers on its Proxmox cluster (see the module docstring)."""

    def __init__(self, inv: Inventory, token_secret: str, *, verify: bool | str = True,
                 retries: int = 6, backoff: float = 0.25, poll: float = 0.2,
                 task_timeout: float = 300.0) -> None:
        url = urllib.parse.urlsplit(inv.proxmox.api_url)
        user, _, token_name = inv.proxmox.token_id.partition("!")
        register_secret(token_secret)
        self.inv = inv
        self.api = ProxmoxAPI(url.hostname, port=url.port or 8006, user=user,
                              token_name=token_name, token_value=token_secret,
                              verify_ssl=verify if inv.proxmox.verify_tls else False,
                              timeout=inv.proxmox.timeout_s)
        self.retries, self.backoff, self.poll = retries, backoff, poll
        self.task_timeout = task_timeout

    # -- calls ----------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[..., Any], /, **params: Any) -> Any:
        """``call(**params)``, retried with backoff on HTTP 596 and "CT is locked"."""
        for attempt in range(self.retries + 1):
            try:
                return call(**params)
            except ResourceException as exc:
                message = str(exc.content or exc.status_message)
                busy = exc.status_code == 596 or "is locked" in message
                if not busy or attempt == self.retries:
                    raise ProxmoxError(f"{what}: HTTP {exc.status_code} {message}",
                                       call=what, status=exc.status_code) from None
            except OSError as exc:  # requests' connection errors
                raise ProxmoxError(f"{what}: cannot reach {self.inv.proxmox.api_url} "
                                   f"({type(exc).__name__})", call=what) from None
            time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _wait(self, node: str, upid: str, what: str) -> None:
        deadline = time.monotonic() + self.task_timeout
        while True:
            status = self._call(f"{what}: task status",
                                self.api.nodes(node).tasks(upid).status.get)
            if status.get("status") == "stopped":
                if status.get("exitstatus") != "OK":
                    raise ProxmoxError(f"{what}: the task ended with "
                                       f"{status.get('exitstatus')!r}", call=what, upid=upid)
                return
            if time.monotonic() >= deadline:
                raise ProxmoxError(f"{what}: the task did not end within "
                                   f"{self.task_timeout:.0f}s", call=what, upid=upid)
            time.sleep(self.poll)

    # -- reading --------------------------------------------------------------------------

    def check_privileges(self) -> None:
        """Refuse a token that would see an empty list instead of the containers."""
        perms = self._call("GET /access/permissions", self.api.access.permissions.get,
                           path="/vms")
        held = {p for scope in ("/vms", "/") for p in (perms.get(scope) or {})}
        missing = [p for p in _NEEDED if p not in held]
        if missing:
            raise ProxmoxError(
                f"the token {self.inv.proxmox.token_id} lacks {', '.join(missing)} on /vms: a "
                "privilege-separated token then lists no containers (HTTP 200 with an empty "
                "list) instead of being refused; grant it: pveum acl modify /vms --tokens "
                f"'{self.inv.proxmox.token_id}' --roles PVEVMAdmin", missing=missing)

    def drift(self) -> list[Change]:
        """What differs between the nodes and the inventory, in start order."""
        self.check_privileges()
        changes: list[Change] = []
        listed: dict[str, dict[int, str]] = {}
        for name, svc in self.inv.ordered():
            if svc.node not in listed:
                rows = self._call(f"GET /nodes/{svc.node}/lxc",
                                  self.api.nodes(svc.node).lxc.get)
                listed[svc.node] = {int(r["vmid"]): str(r["status"]) for r in rows}
            want = container_params(self.inv, name)
            status = listed[svc.node].get(svc.vmid)
            if status is None:
                changes.append(Change(name, svc.vmid, "create", want))
                changes.append(Change(name, svc.vmid, "start"))
                changes += self._root_only(name, svc.vmid, want, {})
                continue
            have = self._call(f"GET /nodes/{svc.node}/lxc/{svc.vmid}/config",
                              self.api.nodes(svc.node).lxc(svc.vmid).config.get)
            diffs = {k: (have.get(k), want[k]) for k in _UPDATABLE
                     if k in want and str(have.get(k)) != want[k]}
            if diffs:
                changes.append(Change(name, svc.vmid, "update", diffs))
            if status != "running":
                changes.append(Change(name, svc.vmid, "start"))
            changes += self._root_only(name, svc.vmid, want, have)
        return changes

    @staticmethod
    def _root_only(name: str, vmid: int, want: dict[str, str], have: dict[str, Any]
                   ) -> list[Change]:
        missing = {k: want[k] for k in ROOT_ONLY if k in want and str(have.get(k)) != want[k]}
        return [Change(name, vmid, "root-only", missing)] if missing else []

    # -- applying -------------------------------------------------------------------------

    def apply(self, log: Log = lambda _: None) -> list[Change]:
        """Make the containers match the inventory (see the module docstring); returns what
        was done (root-only changes are reported, not made)."""
        done: list[Change] = []
        changes = self.drift()
        for change in changes:
            node = self.inv.services[change.service].node
            ct = self.api.nodes(node).lxc
            what = f"CT {change.vmid} ({change.service})"
            if change.action == "create":
                params = {k: v for k, v in change.details.items() if k not in ROOT_ONLY}
                upid = self._call(f"create {what}", ct.post, **params)
                self._wait(node, upid, f"create {what}")
            elif change.action == "update":
                params = {k: b for k, (_, b) in change.details.items()}
                self._call(f"update {what}", ct(change.vmid).config.put, **params)
            elif change.action == "start":
                upid = self._call(f"start {what}", ct(change.vmid).status.start.post)
                self._wait(node, upid, f"start {what}")
            log(change.line())
            if change.action != "root-only":
                done.append(change)
        if not done:
            log("nothing to change: the containers match the inventory")
        return done
