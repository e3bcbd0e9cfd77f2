import json

from mts1b_platform.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def test_schema_command_prints_one_model() -> None:
    result = runner.invoke(app, ["mts1b-foundation", "schema", "--model", "Order"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == ["Order"]
    assert "idempotency_key" in data["Order"]["schema"]["properties"]


def test_schema_check_and_unknown_model() -> None:
    ok = runner.invoke(app, ["mts1b-foundation", "schema", "--check"])
    assert ok.exit_code == 0, ok.output
    assert "match the snapshot" in ok.output
    bad = runner.invoke(app, ["mts1b-foundation", "schema", "--model", "Nope"])
    assert bad.exit_code == 2
    assert "unknown model 'Nope'" in bad.output


def test_subjects_command_lists_registry() -> None:
    result = runner.invoke(app, ["mts1b-foundation", "subjects"])
    assert result.exit_code == 0
    assert "mts.v1.oms.commands.submit" in result.output
    assert "request/reply" in result.output
