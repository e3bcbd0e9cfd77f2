"""The paper stack's services (``mts1b-deploy services paper``): the command lines are the paper
loop's (``mts1b_research.paper.PaperPlan.services``) but for the interpreter and the replay
clock; bad input names the option; a private key never lands in a release's config."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.local import read_config_dir
from mts1b_deploy.paperstack import PaperStack, parse_symbols, write_paper_config


def stack(**changes: object) -> PaperStack:
    fields: dict[str, object] = {
        "fund_id": "paper-x", "cash": Decimal("250000"), "symbols": ("AAPL", "MSFT"),
        "nats_url": "nats://127.0.0.1:4222",
        "database_url": "postgresql://postgres@127.0.0.1:5432/postgres", "namespace": "ns1",
        "oms_schema": "ns1_oms", "treasury_schema": "ns1_treasury",
        "commission_bps": Decimal("1.5"), "participation_rate": Decimal("0.2"),
        "leverage": Decimal(2)}
    fields.update(changes)
    return PaperStack(**fields)  # type: ignore[arg-type]


def test_the_command_lines_are_the_paper_loops(tmp_path: Path) -> None:
    paper = pytest.importorskip("mts1b_research.paper", reason="compares with mts1b-research")
    plan = paper.PaperPlan(
        strategy="s", universe="AAPL,MSFT", symbols=("AAPL", "MSFT"), start=dt.date(2016, 1, 4),
        end=dt.date(2016, 1, 29), fund_id="paper-x", cash=Decimal("250000"), namespace="ns1",
        commission_bps=Decimal("1.5"), participation_rate=Decimal("0.2"))
    loop = dict(plan.services(tmp_path))
    ours = stack(oms_schema=plan.oms_schema, treasury_schema=plan.treasury_schema).services()

    def wall_clock(argv: list[str]) -> list[str]:  # the loop's, as a deployed stack runs it
        assert argv[:3] == [paper.sys.executable, "-m", "mts1b_platform.cli"]
        out = [a.replace(str(tmp_path), "{release}/config") for a in argv[3:]]
        return [a for a in out if a != "--replay-clock"]

    for deployed, looped in (("brokers", "broker-paper"), ("oms", "oms"),
                             ("treasury", "treasury")):
        argv = list(ours[deployed].argv)
        assert argv[:3] == ["{release}/venv/bin/python", "-m", "mts1b_platform.cli"]
        assert argv[3:] == wall_clock(loop[looped]), deployed
        assert ours[deployed].env["MTS_NATS_NAMESPACE"] == "ns1"


def test_config_folder_and_key(tmp_path: Path) -> None:
    out, key = tmp_path / "paper-config", tmp_path / "desk.key"
    written = write_paper_config(stack(), out, key)
    assert sorted(p.name for p in written) == ["fund.json", "instruments.csv", "keys.json",
                                               "services.json"]
    assert (out / "instruments.csv").read_text() == "symbol,asset_class\nAAPL,equity\nMSFT,equity\n"
    assert key.stat().st_mode & 0o777 == 0o600
    registry = json.loads((out / "keys.json").read_text())
    assert registry["keys"][0]["roles"] == ["operations", "risk"]
    fund = json.loads((tmp_path / "fund.json").read_text())
    assert fund["fund_id"] == "paper-x" and fund["broker"] == "paper"
    again = write_paper_config(stack(commission_bps=Decimal(0)), out, key)  # the key is kept
    assert json.loads((out / "keys.json").read_text()) == registry and again
    files, specs = read_config_dir(out)
    assert sorted(files) == ["instruments.csv", "keys.json"]
    assert sorted(specs) == ["brokers", "oms", "treasury"]
    key.rename(out / "desk.key")  # a private key in the folder: refused
    with pytest.raises(ReleaseError, match=r"desk\.key is a private signing key"):
        read_config_dir(out)
    with pytest.raises(ReleaseError, match="inside the release config folder"):
        write_paper_config(stack(), out, out / "other.key")


@pytest.mark.parametrize(("changes", "field"), [
    ({"cash": Decimal(0)}, "--cash"),
    ({"fund_id": "a b"}, "--fund"),
    ({"symbols": ("aapl",)}, "--symbol"),
    ({"symbols": ()}, "--symbol"),
    ({"participation_rate": Decimal(2)}, "--participation-rate"),
    ({"oms_schema": "Bad-Name"}, "--oms-schema"),
    ({"database_url": "postgresql://u:hunter2@db/x"}, "--dsn"),
])
def test_bad_input_names_the_option(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ReleaseError) as info:
        stack(**changes)
    assert info.value.context["field"] == field
    assert "hunter2" not in str(info.value)


def test_symbols_split_and_dedupe() -> None:
    assert parse_symbols(["AAPL,MSFT", "SPY", "AAPL"]) == ("AAPL", "MSFT", "SPY")
