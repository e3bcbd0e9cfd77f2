"""A stand-in for a Proxmox node's SSH side, for tests: a real OpenSSH server with a ``pct``.

This is **not a Proxmox node** and runs no container. It stands in for one where the deploy
tool meets it over SSH (:class:`~mts1b_deploy.nodessh.NodeShell`): Debian's ``sshd`` from
``openssh-server``, run as an ordinary process on a free port of 127.0.0.1 with a generated host
key (pinned in a known-hosts file), one authorized client key and no password login; the
commands run in the login are the real client's. On its ``PATH`` a ``pct`` script stands in
for Proxmox's:

- ``pct push VMID FILE DEST [--perms MODE]`` copies FILE to ``<containers>/<VMID>/<DEST>``;
- ``pct exec VMID -- CMD...`` runs CMD on this machine in a private mount namespace where
  ``<containers>/<VMID>/opt`` is mounted over ``/opt`` - so what was pushed under ``/opt`` is
  there, and what the command writes under ``/opt`` stays in the container's folder - with a
  ``systemctl`` that only records its arguments in ``<containers>/<VMID>/systemctl.log``;
- a VMID without a folder fails as ``pct`` does for a missing container.

The rest of the "container" is this machine (its ``python3``, ``tar``, ``sh``). The mount
namespace needs root (``unshare -m``); :func:`why_not` says what is missing, for a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mts1b_deploy.nodessh import NodeShell

__all__ = ["SshNodeStandIn", "why_not"]

SSHD = Path("/usr/sbin/sshd")

_PCT = r"""#!/bin/sh
# pct stand-in (mts1b_deploy.nodestandin): NOT Proxmox's pct; containers are folders.
CT={containers}
cmd="$1"; vmid="$2"
if [ ! -d "$CT/$vmid" ]; then
  echo "Configuration file 'nodes/standin/lxc/$vmid.conf' does not exist" >&2; exit 2
fi
case "$cmd" in
  push)
    src="$3"; dest="$4"; shift 4
    mkdir -p "$CT/$vmid$(dirname "$dest")"
    cp "$src" "$CT/$vmid$dest"
    if [ "$1" = "--perms" ]; then chmod "$2" "$CT/$vmid$dest"; fi ;;
  exec)
    shift 2; [ "$1" = "--" ] && shift
    mkdir -p "$CT/$vmid/opt"
    PCT_STANDIN_CT="$CT/$vmid" PATH="{bin}:$PATH" exec unshare -m sh -c \
      'mount --bind "$0" /opt && cd / && exec "$@"' "$CT/$vmid/opt" "$@" ;;
  *) echo "pct stand-in: only push and exec (got $cmd)" >&2; exit 2 ;;
esac
"""
_SYSTEMCTL = """#!/bin/sh
# systemctl stand-in inside a stand-in container: records, runs nothing.
echo "$*" >> "$PCT_STANDIN_CT/systemctl.log"
"""
_CONFIG = """Port {port}
ListenAddress 127.0.0.1
HostKey {home}/host_ed25519
PidFile {home}/sshd.pid
AuthorizedKeysFile {home}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
SetEnv PATH={bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""


def why_not() -> str | None:
    """Why the stand-in cannot run here (None when it can)."""
    if not SSHD.exists():
        return f"no {SSHD} (apt-get install openssh-server)"
    for tool in ("ssh", "ssh-keygen", "unshare"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    if os.geteuid() != 0:
        return "pct exec's stand-in needs root (a private mount namespace)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)  # noqa: S607
    if probe.returncode != 0:
        return "unshare -m is not permitted here"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SshNodeStandIn:
    """The stand-in's files live in ``home``; containers are ``home/containers/<vmid>``."""

    home: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def containers(self) -> Path:
        return self.home / "containers"

    def add_container(self, vmid: int) -> Path:
        """Make container ``vmid`` exist (an empty folder)."""
        folder = self.containers / str(vmid)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def shell(self) -> NodeShell:
        """A :class:`NodeShell` logging in to the stand-in with its client key."""
        return NodeShell("127.0.0.1", user=_user(), port=self.port,
                         identity=self.home / "client_ed25519",
                         known_hosts=self.home / "known_hosts", connect_timeout=5)

    def start(self) -> None:
        home = self.home
        bin_dir = home / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        self.containers.mkdir(exist_ok=True)
        for key in ("host_ed25519", "client_ed25519"):
            if not (home / key).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",  # noqa: S603,S607
                                "-C", f"mts1b-standin-{key}", "-f", str(home / key)],
                               check=True)
        (home / "authorized_keys").write_text((home / "client_ed25519.pub").read_text())
        pct = bin_dir / "pct"
        pct.write_text(_PCT.replace("{containers}", str(self.containers))
                       .replace("{bin}", str(bin_dir / "ct")))
        (bin_dir / "ct").mkdir(exist_ok=True)
        systemctl = bin_dir / "ct" / "systemctl"
        systemctl.write_text(_SYSTEMCTL)
        for script in (pct, systemctl):
            script.chmod(0o755)
        self.port = self.port or _free_port()
        host_key = (home / "host_ed25519.pub").read_text().split()
        (home / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key[0]} "
                                          f"{host_key[1]}\n")
        config = home / "sshd_config"
        config.write_text(_CONFIG.format(port=self.port, home=home, user=_user(),
                                         bin=bin_dir))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        with (home / "sshd.log").open("ab") as log:
            self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],  # noqa: S603
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(home / 'sshd.log').read_text()[-1500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _user() -> str:
    import getpass

    return getpass.getuser()
