"""The inventory: which Proxmox nodes, which container runs each service, and where funds run.

Why a validated file and not a free-form YAML: a typo in a container's address or a missing
service surfaces at ``plan`` time, named by line, field and value, and not as a half-built
cluster. The file holds no secret: the Proxmox API token is a *reference* (``env:NAME``,
``file:/path`` or ``vault:<path>#<key>``), and a value that looks like the token itself is
refused without being repeated.

One container per service (:data:`SERVICES`): NATS, PostgreSQL, Vault, the OMS, the brokers,
research, the treasury and operations. Addresses lie in the network's CIDR, are unique and are
not the gateway; container ids are unique; every container names a declared node.

>>> inv = load_inventory("inventory.yaml")   # doctest: +SKIP
>>> inv.services["oms"].ip
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mts1b_deploy.errors import InventoryError

__all__ = ["SERVICES", "Funds", "Inventory", "MountPoint", "Network", "Node", "Proxmox",
           "Service", "load_inventory", "parse_inventory"]

SERVICES: tuple[str, ...] = ("nats", "postgres", "vault", "oms", "brokers", "research",
                             "treasury", "operations")
"""The services, one container each, in the order they are created and started."""

_NAME = r"^[a-z][a-z0-9-]{0,62}$"
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_TOKEN_ID = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+![A-Za-z][A-Za-z0-9._-]*$")
_REF = re.compile(r"^(env:[A-Z_][A-Z0-9_]*|file:/\S+|vault:[a-z0-9/_-]+#[A-Za-z0-9_]+)$")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
REDACTED = "<not shown: looks like a secret>"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Proxmox(_Model):
    """The Proxmox VE API and its token (a reference to it: never the secret)."""

    api_url: str = Field(pattern=r"^https://[^\s/]+(:\d+)?/?$")
    token_id: str
    token_secret_ref: str
    verify_tls: bool = True
    timeout_s: float = Field(default=30.0, ge=5.0, le=600.0)

    @field_validator("token_id")
    @classmethod
    def _token_id(cls, value: str) -> str:
        if not _TOKEN_ID.match(value):
            raise ValueError("must be USER@REALM!TOKENID (e.g. deploy@pve!provisioner)")
        return value

    @field_validator("token_secret_ref")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not _REF.match(value):
            raise ValueError("must be a reference to the secret - env:NAME, file:/path or "
                             "vault:<path>#<key> - never the secret itself")
        return value


class Node(_Model):
    """A Proxmox node: where its containers are created, reached over SSH for ``pct push``."""

    name: str = Field(pattern=_NAME)
    ssh_host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:-]+$")
    ssh_user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    ssh_port: int = Field(default=22, ge=1, le=65535)
    storage: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    template: str = Field(pattern=r"^[A-Za-z0-9_-]+:vztmpl/\S+$")


class Network(_Model):
    """The bridge every container joins and the addresses it uses."""

    bridge: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    nameserver: ipaddress.IPv4Address | None = None
    vlan: int | None = Field(default=None, ge=1, le=4094)


class MountPoint(_Model):
    """A volume mounted into a container (``mpN``), for data that outlives a release."""

    path: str = Field(pattern=r"^/[A-Za-z0-9/_.-]*$")
    size_gb: int = Field(ge=1, le=65536)
    storage: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    backup: bool = True


class Service(_Model):
    """One service's container: where, how big, its address, its volumes."""

    node: str = Field(pattern=_NAME)
    vmid: int = Field(ge=100, le=999_999_999)
    ip: ipaddress.IPv4Address
    cores: int = Field(default=1, ge=1, le=128)
    memory_mb: int = Field(default=1024, ge=128, le=1_048_576)
    swap_mb: int = Field(default=0, ge=0, le=1_048_576)
    disk_gb: int = Field(default=8, ge=2, le=65536)
    unprivileged: bool = True
    nesting: bool = Field(default=True, description="systemd's sandboxing needs it inside LXC")
    onboot: bool = True
    mounts: tuple[MountPoint, ...] = Field(default=(), max_length=10)


class Funds(_Model):
    """A fund and the strategies that trade for it (the research container runs them)."""

    strategies: tuple[str, ...] = Field(min_length=1)

    @field_validator("strategies")
    @classmethod
    def _ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.match(_ID, item):
                raise ValueError(f"strategy id {item!r} must match {_ID}")
        if len(set(value)) != len(value):
            raise ValueError("a strategy is listed twice")
        return value


