"""plan: the exact Proxmox parameters of each container, in start order."""

from __future__ import annotations

from pathlib import Path

from mts1b_deploy import SERVICES, container_params, load_inventory, plan, render_plan

EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"


def test_container_parameters() -> None:
    inv = load_inventory(EXAMPLE)
    assert container_params(inv, "postgres") == {
        "vmid": "2002", "hostname": "mts-paper-postgres",
        "ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        "cores": "2", "memory": "4096", "swap": "0", "rootfs": "local-lvm:8",
        "net0": "name=eth0,bridge=vmbr0,ip=10.20.0.12/24,gw=10.20.0.1",
        "unprivileged": "1", "onboot": "1", "nameserver": "10.20.0.1",
        "features": "nesting=1", "mp0": "local-lvm:100,mp=/var/lib/postgresql,backup=1"}


def test_plan_order_placement_and_text() -> None:
    inv = load_inventory(EXAMPLE)
    planned = plan(inv)
    assert [p.service for p in planned] == list(SERVICES)
    research = next(p for p in planned if p.service == "research")
    assert research.runs == ("strategy momentum (fund core)", "strategy value (fund core)",
                             "strategy carry (fund income)")
    assert next(p for p in planned if p.service == "oms").runs == ("fund core", "fund income")
    text = render_plan(inv, planned)
    assert text.count("+ create CT") == 8
    assert "+ create CT 2004 mts-paper-oms on pve1 (oms)" in text
    assert "features = nesting=1   # root@pam only" in text
    assert "secret from env:PROXMOX_TOKEN_SECRET" in text
