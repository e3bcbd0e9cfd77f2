"""A stand-in for a Proxmox VE node's API, for tests and the tutorial: NOT a real node.

It speaks the subset of the Proxmox VE API (``/api2/json``) that :mod:`mts1b_deploy.proxmox`
uses, shaped after Proxmox's API documentation - ``/nodes``, ``/nodes/{node}/lxc`` (list,
create), ``/nodes/{node}/lxc/{vmid}/config`` (read, update), ``.../status/current``,
``.../status/start|stop``, ``/nodes/{node}/tasks/{upid}/status`` and ``/access/permissions``
- over HTTPS with an API token (``Authorization: PVEAPIToken=USER@REALM!ID=SECRET``), and
with the failure modes a real cluster shows:

- **HTTP 596** when a long task blocks the daemon (:meth:`ProxmoxStandIn.fail_next`);
- **"CT is locked"** while a task runs on a container (a create or start holds the lock for
  :attr:`ProxmoxStandIn.task_polls` status polls);
- **an empty list instead of 403** for a privilege-separated token without ``VM.Audit``
  (:attr:`ProxmoxStandIn.privileges`), which ``/access/permissions`` reveals;
- **feature flags refused** to anyone but ``root@pam`` ("changing feature flags ... is only
  allowed for root@pam");
- **a failing task** (:meth:`ProxmoxStandIn.fail_task`), its exit status not ``OK``.

It keeps everything in memory and starts nothing: containers are records whose status a task
changes. Executing inside a container (``pct exec``/``pct push``) has no REST endpoint on a real
node either, and is not offered here.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["ProxmoxStandIn"]

_ROOT_ONLY = ("features",)


@dataclass
class _Task:
    upid: str
    vmid: int
    kind: str
    polls_left: int
    fails: bool


@dataclass
class ProxmoxStandIn:
    """One node named ``node`` (see the module docstring); ``start()`` returns its port."""

    token_id: str
    token_secret: str
    node: str = "pve1"
    task_polls: int = 2
    privileges: frozenset[str] = frozenset({"VM.Audit", "VM.Allocate", "VM.Config.CPU",
                                            "VM.Config.Memory", "VM.Config.Disk",
                                            "VM.Config.Network", "VM.PowerMgmt",
                                            "Datastore.AllocateSpace"})
    containers: dict[int, dict[str, str]] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)
    locks: dict[int, str] = field(default_factory=dict)
    tasks: dict[str, _Task] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _failures: list[tuple[re.Pattern[str], int, str]] = field(default_factory=list)
    _failing_kinds: set[str] = field(default_factory=set)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- failure modes --------------------------------------------------------------------

    def fail_next(self, path_pattern: str, status: int = 596,
                  message: str = "Connection timed out") -> None:
        """The next request whose path matches answers ``status`` (596: a blocked daemon)."""
        self._failures.append((re.compile(path_pattern), status, message))

    def fail_task(self, kind: str) -> None:
        """Tasks of ``kind`` (``vzcreate``, ``vzstart``) end with an error exit status."""
        self._failing_kinds.add(kind)

    # -- the server -----------------------------------------------------------------------

    def start(self, folder: Path) -> tuple[int, Path]:
        """Serve HTTPS on a free loopback port with a new self-signed certificate in
        ``folder``; returns ``(port, CA file)`` (the certificate is its own CA)."""
        cert, key = folder / "standin.crt", folder / "standin.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",  # noqa: S603, S607
                        "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True,
                       capture_output=True)
        handler = type("Handler", (_Handler,), {"standin": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return int(server.server_address[1]), cert

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the API --------------------------------------------------------------------------

    def handle(self, method: str, path: str, auth: str, form: dict[str, str]
               ) -> tuple[int, Any, str]:
        """``(status, data, message)`` of one API call."""
        with self._lock:
            self.requests.append((method, path))
            for i, (pattern, status, message) in enumerate(self._failures):
                if pattern.search(path):
                    del self._failures[i]
                    return status, None, message
            user, _, secret = auth.removeprefix("PVEAPIToken=").rpartition("=")
            if user != self.token_id or secret != self.token_secret:
                return 401, None, "authentication failure"
            return self._route(method, path.removeprefix("/api2/json"), form)

    def _route(self, method: str, path: str, form: dict[str, str]) -> tuple[int, Any, str]:
        node = f"/nodes/{self.node}"
        if (method, path) == ("GET", "/nodes"):
            return 200, [{"node": self.node, "status": "online"}], ""
        if (method, path) == ("GET", "/access/permissions"):
            return 200, {"/vms": dict.fromkeys(sorted(self.privileges), 1)}, ""
        if (method, path) == ("GET", f"{node}/lxc"):
            if "VM.Audit" not in self.privileges:
                return 200, [], ""  # a privilege-separated token: no 403, an empty list
            return 200, [{"vmid": str(v), "name": c.get("hostname", ""),
                          "status": self.status[v]} for v, c in sorted(self.containers.items())], ""
        if (method, path) == ("POST", f"{node}/lxc"):
            return self._create(form)
        match = re.fullmatch(rf"{node}/tasks/([^/]+)/status", path)
        if match and method == "GET":
            return self._task_status(urllib.parse.unquote(match.group(1)))
        match = re.fullmatch(rf"{node}/lxc/(\d+)/(config|status/current|status/start|"
                             r"status/stop)", path)
        if not match:
            return 501, None, f"Method '{method} {path}' not implemented"
        vmid, what = int(match.group(1)), match.group(2)
        if vmid not in self.containers:
            return 500, None, (f"Configuration file 'nodes/{self.node}/lxc/{vmid}.conf' does "
                               "not exist")
        if (method, what) == ("GET", "config"):
            lock = {"lock": self.locks[vmid]} if vmid in self.locks else {}
            return 200, {**self.containers[vmid], **lock}, ""
        if (method, what) == ("GET", "status/current"):
            return 200, {"vmid": vmid, "status": self.status[vmid]}, ""
        if vmid in self.locks:
            return 500, None, f"CT is locked ({self.locks[vmid]})"
        if (method, what) == ("PUT", "config"):
            if any(k in form for k in _ROOT_ONLY):
                return 403, None, ("changing feature flags for privileged container is only "
                                   "allowed for root@pam")
            self.containers[vmid].update(form)
            return 200, None, ""
        if method == "POST" and what in ("status/start", "status/stop"):
            kind = "vzstart" if what.endswith("start") else "vzstop"
            return 200, self._new_task(vmid, kind), ""
        return 501, None, f"Method '{method} {path}' not implemented"

    def _create(self, form: dict[str, str]) -> tuple[int, Any, str]:
        vmid = int(form.get("vmid", "0"))
        if vmid in self.containers:
            return 500, None, f"CT {vmid} already exists on node '{self.node}'"
        if any(k in form for k in _ROOT_ONLY):
            return 403, None, ("changing feature flags for privileged container is only "
                               "allowed for root@pam")
        self.containers[vmid] = {k: v for k, v in form.items() if k not in ("vmid", "ostemplate",
                                                                         "start")}
        self.containers[vmid]["ostype"] = "debian"
        self.status[vmid] = "stopped"
        return 200, self._new_task(vmid, "vzcreate"), ""

    def _new_task(self, vmid: int, kind: str) -> str:
        upid = (f"UPID:{self.node}:{secrets.randbelow(1 << 24):08X}:{int(time.time()):08X}:"
                f"{int(time.time()):08X}:{kind}:{vmid}:{self.token_id}:")
        self.tasks[upid] = _Task(upid, vmid, kind, self.task_polls, kind in self._failing_kinds)
        self.locks[vmid] = {"vzcreate": "create"}.get(kind, "disk")
        return upid

    def _task_status(self, upid: str) -> tuple[int, Any, str]:
        task = self.tasks.get(upid)
        if task is None:
            return 500, None, "no such task"
        if task.polls_left > 0:
            task.polls_left -= 1
            return 200, {"upid": upid, "status": "running"}, ""
        self.locks.pop(task.vmid, None)
        if task.fails:
            if task.kind == "vzcreate":
                self.containers.pop(task.vmid, None)
                self.status.pop(task.vmid, None)
            return 200, {"upid": upid, "status": "stopped",
                         "exitstatus": f"{task.kind} failed: unable to create CT"}, ""
        if task.kind == "vzstart":
            self.status[task.vmid] = "running"
        elif task.kind == "vzstop":
            self.status[task.vmid] = "stopped"
        return 200, {"upid": upid, "status": "stopped", "exitstatus": "OK"}, ""


class _Handler(BaseHTTPRequestHandler):
    standin: ProxmoxStandIn

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read ``standin.requests`` instead."""

    def _answer(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(body or parsed.query).items()}
        status, data, message = self.standin.handle(
            method, parsed.path, self.headers.get("Authorization", ""), form)
        payload = json.dumps({"data": data} if status == 200 else
                             {"data": None, "message": message}).encode()
        self.send_response(status, message or None)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")
