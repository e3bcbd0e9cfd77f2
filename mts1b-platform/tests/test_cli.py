"""The `mts` root app: versions, library groups from entry points (listed from metadata, loaded
only when used), a broken group reported, root logging options, one-line errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from mts1b_platform import cli
from mts1b_platform import logging as mts_logging
from mts1b_platform.commands import matches_filters, parse_filters, parse_since
from typer.testing import CliRunner

runner = CliRunner()

# Packages that `mts --help` must not import: listing a group is no reason to load its library,
# and these are what made the help take seconds (pandas, pydantic models, rich, the SDK).
_HEAVY = ("rich", "pydantic", "numpy", "pandas", "opentelemetry", "exchange_calendars", "nats",
          "mts1b_foundation", "mts1b_quantkit")


# The other libraries that add a group to `mts` (their `mts1b.commands` entry point).
_GROUPS = {"mts1b-datalake": "mts1b_datalake", "mts1b-oms": "mts1b_oms",
           "mts1b-GPUbacktester": "mts1b_GPUbacktester", "mts1b-brokers": "mts1b_brokers"}


def _is_installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MTS_LOG_", "MTS_SERVICE", "OTEL_"))}
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _unnamed_service() -> Iterator[None]:
    """Commands here log; what another test named the service must not leak in or out."""
    saved = mts_logging._service
    mts_logging._service = ""
    yield
    mts_logging._service = saved


def test_versions_lists_installed_libraries() -> None:
    result = runner.invoke(cli.app, ["versions"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "mts1b-platform 0.1.0" in lines
    assert any(line.startswith("mts1b-foundation ") for line in lines)


def test_platform_group_comes_from_the_entry_point() -> None:
    eps = metadata.entry_points(group=cli.ENTRY_POINT_GROUP)
    assert "mts1b-platform" in eps.names
    result = runner.invoke(cli.app, ["mts1b-platform", "--help"])
    assert result.exit_code == 0
    assert "tail" in result.stdout


def test_help_lists_every_group_from_metadata_without_importing_a_library(
        tmp_path: Path) -> None:
    """`mts --help` in a fresh interpreter: every installed `mts1b.commands` entry point is
    listed with its distribution's summary, and afterwards no library package (nor rich,
    pydantic, the OpenTelemetry SDK ...) is in sys.modules. Structural, not timed."""
    eps = list(metadata.entry_points(group=cli.ENTRY_POINT_GROUP))
    assert {"mts1b-platform", "mts1b-foundation"} <= {ep.name for ep in eps}
    modules_file = tmp_path / "modules.json"
    code = textwrap.dedent(f"""
        import json, sys
        from mts1b_platform.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            code = exc.code
        with open({str(modules_file)!r}, "w") as f:
            json.dump({{"code": code, "modules": sorted(sys.modules)}}, f)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_child_env(COLUMNS="80"), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result = json.loads(modules_file.read_text())
    assert result["code"] in (0, None)
    flat = "".join(done.stdout.split())  # the help column wraps; compare without whitespace
    for ep in eps:
        try:
            summary = metadata.metadata(ep.name)["Summary"]
        except metadata.PackageNotFoundError:
            assert ep.dist is not None
            summary = ep.dist.metadata["Summary"]
        assert summary, f"{ep.name} has no Summary to show"
        assert "".join(f"{ep.name}{summary}".split()) in flat, ep.name
    loaded = set(result["modules"])
    libraries = {ep.module.partition(".")[0] for ep in eps} - {"mts1b_platform"}
    # Every other library with a group must list it wherever it is installed (the workspace:
    # all of them); from the platform's folder with the core install only its own groups exist.
    installed = {package for distribution, package in _GROUPS.items()
                 if _is_installed(distribution)}
    assert installed <= libraries
    for top in (*libraries, *_HEAVY):
        assert not any(m == top or m.startswith(f"{top}.") for m in loaded), top
    # The platform's own groups are not imported either, only the root.
    assert not loaded & {ep.module for ep in eps}
    assert "mts1b_platform.logging" not in loaded