class Inventory(_Model):
    """The whole inventory (see the module docstring for the rules checked across fields)."""

    name: str = Field(pattern=_NAME)
    proxmox: Proxmox
    nodes: tuple[Node, ...] = Field(min_length=1)
    network: Network
    services: dict[str, Service]
    funds: dict[str, Funds] = Field(default_factory=dict)

    def ordered(self) -> Iterator[tuple[str, Service]]:
        """The services in :data:`SERVICES` order."""
        for name in SERVICES:
            yield name, self.services[name]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def parse_inventory(text: str, source: str = "<inventory>") -> Inventory:
    """The inventory in YAML ``text``; :class:`InventoryError` lists every problem found."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InventoryError(source, [{
            "line": mark.line + 1 if mark is not None else None, "field": "(yaml)",
            "value": "-", "reason": str(getattr(exc, "problem", None) or exc)}]) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise InventoryError(source, [{"line": 1, "field": "(document)", "value": "-",
                                       "reason": "the inventory must be a mapping"}])
    problems = list(_duplicate_keys(root, ()))
    data = yaml.safe_load(text)
    if problems:
        raise InventoryError(source, problems)
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(source, [_pydantic_problem(root, data, e)
                                      for e in exc.errors()]) from None
    problems = [{"line": _line(root, loc), "field": _dotted(loc), "value": repr(value),
                 "reason": reason} for loc, value, reason in _cross_checks(inventory)]
    if problems:
        raise InventoryError(source, problems)
    return inventory


def load_inventory(path: str | Path) -> Inventory:
    """The inventory in the YAML file at ``path`` (errors name it, the line and the field)."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(str(where), [{"line": None, "field": "(file)", "value": str(where),
                                           "reason": f"cannot read it: {type(exc).__name__}"}]
                             ) from None
    return parse_inventory(text, str(where))


# -- checks across fields ------------------------------------------------------------------


def _cross_checks(inv: Inventory) -> Iterator[tuple[tuple[str | int, ...], object, str]]:
    for name in inv.services:
        if name not in SERVICES:
            yield ("services", name), name, f"not a service; the services are {list(SERVICES)}"
    for name in SERVICES:
        if name not in inv.services:
            yield ("services",), name, "missing: every service needs its container"
    nodes = [n.name for n in inv.nodes]
    for i, name in enumerate(nodes):
        if name in nodes[:i]:
            yield ("nodes", i, "name"), name, "a node is declared twice"
    net = inv.network
    if net.gateway not in net.cidr:
        yield ("network", "gateway"), str(net.gateway), f"not in network.cidr {net.cidr}"
    vmids: dict[int, str] = {}
    ips: dict[ipaddress.IPv4Address, str] = {}
    for name, svc in inv.services.items():
        if svc.node not in nodes:
            yield ("services", name, "node"), svc.node, f"no such node; the nodes are {nodes}"
        if svc.vmid in vmids:
            yield (("services", name, "vmid"), svc.vmid,
                   f"the same container id as services.{vmids[svc.vmid]}")
        vmids.setdefault(svc.vmid, name)
        if svc.ip not in net.cidr or svc.ip in (net.cidr.network_address,
                                                 net.cidr.broadcast_address):
            yield ("services", name, "ip"), str(svc.ip), f"not a host address of {net.cidr}"
        elif svc.ip == net.gateway:
            yield ("services", name, "ip"), str(svc.ip), "is the gateway's address"
        elif svc.ip in ips:
            yield (("services", name, "ip"), str(svc.ip),
                   f"the same address as services.{ips[svc.ip]}")
        ips.setdefault(svc.ip, name)
        paths = [m.path for m in svc.mounts]
        for i, path in enumerate(paths):
            if path in paths[:i] or path == "/":
                yield ("services", name, "mounts", i, "path"), path, "mounted twice or on /"


# -- line numbers ----------------------------------------------------------------------------


def _duplicate_keys(node: yaml.Node, loc: tuple[str | int, ...]
                    ) -> Iterator[dict[str, Any]]:
    """YAML keeps the last of two equal keys silently; an inventory must not."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            k = str(key.value)
            if k in seen:
                yield {"line": key.start_mark.line + 1, "field": _dotted((*loc, k)),
                       "value": repr(k), "reason": "the key appears twice"}
            seen.add(k)
            yield from _duplicate_keys(value, (*loc, k))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, i))


def _line(root: yaml.Node, loc: tuple[str | int, ...]) -> int:
    """The 1-based line of the deepest node of ``loc`` that exists (a missing key: its
    parent's line)."""
    node = root
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if str(k.value) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[")


def _pydantic_problem(root: yaml.Node, data: object, error: Mapping[str, Any]
                      ) -> dict[str, Any]:
    loc = tuple(p for p in error["loc"] if isinstance(p, str | int))
    value = _value_at(data, loc)
    shown = REDACTED if loc and loc[-1] == "token_secret_ref" and _looks_secret(value) \
        else repr(value) if value is not _MISSING else "(missing)"
    reason = str(error["msg"]).removeprefix("Value error, ")
    return {"line": _line(root, loc), "field": _dotted(loc), "value": shown, "reason": reason}


_MISSING = object()


def _value_at(data: object, loc: tuple[str | int, ...]) -> object:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if in_dict or in_list:
            data = data[part]  # type: ignore[index]
        else:
            return _MISSING
    return data


def _looks_secret(value: object) -> bool:
    """A token value rather than a reference: a UUID (Proxmox's token secrets are UUIDs) or
    anything that is not a reference."""
    if not isinstance(value, str):
        return True
    return bool(_UUID.search(value)) or not _REF.match(value)
