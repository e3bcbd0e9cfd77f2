"""``mts mts1b-research strategies ...`` through typer's runner, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mts1b_foundation import ValidationFailed
from mts1b_research.cli import app
from mts1b_research.errors import ResearchInputError, TransitionRefused
from typer.testing import CliRunner

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MOMENTUM = ["--name", "momentum_v3", "--factor", "f_momentum_12_1", "--param", "h_long=252",
            "--param", "h_skip=21", "--universe", "us-large-cap", "--sizing-method",
            "kelly_voltarget_12", "--fund", "core", "--capital", "250000"]


async def _drop(schema: str) -> None:
    conn = await asyncpg.connect(DSN, timeout=3)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"rs_c_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_drop(name))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        pytest.skip(f"PostgreSQL not reachable at {DSN}")
    yield name
    asyncio.run(_drop(name))


def run(schema: str, *args: str) -> Any:
    env = {"MTS_DATABASE_URL": DSN, "MTS_RESEARCH_SCHEMA": schema, "MTS_ACTOR": "ann"}
    return CliRunner().invoke(app, ["strategies", *args], env=env)


def test_the_faq_strategy_through_its_life(schema: str) -> None:
    made = run(schema, "register", *MOMENTUM, "--reason", "ported")
    assert made.exit_code == 0, made.output
    assert made.stdout.strip() == (
        "momentum_v3 v1: draft, factor f_momentum_12_1 {h_long=252, h_skip=21}, universe "
        "us-large-cap, sizing kelly_voltarget_12, rebalance daily, horizon 1, fund core, "
        "capital 250000 USD")
    assert run(schema, "register", *MOMENTUM).stdout == made.stdout  # the same spec: no-op
    shadowed = run(schema, "shadow", "momentum_v3", "--reason", "first look")
    assert "momentum_v3 v1: draft -> shadow by ann at " in shadowed.stdout
    promoted = run(schema, "promote", "momentum_v3", "--to", "paper", "--reason", "good",
                   "--sessions", "25", "--ic", "0.03", "--min-ic", "0.02", "--json")
    assert promoted.exit_code == 0, promoted.output
    record = json.loads(promoted.stdout)
    assert (record["from_state"], record["to_state"]) == ("shadow", "paper")
    assert record["verdict"] == {"ok": True, "reasons": ["sessions 25 >= 20",
                                                         "mean IC 0.03 >= 0.02"]}
    assert run(schema, "disable", "momentum_v3", "--reason", "pause").exit_code == 0
    assert "paper (was" not in run(schema, "show", "momentum_v3").stdout
    assert "disabled (was paper)" in run(schema, "show", "momentum_v3").stdout
    assert "disabled -> paper" in run(schema, "enable", "momentum_v3", "--reason", "go").stdout
    listed = json.loads(run(schema, "list", "--json").stdout)
    assert [(s["name"], s["state"], s["spec"]["capital_usd"]) for s in listed] == [
        ("momentum_v3", "paper", "250000")]
    history = json.loads(run(schema, "history", "momentum_v3", "--json").stdout)
    assert [v["reason"] for v in history["versions"]] == ["ported"]
    assert [(t["to_state"], t["actor"]) for t in history["transitions"]] == [
        ("shadow", "ann"), ("paper", "ann"), ("disabled", "ann"), ("paper", "ann")]
    assert "retired" in run(schema, "retire", "momentum_v3", "--reason", "done").stdout
    assert run(schema, "list", "--active").stdout.startswith("no strategies")


def test_register_from_a_file_and_a_new_version(schema: str, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    spec = {"name": "mom", "factor": "f_momentum_12_1", "params": {"h_long": 252},
            "universe": ["us-large-cap", "eu-large"], "sizing": {"method": "rank_weighted"}}
    path.write_text(json.dumps(spec))
    assert " v1: draft" in run(schema, "register", "--file", str(path)).stdout
    path.write_text(json.dumps(spec | {"params": {"h_long": 126}}))
    shown = json.loads(run(schema, "register", "--file", str(path), "--json").stdout)
    assert (shown["version"], shown["spec"]["params"]) == (2, {"h_long": 126})
    text = run(schema, "history", "mom").stdout.splitlines()
    assert [line.split(" at ")[0] for line in text] == ["v1 registered by ann",
                                                        "v2 registered by ann"]


def test_live_promotion_without_a_key_is_refused_from_the_command_line(schema: str) -> None:
    result = run(schema, "promote", "momentum_v3", "--to", "live", "--reason", "r",
                 "--sessions", "99")
    assert isinstance(result.exception, ResearchInputError)
    assert result.exception.context["field"] == "--to"
    assert "give --key-file (a risk key)" in result.exception.message


def test_a_rule_refusal_reaches_the_user(schema: str) -> None:
    run(schema, "register", *MOMENTUM)
    run(schema, "shadow", "momentum_v3", "--reason", "r")
    result = run(schema, "promote", "momentum_v3", "--to", "paper", "--reason", "r",
                 "--sessions", "3")
    assert isinstance(result.exception, TransitionRefused)
    assert result.exception.context["reasons"] == ["sessions 3 is fewer than 20"]


@pytest.mark.parametrize(("args", "field"), [
    (["show", "nope"], "name"),
    (["disable", "nope", "--reason", "r"], "name"),
    (["register", "--name", "m", "--factor", "f_x", "--universe", "u", "--param", "oops"],
     "--param"),
    (["register", "--name", "m", "--factor", "f_x", "--universe", "u", "--param", "=1"],
     "--param"),
    (["register", "--name", "m", "--factor", "f_x", "--universe", "u", "--capital", "lots"],
     "--capital"),
    (["register", "--name", "m", "--factor", "momentum", "--universe", "u"], "spec.factor"),
    (["register", "--name", "m"], "--name/--factor/--universe"),
    (["promote", "m", "--to", "paper", "--reason", "r", "--sessions", "-1"], "sessions"),
])
def test_wrong_input_is_one_error_naming_the_field(schema: str, args: list[str],
                                                   field: str) -> None:
    result = run(schema, *args)
    assert isinstance(result.exception, ResearchInputError), result.output
    assert result.exception.context["field"] == field
    assert result.exit_code == 1


def test_a_bad_file_names_the_file(schema: str, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("{not json")
    bad = run(schema, "register", "--file", str(path))
    assert isinstance(bad.exception, ResearchInputError)
    assert bad.exception.context["field"] == "--file"
    missing = run(schema, "register", "--file", str(tmp_path / "absent.json"))
    assert isinstance(missing.exception, ResearchInputError)
    assert "cannot be read" in missing.exception.message
    path.write_text(json.dumps({"name": "m", "factor": "f_x", "universe": "u",
                                "sizing": {"gross": 1}}))
    invalid = run(schema, "register", "--file", str(path))
    assert isinstance(invalid.exception, ResearchInputError)
    assert not isinstance(invalid.exception, ValidationFailed)
    assert invalid.exception.context["field"].startswith("spec.")
