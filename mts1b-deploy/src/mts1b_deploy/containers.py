"""A release installed inside a Proxmox container: ``mts1b-deploy push``.

The release is the one built and checked on the deploy machine (``mts1b-deploy install --root
STAGING``: its wheels hash-checked against ``uv.lock``, its config); what travels is that folder
without its virtualenv - wheels, ``requirements.txt`` with every hash, ``config/``,
``release.json`` - as one tar file, through the node (:class:`~mts1b_deploy.nodessh.NodeShell`,
``pct push``). In the container (``pct exec``), with the same layout as the local target:

1. the tar is unpacked into ``<root>/releases/<generation>-<sha12>/`` - the folder's final
   path, since a virtualenv's scripts name their own path - with ``release.json`` held back;
2. every wheel is checked against the sha256 ``release.json`` records (``sha256sum -c``), then
   a virtualenv is made and filled with ``pip install --no-index --require-hashes --no-deps``
   from the release's own wheels: these bytes or nothing, no index reached from the container.
   The virtualenv is made without pip; the container's own pip installs into it (``pip
   --python``, pip 22.3 or later: Debian's ``python3-pip``), which saves ``ensurepip``'s
   seconds, else ``ensurepip`` puts one in it (Debian's ``python3-venv``);
3. ``release.json`` is put in place last: only a folder with it counts as installed, and a
   failed install is removed; a release already installed there is not installed again;
4. ``current`` is switched with ``rename(2)`` of a new symlink (``mv -T``), each install and
   switch appended to the container's ``generations.jsonl`` (the local target's format, so
   :class:`~mts1b_deploy.local.LocalTarget` reads a container's layout too), and with
   ``service`` its unit (:mod:`mts1b_deploy.units`) is restarted.

A release already installed in the container is not pushed again: pushing it only switches
``current`` back to it - a rollback. :func:`rollout_in_container` adds the NATS gates and the
automatic switch back when one fails.

The container's ``python3`` must be the minor version the release was built for (its wheels'
tags; Debian 12's is 3.11). Every step is one shell script run with ``sh -e`` in the container,
whose arguments are quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.gates import Gate
from mts1b_deploy.history import Generation, Switch
from mts1b_deploy.nodessh import NodeShell
from mts1b_deploy.rollout import GateFailed
from mts1b_deploy.supervisor import Supervisor
from mts1b_deploy.units import unit_name

__all__ = ["DELIVERY_PATH", "ContainerRelease", "container_state", "pack_release",
           "push_delivery", "push_release", "rollout_in_container", "switch_in_container"]

Log = Callable[[str], None]
PENDING = "release.pending.json"
DELIVERY_PATH = "/etc/mts1b/vault-delivery.json"
"""Where a service's Vault delivery lands in its container (``vault login --delivery``)."""
_ROOT = re.compile(r"^/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_NO_LOCAL_PROCESSES = Supervisor(Path("/nonexistent/mts1b-deploy"))
"""What the NATS gates get for the supervisor they ignore: no process runs here."""

_INSTALL = r"""
R={root}; N={name}; D="$R/releases/$N"
mkdir -p "$R/releases" "$R/incoming"
if [ -f "$D/release.json" ]; then
  echo "present"
else
  rm -rf "$D"; mkdir -p "$D"
  if ! (tar -xf "$R/incoming/$N.tar" -C "$D" &&
        (cd "$D/wheels" && sha256sum --quiet --strict -c ../SHA256SUMS) &&
        python3 -m venv --without-pip "$D/venv" &&
        if python3 -m pip --python "$D/venv/bin/python" --version >/dev/null 2>&1; then
          PIP="python3 -m pip --python $D/venv/bin/python"
        else
          "$D/venv/bin/python" -m ensurepip --default-pip >/dev/null &&
            PIP="$D/venv/bin/python -m pip"
        fi &&
        $PIP install --quiet --disable-pip-version-check --no-index \
          --find-links "$D/wheels" --require-hashes --no-deps -r "$D/requirements.txt"); then
    rm -rf "$D" "$R/incoming/$N.tar"; echo "install failed" >&2; exit 3
  fi
  mv "$D/{pending}" "$D/release.json"
  printf '%s\n' {generation_line} >> "$R/generations.jsonl"
  echo "installed"
fi
rm -f "$R/incoming/$N.tar"
"""
_SWITCH = r"""
R={root}; N={name}
[ -f "$R/releases/$N/release.json" ] || {{ echo "$N is not installed here" >&2; exit 4; }}
ln -s "releases/$N" "$R/.current-$N" && mv -T "$R/.current-$N" "$R/current"
printf '%s\n' {switch_line} >> "$R/generations.jsonl"
"""
_STATE = r"""
R={root}; N={name}
readlink "$R/current" || echo "-"
[ -f "$R/releases/$N/release.json" ] && echo present || echo absent
"""


@dataclass(frozen=True)
class ContainerRelease:
    """Where a release went: the container, its folder there and whether it was new."""

    vmid: int
    directory: str
    installed: bool
    restarted: str | None
    previous: str | None = None
    """The release ``current`` pointed at before (its folder name), if any."""


def pack_release(folder: Path, out: Path) -> Path:
    """``folder`` (a kept release) as one tar file, without ``venv/``, with ``release.json``
    renamed so that it lands last and a ``SHA256SUMS`` of its wheels (from ``release.json``:
    checked in the container before anything is installed, pip checks them again)."""
    if not (folder / "release.json").is_file():
        raise ReleaseError(f"{folder} is not a complete release (no release.json)",
                           path=str(folder))
    record = json.loads((folder / "release.json").read_text(encoding="utf-8"))
    sums = out.parent / "SHA256SUMS"
    sums.write_text("".join(f"{w['sha256']}  {w['file']}\n" for w in record["wheels"]),
                    encoding="utf-8")
    with tarfile.open(out, "w") as tar:
        tar.add(sums, arcname="SHA256SUMS")
        for path in sorted(folder.iterdir()):
            if path.name in ("venv", "release.json"):
                continue
            tar.add(path, arcname=path.name)
        tar.add(folder / "release.json", arcname=PENDING)
    return out


def _history_lines(record: dict[str, Any], reason: str) -> tuple[str, str]:
    """The container's ``generations.jsonl`` lines (the local target's format, history.py):
    the generation when it is installed there, and the switch to it."""
    fields = {f.name for f in dataclasses.fields(Generation)}
    generation = Generation(**{k: v for k, v in record.items() if k in fields})
    switch = Switch(generation.generation, reason)
    return (json.dumps(dataclasses.asdict(generation), sort_keys=True),
            json.dumps(dataclasses.asdict(switch), sort_keys=True))


def container_state(shell: NodeShell, vmid: int, name: str, *, root: str = "/opt/mts"
                    ) -> tuple[str | None, bool]:
    """``(the release current points at, or None; whether release name is installed)``."""
    out = shell.pct_exec(vmid, ["sh", "-ec", _STATE.format(root=shlex.quote(root),
                                                           name=shlex.quote(name))],
                         what=f"reading CT {vmid}'s releases").split()
    current = out[0].rsplit("/", 1)[-1] if out and out[0] != "-" else None
    return current, bool(out) and out[-1] == "present"


def switch_in_container(shell: NodeShell, vmid: int, name: str, reason: str, *,
                        root: str = "/opt/mts", generation: int = 0) -> None:
    """Point the container's ``current`` at its installed release ``name`` (``mv -T`` of a
    new symlink) and record the switch in its ``generations.jsonl``."""
    line = json.dumps(dataclasses.asdict(Switch(generation, reason)), sort_keys=True)
    shell.pct_exec(vmid, ["sh", "-ec", _SWITCH.format(
        root=shlex.quote(root), name=shlex.quote(name), switch_line=shlex.quote(line))],
        what=f"switching CT {vmid} to {name}")


def push_release(shell: NodeShell, vmid: int, folder: Path, *, root: str = "/opt/mts",
                 service: str | None = None, log: Log = lambda _: None) -> ContainerRelease:
    """Install the kept release ``folder`` in container ``vmid`` through ``shell`` (see the
    module docstring; not pushed again when it is installed there) and make it current there;
    with ``service``, restart its unit."""
    record = json.loads((folder / "release.json").read_text(encoding="utf-8"))
    name = str(record["directory"])
    if name != folder.name or not _ROOT.match(root):
        raise ReleaseError(f"{folder}: not a release folder, or {root!r} not an absolute path "
                           "of letters, digits and / _ . -", path=str(folder))
    previous, present = container_state(shell, vmid, name, root=root)
    generation_line, _ = _history_lines(record, "push")
    if not present:
        with tempfile.TemporaryDirectory(prefix="mts1b-push-") as scratch:
            tar = pack_release(folder, Path(scratch) / f"{name}.tar")
            size = tar.stat().st_size
            shell.pct_exec(vmid, ["mkdir", "-p", f"{root}/incoming"])
            shell.pct_push(vmid, tar, f"{root}/incoming/{name}.tar")
        log(f"CT {vmid}: release {name} pushed ({size / 1e6:.1f} MB, without its virtualenv)")
        script = _INSTALL.format(root=shlex.quote(root), name=shlex.quote(name),
                                 pending=PENDING, generation_line=shlex.quote(generation_line))
        shell.pct_exec(vmid, ["sh", "-ec", script], what=f"installing {name} in CT {vmid}")
    switch_in_container(shell, vmid, name, "push", root=root,
                        generation=int(record["generation"]))
    log(f"CT {vmid}: release {name} {'was installed already' if present else 'installed'}; "
        f"current is {name}")
    restarted = None
    if service is not None:
        restarted = unit_name(service)
        shell.pct_exec(vmid, ["systemctl", "restart", restarted])
        log(f"CT {vmid}: {restarted} restarted")
    return ContainerRelease(vmid, f"{root}/releases/{name}", not present, restarted, previous)


def rollout_in_container(shell: NodeShell, vmid: int, folder: Path, service: str,
                         gates: Sequence[Gate], *, root: str = "/opt/mts",
                         guard: Callable[[Log], None] | None = None,
                         log: Log = lambda _: None) -> ContainerRelease:
    """:func:`push_release` behind the NATS gates (the OMS answering, heartbeats, the kill
    switch unchanged; they watch the bus, wherever the service runs): ``guard`` first (the
    OMS's working orders), and when a gate fails the container's ``current`` goes back to the
    release it pointed at before, its unit restarts, and :class:`GateFailed` says so."""
    if guard is not None:
        guard(log)
    for gate in gates:
        gate.begin()
    done = push_release(shell, vmid, folder, root=root, service=service, log=log)
    for gate in gates:
        why = gate.check(_NO_LOCAL_PROCESSES)
        if why is None:
            log(f"gate {gate.name}: ok")
            continue
        log(f"gate {gate.name}: FAILED - {why}")
        if done.previous is None or done.previous == folder.name:
            raise GateFailed(f"{folder.name} failed the gate {gate.name!r} in CT {vmid} ({why}); "
                             "there is no earlier release there to go back to",
                             gate=gate.name, vmid=vmid)
        switch_in_container(shell, vmid, done.previous,
                            f"automatic rollback: gate {gate.name} failed: {why}", root=root,
                            generation=int(done.previous.split("-", 1)[0]))
        shell.pct_exec(vmid, ["systemctl", "restart", unit_name(service)])
        raise GateFailed(f"{folder.name} failed the gate {gate.name!r} in CT {vmid} ({why}); "
                         f"rolled back to {done.previous}, whose {unit_name(service)} runs "
                         "again", gate=gate.name, vmid=vmid, current=done.previous)
    return done


def push_delivery(shell: NodeShell, vmid: int, delivery: Path, *,
                  dest: str = DELIVERY_PATH, log: Log = lambda _: None) -> None:
    """Put a service's Vault delivery (``vault bootstrap``'s ``delivery/<service>.json``: a
    role id and a response-wrapped, single-use secret id) into its container, mode 0600, for
    ``mts1b-deploy vault login`` there. Its content is never printed."""
    if not delivery.is_file():
        raise ReleaseError(f"--delivery {delivery} is not a file", field="--delivery",
                           value=str(delivery))
    shell.pct_exec(vmid, ["mkdir", "-p", "-m", "0700", dest.rsplit("/", 1)[0] or "/"])
    shell.pct_push(vmid, delivery, dest, perms="0600")
    log(f"CT {vmid}: Vault delivery pushed to {dest} (mode 0600); in the container run "
        f"mts1b-deploy vault login --delivery {dest} as the service's user")