def test_no_arguments_shows_the_same_list() -> None:
    result = runner.invoke(cli.app, [])
    assert result.exit_code == 0
    assert "mts1b-platform" in result.stdout
    assert "--verbose" in result.stdout


def test_a_broken_group_is_reported_and_the_rest_work(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cli._entry_points()
    broken = metadata.EntryPoint(name="mts1b-broken", value="mts1b_nonexistent.cli:app",
                                 group=cli.ENTRY_POINT_GROUP)
    not_typer = metadata.EntryPoint(name="mts1b-nottyper", value="os:getcwd",
                                    group=cli.ENTRY_POINT_GROUP)
    monkeypatch.setattr(cli, "_entry_points",
                        lambda: {"mts1b-platform": real["mts1b-platform"], "mts1b-broken": broken,
                                 "mts1b-nottyper": not_typer})
    monkeypatch.setattr(cli._LibraryGroup, "_failed", set())
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    assert "mts1b-platform" in result.stdout
    # Its package is not installed: reported and left out, found without importing anything.
    assert "mts1b-broken" not in result.stdout
    assert "the commands of mts1b-broken failed to load" in result.stderr
    assert "ModuleNotFoundError" in result.stderr
    # What the entry point holds is only known once loaded: listed, and refused when used.
    assert "mts1b-nottyper" in result.stdout
    bad_type = runner.invoke(cli.app, ["mts1b-nottyper", "--help"])
    assert bad_type.exit_code == 1
    assert bad_type.stderr.strip().splitlines() == [
        "mts: the commands of mts1b-nottyper failed to load (os:getcwd): "
        "TypeError: os:getcwd is a builtin_function_or_method, not a typer.Typer"]
    ok = runner.invoke(cli.app, ["mts1b-platform", "--help"])
    assert ok.exit_code == 0
    bad = runner.invoke(cli.app, ["mts1b-broken", "x"])
    assert bad.exit_code != 0


@pytest.fixture
def fake_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A library group `mts1b-fakelib` (a real module on sys.path, found through the same
    entry-point path) whose commands log, print, and fail in the ways a command can."""
    (tmp_path / "mts1b_fakelib_cli.py").write_text(textwrap.dedent("""
        import typer
        from mts1b_foundation.errors import MtsError
        from mts1b_platform.logging import get_logger

        app = typer.Typer()
        log = get_logger("mts1b_fakelib")

        class FakeError(MtsError):
            code = "FAKE.BROKEN"

        @app.command()
        def emit() -> None:
            log.debug("debug line")
            log.info("info line")
            log.warning("warning line")
            typer.echo("output for people")

        @app.command()
        def mts_error() -> None:
            raise FakeError("the fund file names no fund")

        @app.command()
        def internal() -> None:
            raise RuntimeError("internal detail password=hunter2")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = cli._entry_points()
    fake = metadata.EntryPoint(name="mts1b-fakelib", value="mts1b_fakelib_cli:app",
                               group=cli.ENTRY_POINT_GROUP)
    monkeypatch.setattr(cli, "_entry_points", lambda: {**real, "mts1b-fakelib": fake})
    for var in ("MTS_LOG_LEVEL", "MTS_LOG_FORMAT", "MTS_SERVICE"):
        monkeypatch.delenv(var, raising=False)
    sys.modules.pop("mts1b_fakelib_cli", None)
    yield "mts1b-fakelib"
    sys.modules.pop("mts1b_fakelib_cli", None)


def _run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


def _messages(err: str) -> list[str]:
    return [str(json.loads(line)["message"]) for line in err.splitlines() if line.strip()]


def test_quiet_by_default_and_verbose_flags(fake_library: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Human output on stdout, log lines on stderr; WARNING unless -v (INFO) or -vv (DEBUG)."""
    code, out, err = _run_main(capsys, "--log-format", "json", fake_library, "emit")
    assert (code, out) == (0, "output for people\n")
    assert _messages(err) == ["warning line"]
    assert logging.getLogger().level == logging.WARNING

    _, out, err = _run_main(capsys, "-v", "--log-format", "json", fake_library, "emit")
    assert out == "output for people\n"
    assert _messages(err) == ["info line", "warning line"]

    _, out, err = _run_main(capsys, "-vv", "--log-format", "json", fake_library, "emit")
    assert out == "output for people\n"
    assert "debug line" in _messages(err)


def test_environment_applies_when_no_flag_is_given(
        fake_library: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTS_LOG_LEVEL", "info")
    monkeypatch.setenv("MTS_LOG_FORMAT", "json")
    _, _, err = _run_main(capsys, fake_library, "emit")
    assert _messages(err) == ["info line", "warning line"]

    _, _, err = _run_main(capsys, "-vv", "--log-format", "console", fake_library, "emit")
    assert "DEBUG   mts1b_fakelib: debug line" in err  # the flags win over the environment
    assert not err.startswith("{")


def test_bad_logging_settings_are_one_line(fake_library: str,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTS_LOG_LEVEL", "chatty")
    code, out, err = _run_main(capsys, fake_library, "emit")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "mts: MTS_LOG_LEVEL='CHATTY' is not a level: use DEBUG, INFO, WARNING, ERROR or CRITICAL"]
    monkeypatch.delenv("MTS_LOG_LEVEL")
    monkeypatch.setenv("MTS_LOG_FORMAT", "xml")
    code, _, err = _run_main(capsys, fake_library, "emit")
    assert code == 2
    assert err.splitlines() == ["mts: MTS_LOG_FORMAT='xml' is not a format: use json or console"]


def test_errors_are_one_line_without_internal_text(fake_library: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_main(capsys, fake_library, "mts-error")
    assert (code, out) == (1, "")
    assert err.splitlines() == ["mts: [FAKE.BROKEN] the fund file names no fund"]

    code, out, err = _run_main(capsys, fake_library, "internal")
    assert (code, out) == (1, "")
    assert err.splitlines() == ["mts: the command failed unexpectedly (RuntimeError); "
                                "run it again with -vv to log the details"]

    # -vv logs the traceback, redacted like every line.
    code, _, err = _run_main(capsys, "-vv", "--log-format", "json", fake_library, "internal")
    assert code == 1
    assert "hunter2" not in err
    *logged, last = err.splitlines()
    (line,) = [json.loads(x) for x in logged if "exception" in json.loads(x)]
    assert "RuntimeError: internal detail password=***" in line["exception"]
    assert last.startswith("mts: the command failed unexpectedly")


def test_tail_without_the_nats_client_names_the_extra() -> None:
    """`tail` needs nats-py (the `bus` extra); a child without it gets one line, exit 1."""
    code = ("import sys; sys.modules['nats'] = None\n"
            "from mts1b_platform.cli import main\n"
            "main(['mts1b-platform', 'tail', '--duration', '0.1'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_child_env(), timeout=60, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        'tail: the NATS client is not installed: pip install "nats-py[nkeys]>=2.7,<3" (the bus '
        'extra of mts1b-platform)']


def test_tail_helpers() -> None:
    assert parse_filters(["order_id=ord-abc", "fund_id = f1"]) == {"order_id": "ord-abc",
                                                                   "fund_id": "f1"}
    event = {"event_id": "e1", "order": {"order_id": "ord-abc", "qty": 5}, "ok": True}
    assert matches_filters(event, {"order_id": "ord-abc"})
    assert matches_filters(event, {"qty": "5", "ok": "true"})
    assert not matches_filters(event, {"order_id": "ord-xyz"})
    assert not matches_filters(None, {"order_id": "ord-abc"})
    import datetime as dt

    now = dt.datetime(2024, 1, 2, 12, tzinfo=dt.UTC)
    assert parse_since("2h", now) == dt.datetime(2024, 1, 2, 10, tzinfo=dt.UTC)
    assert parse_since("2024-01-01T00:00:00", now) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
