"""The messages that tell a user to install an extra name its third-party requirements exactly as
pyproject.toml declares them, and never an ``mts1b-*`` name.

No ``mts1b-*`` name is registered on PyPI: ``pip install "mts1b-platform[otlp]"`` would install
whoever registered the name first. mts1b-platform is installed when these messages are shown, so
they name what the extra adds; this test keeps their bounds from drifting from pyproject.toml.
Each message is produced the way a user meets it, with the extra's module hidden.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from mts1b_platform.config import ConfigError, load_config
from mts1b_platform.devservices._extras import DEVSERVERS, missing
from mts1b_platform.telemetry import TelemetryError, init_telemetry, shutdown_telemetry
from pydantic import BaseModel, SecretStr

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _extra(name: str) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return list(project["optional-dependencies"][name])


def _command(message: str, extra: str) -> list[str]:
    """The requirements of the ``pip install`` in ``message``, which ends by naming ``extra``."""
    text = message.split("pip install ", 1)[1]
    suffix = f" (the {extra} extra of mts1b-platform)"
    assert suffix in text, message
    return shlex.split(text.split(suffix, 1)[0])


def test_devservers_message_names_the_extra() -> None:
    assert list(DEVSERVERS) == _extra("devservers")
    error = missing("asyncpg", "checking PostgreSQL")
    assert error.message.startswith("checking PostgreSQL needs asyncpg, which is not installed")
    assert _command(error.message, "devservers") == _extra("devservers")


def test_otlp_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    package = "opentelemetry.exporter.otlp.proto.http"
    for name in (package, f"{package}._log_exporter", f"{package}.metric_exporter",
                 f"{package}.trace_exporter"):
        monkeypatch.setitem(sys.modules, name, None)
    shutdown_telemetry()
    with pytest.raises(TelemetryError) as info:
        init_telemetry("svc-hint", set_global=False)
    assert _command(info.value.message, "otlp") == _extra("otlp")


class _Svc(BaseModel):
    api_key: SecretStr


def test_vault_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)
    with pytest.raises(ConfigError) as info:
        load_config("oms", _Svc, env_file=None,
                    environ={"MTS_ENV": "production", "VAULT_ADDR": "http://127.0.0.1:1",
                             "VAULT_TOKEN": "tok-1234"})
    assert _command(info.value.message, "vault") == _extra("vault")


def test_bus_message_names_the_extra() -> None:
    code = ("import sys; sys.modules['nats'] = None\n"
            "from mts1b_platform.cli import main\n"
            "main(['mts1b-platform', 'tail', '--duration', '0.1'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert _command(done.stderr.strip(), "bus") == _extra("bus")


def test_no_message_names_an_mts1b_distribution() -> None:
    """A grep of the sources: every ``pip install`` they print names third-party requirements
    (a docstring may show the wheelhouse install, which never asks an index)."""
    source = Path(__file__).resolve().parents[1] / "src"
    for path in sorted(source.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "pip install" in line and "--no-index" not in line:
                assert "mts1b-" not in line.split("pip install", 1)[1].split("(the ")[0], \
                    f"{path.name}:{number}: {line.strip()}"
