"""No secret of the bootstrap appears in any output: the command's stdout and stderr, the log
records of every logger, an error's message, or the OpenBao server's own log."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import hvac
import pytest
from mts1b_deploy.cli import app, main
from typer.testing import CliRunner

BaoServer = Any  # conftest's fixture type

pytestmark = pytest.mark.integration


def _secrets_of(out: Path, deploy: hvac.Client) -> set[str]:
    found = {p.read_text().strip() for p in (out / "unseal").iterdir()}
    found.add((out / "deploy-token").read_text().strip())
    for delivery in (out / "delivery").iterdir():
        found.add(json.loads(delivery.read_text())["wrapped_secret_id"])
    for service in ("oms", "brokers", "research", "treasury", "operations"):
        data = deploy.secrets.kv.v2.read_secret_version(
            f"mts1b/{service}", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
        found |= {data["nats_password"], data["signing_key_file"].strip()}
        seed = json.loads(data["signing_key_file"])["seed"]
        found |= {seed, base64.b64decode(seed).hex()}
    return found


def test_no_secret_in_any_output(bao: BaoServer, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture,
                                 capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    roots: list[str] = []
    original = hvac.api.system_backend.Init.initialize

    def initialize(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        roots.append(result["root_token"])
        roots.extend(result["keys"])
        return result

    monkeypatch.setattr(hvac.api.system_backend.Init, "initialize", initialize)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    runner = CliRunner()
    outputs: list[str] = []
    secrets: set[str] = set()
    args = ["vault", "bootstrap", "--addr", bao.addr, "--out", str(out), "--shares", "3",
            "--threshold", "2"]
    for _ in range(2):  # the first run and a rerun
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout + result.stderr)
        deploy = hvac.Client(url=bao.addr, token=(out / "deploy-token").read_text().strip())
        secrets |= _secrets_of(out, deploy)
    token_file = tmp_path / "oms-token"
    login = runner.invoke(app, ["vault", "login", "--delivery", str(out / "delivery" / "oms.json"),
                                "--token-file", str(token_file)])
    assert login.exit_code == 0, login.output
    outputs.append(login.stdout + login.stderr)
    secrets.add(token_file.read_text().strip())
    assert "changed: root token revoked" in outputs[0]
    assert "nothing changed on the server" in outputs[1]
    # an error, through the console script's entry point: one line, no secret
    wrong = tmp_path / "token"
    wrong.write_text(next(iter(roots)) + "\n")  # the revoked root token
    with pytest.raises(SystemExit) as info:
        main([*args, "--token-file", str(wrong)])
    assert info.value.code == 1
    captured = capsys.readouterr()
    assert "mts1b-deploy: [DEPLOY.VAULT] renew the deploy token failed: permission denied" in \
        captured.err
    outputs += [captured.out, captured.err, caplog.text, bao.log.read_text()]
    secrets |= set(roots)
    assert len(secrets) > 20
    for text in outputs:
        for secret in secrets:
            assert secret not in text
