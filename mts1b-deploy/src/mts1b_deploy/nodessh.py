"""Commands on a Proxmox node over SSH: ``pct push`` and ``pct exec`` into its containers.

Why SSH and not the API: the Proxmox VE API has no exec into an LXC container and no file
upload into one; ``pct push`` / ``pct exec`` on the node are the way, so the deploy tool logs in
to the node (OpenSSH's client, a key, the node's host key pinned in a known-hosts file) and
runs them there.

Why each option: ``BatchMode`` (never a password prompt: a deploy is unattended),
``StrictHostKeyChecking=yes`` with the given ``known_hosts`` (a node whose key is unknown or
changed is refused, not trusted on first use), ``ConnectTimeout``. Remote commands are joined
with :func:`shlex.join`, so an argument reaches ``pct`` as one word whatever it holds. A file
goes to the node's ``/var/tmp`` first (``ssh`` with the file as stdin, mode 0600), then into the
container with ``pct push``, and the node's copy is removed whatever happens.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mts1b_platform.redaction import redact

from mts1b_deploy.errors import DeployError

__all__ = ["NodeShell", "NodeShellError"]


class NodeShellError(DeployError):
    """A command on the node (or in a container through it) failed; ``context`` names it."""

    code = "DEPLOY.NODE_SSH"


@dataclass(frozen=True)
class NodeShell:
    """One Proxmox node reached over SSH as ``user@host:port``."""

    host: str
    user: str = "root"
    port: int = 22
    identity: Path | None = None
    """The private key to log in with (default: the ssh client's own choice)."""
    known_hosts: Path | None = None
    """The known-hosts file holding the node's host key (default: the user's)."""
    connect_timeout: float = 10.0

    def _ssh(self) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
                "-o", "LogLevel=ERROR", "-p", str(self.port)]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return [*argv, f"{self.user}@{self.host}"]

    def run(self, argv: Sequence[str], *, stdin: Path | None = None, timeout: float = 900.0,
            what: str | None = None) -> str:
        """Run ``argv`` on the node; its stdout. Fails naming ``what`` (default: the command)
        with the end of its stderr, redacted."""
        command = shlex.join(argv)
        label = what or command
        try:
            if stdin is not None:
                with stdin.open("rb") as source:
                    done = subprocess.run([*self._ssh(), command], stdin=source,  # noqa: S603
                                          capture_output=True, timeout=timeout, check=False)
            else:
                done = subprocess.run([*self._ssh(), command],  # noqa: S603
                                      stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise NodeShellError(f"{self.host}: {label} did not finish within {timeout:g} s",
                                 host=self.host) from None
        except FileNotFoundError:
            raise NodeShellError("no ssh client on this machine (OpenSSH's ssh)",
                                 host=self.host) from None
        if done.returncode != 0:
            tail = " / ".join(done.stderr.decode(errors="replace").strip().splitlines()[-4:])
            where = "ssh could not log in to" if done.returncode == 255 else "failed on"
            raise NodeShellError(redact(f"{label} {where} {self.user}@{self.host}:{self.port} "
                                        f"(exit {done.returncode}): {tail}"),
                                 host=self.host, exit=done.returncode)
        return done.stdout.decode(errors="replace")

    def pct_exec(self, vmid: int, argv: Sequence[str], *, timeout: float = 900.0,
                 what: str | None = None) -> str:
        """``pct exec VMID -- ARGV`` on the node: a command in the container."""
        return self.run(["pct", "exec", str(vmid), "--", *argv], timeout=timeout,
                        what=what or f"pct exec {vmid} -- {shlex.join(argv)}")

    def pct_push(self, vmid: int, local: Path, dest: str, *, perms: str | None = None) -> None:
        """Copy ``local`` to ``dest`` in container ``vmid`` (``pct push``, optional
        ``--perms``), through a mode-0600 file in the node's ``/var/tmp``."""
        # on the node, not here: a random name created with umask 077 (never followed if there)
        staging = f"/var/tmp/mts1b-deploy-{secrets.token_hex(8)}"  # noqa: S108
        self.run(["sh", "-c", f"umask 077 && set -C && cat > {shlex.quote(staging)}"], stdin=local,
                 what=f"copying {local.name} to the node")
        try:
            self.run(["pct", "push", str(vmid), staging, dest,
                      *(["--perms", perms] if perms else [])],
                     what=f"pct push {vmid} {local.name} {dest}")
        finally:
            self.run(["rm", "-f", staging], what="removing the node's copy")
