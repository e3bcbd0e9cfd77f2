"""A release installed inside a Proxmox container: ``mts1b-deploy push``.

The release is the one built and checked on the deploy machine (``mts1b-deploy install --root
STAGING``: its wheels hash-checked against ``uv.lock``, its config); what travels is that folder
without its virtualenv - wheels, ``requirements.txt`` with every hash, ``config/``,
``release.json`` - as one tar file, through the node (:class:`~mts1b_deploy.nodessh.NodeShell`,
``pct push``). In the container (``pct exec``), with the same layout as the local target:

1. the tar is unpacked into ``<root>/releases/<generation>-<sha12>/`` - the folder's final
   path, since a virtualenv's scripts name their own path - with ``release.json`` held back;
2. every wheel is checked against the sha256 ``release.json`` records (``sha256sum -c``), then
   ``python3 -m venv`` and ``pip install --no-index --require-hashes --no-deps`` from the
   release's own wheels: these bytes or nothing, no index reached from the container;
3. ``release.json`` is put in place last: only a folder with it counts as installed, and a
   failed install is removed; a release already installed there is not installed again;
4. ``current`` is switched with ``rename(2)`` of a new symlink (``mv -T``), and with
   ``restart`` the service's unit (:mod:`mts1b_deploy.units`) is restarted.

The container's ``python3`` must be the minor version the release was built for (its wheels'
tags; Debian 12's is 3.11). Every step is one shell script run with ``sh -e`` in the container,
whose arguments are quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import json
import shlex
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.nodessh import NodeShell
from mts1b_deploy.units import unit_name

__all__ = ["DELIVERY_PATH", "ContainerRelease", "pack_release", "push_delivery",
           "push_release"]

Log = Callable[[str], None]
PENDING = "release.pending.json"
DELIVERY_PATH = "/etc/mts1b/vault-delivery.json"
"""Where a service's Vault delivery lands in its container (``vault login --delivery``)."""

_INSTALL = r"""
R={root}; N={name}; D="$R/releases/$N"
mkdir -p "$R/releases" "$R/incoming"
if [ -f "$D/release.json" ]; then
  echo "present"
else
  rm -rf "$D"; mkdir -p "$D"
  if ! (tar -xf "$R/incoming/$N.tar" -C "$D" &&
        (cd "$D/wheels" && sha256sum --quiet --strict -c ../SHA256SUMS) &&
        python3 -m venv "$D/venv" &&
        "$D/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
          --find-links "$D/wheels" --require-hashes --no-deps -r "$D/requirements.txt"); then
    rm -rf "$D" "$R/incoming/$N.tar"; echo "install failed" >&2; exit 3
  fi
  mv "$D/{pending}" "$D/release.json"
  echo "installed"
fi
rm -f "$R/incoming/$N.tar"
ln -s "releases/$N" "$R/.current-$N" && mv -T "$R/.current-$N" "$R/current"
"""


@dataclass(frozen=True)
class ContainerRelease:
    """Where a release went: the container, its folder there and whether it was new."""

    vmid: int
    directory: str
    installed: bool
    restarted: str | None


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


def push_release(shell: NodeShell, vmid: int, folder: Path, *, root: str = "/opt/mts",
                 service: str | None = None, log: Log = lambda _: None) -> ContainerRelease:
    """Install the kept release ``folder`` in container ``vmid`` through ``shell`` (see the
    module docstring) and make it current there; with ``service``, restart its unit."""
    generation = json.loads((folder / "release.json").read_text(encoding="utf-8"))
    name = str(generation["directory"])
    if name != folder.name or not root.startswith("/"):
        raise ReleaseError(f"{folder}: not a release folder, or {root!r} not an absolute path",
                           path=str(folder))
    with tempfile.TemporaryDirectory(prefix="mts1b-push-") as scratch:
        tar = pack_release(folder, Path(scratch) / f"{name}.tar")
        size = tar.stat().st_size
        shell.pct_exec(vmid, ["mkdir", "-p", f"{root}/incoming"])
        shell.pct_push(vmid, tar, f"{root}/incoming/{name}.tar")
    log(f"CT {vmid}: release {name} pushed ({size / 1e6:.1f} MB, without its virtualenv)")
    script = _INSTALL.format(root=shlex.quote(root), name=shlex.quote(name), pending=PENDING)
    out = shell.pct_exec(vmid, ["sh", "-ec", script], what=f"installing {name} in CT {vmid}")
    installed = "installed" in out.split()
    log(f"CT {vmid}: release {name} "
        f"{'installed' if installed else 'was installed already'}; current is {name}")
    restarted = None
    if service is not None:
        restarted = unit_name(service)
        shell.pct_exec(vmid, ["systemctl", "restart", restarted])
        log(f"CT {vmid}: {restarted} restarted")
    return ContainerRelease(vmid, f"{root}/releases/{name}", installed, restarted)


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
