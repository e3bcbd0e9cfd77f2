"""The inventory: the example file loads; each kind of mistake is named by line, field, value."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from mts1b_deploy import SERVICES, InventoryError, load_inventory, parse_inventory

EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"


def _text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


def _errors(text: str) -> list[dict[str, object]]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yaml")
    return list(info.value.context["errors"])


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_example_loads() -> None:
    inv = load_inventory(EXAMPLE)
    assert [name for name, _ in inv.ordered()] == list(SERVICES)
    assert inv.services["oms"].ip == ipaddress.IPv4Address("10.20.0.14")
    assert inv.services["nats"].mounts[0].path == "/var/lib/nats"
    assert inv.funds["core"].strategies == ("momentum", "value")
    assert inv.proxmox.token_secret_ref == "env:PROXMOX_TOKEN_SECRET"


def test_a_bad_value_names_line_field_and_value() -> None:
    text = _text().replace("ip: 10.20.0.15}", "ip: 10.20.0.999}")
    (error,) = _errors(text)
    assert error["line"] == _line_of(text, "10.20.0.999")
    assert error["field"] == "services.brokers.ip"
    assert error["value"] == "'10.20.0.999'"
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yaml")
    assert f"line {error['line']}: services.brokers.ip" in str(info.value)
    assert "inv.yaml" in str(info.value)


def test_every_problem_is_listed_at_once() -> None:
    text = (_text().replace("memory_mb: 512,\n               mounts: [{path: /var/lib/nats",
                            "memory_mb: 64,\n               mounts: [{path: /var/lib/nats")
            .replace("cores: 4", "cores: 0"))
    errors = _errors(text)
    assert {e["field"] for e in errors} == {"services.nats.memory_mb", "services.research.cores"}
    assert next(e for e in errors if e["field"] == "services.research.cores")["line"] == \
        _line_of(text, "cores: 0")


def test_checks_across_fields() -> None:
    text = (_text().replace("vmid: 2005, ip: 10.20.0.15", "vmid: 2004, ip: 10.20.0.14")
            .replace("{node: pve1, vmid: 2007, ip: 10.20.0.17}",
                     "{node: pve9, vmid: 2007, ip: 10.30.0.17}"))
    errors = {e["field"]: e for e in _errors(text)}
    assert "same container id as services.oms" in str(errors["services.brokers.vmid"]["reason"])
    assert "same address as services.oms" in str(errors["services.brokers.ip"]["reason"])
    assert errors["services.treasury.node"]["value"] == "'pve9'"
    assert errors["services.treasury.ip"]["value"] == "'10.30.0.17'"
    assert errors["services.treasury.ip"]["line"] == _line_of(text, "10.30.0.17")


def test_a_missing_or_unknown_service() -> None:
    text = _text().replace("  treasury:", "  tresury:")
    errors = {(e["field"], e["value"]): e for e in _errors(text)}
    assert ("services.tresury", "'tresury'") in errors
    assert errors[("services", "'treasury'")]["reason"] == \
        "missing: every service needs its container"
    assert errors[("services.tresury", "'tresury'")]["line"] == _line_of(text, "tresury")


def test_a_pasted_token_secret_is_refused_and_not_repeated() -> None:
    secret = "3f6c1a52-8d0e-4b7f-9c2a-0e5d7b1a9f44"
    text = _text().replace("env:PROXMOX_TOKEN_SECRET", secret)
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yaml")
    (error,) = info.value.context["errors"]
    assert error["field"] == "proxmox.token_secret_ref"
    assert error["line"] == _line_of(text, secret)
    assert secret not in str(info.value) and secret not in repr(info.value.context)


def test_duplicate_keys_unknown_fields_and_broken_yaml() -> None:
    text = _text().replace("  nameserver: 10.20.0.1\n",
                           "  nameserver: 10.20.0.1\n  cidr: 10.0.0.0/8\n  mtu: 9000\n")
    (error,) = _errors(text)  # duplicates are reported before anything else
    assert (error["field"], error["line"]) == ("network.cidr", _line_of(text, "10.0.0.0/8"))
    text = _text().replace("  nameserver: 10.20.0.1\n", "  nameserver: 10.20.0.1\n  mtu: 9000\n")
    (error,) = _errors(text)
    assert (error["field"], error["line"], error["value"]) == ("network.mtu",
                                                              _line_of(text, "mtu"), "9000")
    (error,) = _errors("name: x\nnodes: [\n")
    assert error["field"] == "(yaml)" and error["line"] is not None


def test_gateway_and_funds() -> None:
    text = _text().replace("gateway: 10.20.0.1", "gateway: 10.21.0.1")
    (error,) = _errors(text)
    assert (error["field"], error["line"]) == ("network.gateway", _line_of(text, "10.21.0.1"))
    assert "not in network.cidr 10.20.0.0/24" in str(error["reason"])
    (error,) = _errors(_text().replace("strategies: [carry]", "strategies: [carry, carry]"))
    assert error["field"] == "funds.income.strategies" and "listed twice" in str(error["reason"])


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "none.yaml")
    assert info.value.context["errors"][0]["reason"] == "cannot read it: FileNotFoundError"
