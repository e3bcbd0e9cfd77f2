"""What an inventory asks for: one Proxmox container per service, with the exact parameters.

Why separate from the Proxmox client: ``plan`` must work without a node (review an inventory
before anything exists), and the parameters built here are the ones ``POST
/nodes/{node}/lxc`` receives (names from the Proxmox VE API: ``ostemplate``, ``rootfs``,
``net0``, ``mpN``, ``features``), so what the plan shows is what would be sent.

The ``features`` line (``nesting=1``) is marked: Proxmox lets only ``root@pam`` change a
container's feature flags, never an API token, so it is set once by the node's administrator.
"""

from __future__ import annotations

from dataclasses import dataclass

from mts1b_deploy.inventory import Inventory, Service

__all__ = ["PlannedContainer", "container_params", "plan", "render_plan"]

ROOT_ONLY = ("features",)
"""Parameters that only root@pam may set (an API token is refused)."""


@dataclass(frozen=True)
class PlannedContainer:
    """One container the inventory asks for, and the strategies and funds it runs."""

    service: str
    node: str
    params: dict[str, str]
    runs: tuple[str, ...]


def container_params(inv: Inventory, name: str) -> dict[str, str]:
    """The ``POST /nodes/{node}/lxc`` parameters of service ``name``'s container."""
    svc: Service = inv.services[name]
    node = inv.node(svc.node)
    net = inv.network
    net0 = (f"name=eth0,bridge={net.bridge},ip={svc.ip}/{net.cidr.prefixlen},"
            f"gw={net.gateway}" + (f",tag={net.vlan}" if net.vlan else ""))
    params = {
        "vmid": str(svc.vmid),
        "hostname": f"mts-{inv.name}-{name}",
        "ostemplate": node.template,
        "cores": str(svc.cores),
        "memory": str(svc.memory_mb),
        "swap": str(svc.swap_mb),
        "rootfs": f"{node.storage}:{svc.disk_gb}",
        "net0": net0,
        "unprivileged": "1" if svc.unprivileged else "0",
        "onboot": "1" if svc.onboot else "0",
    }
    if net.nameserver is not None:
        params["nameserver"] = str(net.nameserver)
    if svc.nesting:
        params["features"] = "nesting=1"
    for i, mount in enumerate(svc.mounts):
        params[f"mp{i}"] = (f"{mount.storage or node.storage}:{mount.size_gb},mp={mount.path},"
                            f"backup={1 if mount.backup else 0}")
    return params


def _runs(inv: Inventory, name: str) -> tuple[str, ...]:
    if name == "research":
        return tuple(f"strategy {s} (fund {f})" for f, funds in sorted(inv.funds.items())
                     for s in funds.strategies)
    if name in ("oms", "treasury"):
        return tuple(f"fund {f}" for f in sorted(inv.funds))
    return ()


def plan(inv: Inventory) -> list[PlannedContainer]:
    """Every container of the inventory, in start order (:data:`~.inventory.SERVICES`)."""
    return [PlannedContainer(name, svc.node, container_params(inv, name), _runs(inv, name))
            for name, svc in inv.ordered()]


def render_plan(inv: Inventory, planned: list[PlannedContainer]) -> str:
    """The plan as text: what would be created on which node, parameter by parameter."""
    lines = [f"inventory {inv.name}: {len(planned)} container(s) on "
             f"{len({p.node for p in planned})} node(s) via {inv.proxmox.api_url} "
             f"(token {inv.proxmox.token_id}, secret from {inv.proxmox.token_secret_ref})"]
    for p in planned:
        lines.append(f"+ create CT {p.params['vmid']} {p.params['hostname']} on {p.node} "
                     f"({p.service})")
        for key, value in p.params.items():
            if key in ("vmid", "hostname"):
                continue
            note = "   # root@pam only: set once by the node's administrator" \
                if key in ROOT_ONLY else ""
            lines.append(f"    {key} = {value}{note}")
        for item in p.runs:
            lines.append(f"    runs {item}")
    return "\n".join(lines)
