"""The public surface, the registrations, and one naming scheme with the loaders' users."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mts1b_foundation.plugins as foundation_plugins
import mts1b_pluginsdk
import pytest
from mts1b_platform import cli as mts_cli

SURFACE = {
    "ALERT_SINKS", "BROKERS", "COMMANDS", "CONFORMANCE", "EXTENSION_POINTS", "FACTORS", "KINDS",
    "MARKET_DATA", "Capabilities", "ConformanceSkip", "ConformanceSuite", "ExtensionPoint",
    "InstalledPlugin", "LoadReport",
    "PluginError", "PluginFailure", "PluginLoadError", "ScaffoldError", "__version__",
    "broker_suite", "capabilities_of", "entry_points_of", "installed_plugins", "load_entry_point",
    "load_plugins", "new_project", "update_project",
}


def test_public_surface_is_pinned() -> None:
    assert set(mts1b_pluginsdk.__all__) == SURFACE
    for name in SURFACE:
        assert getattr(mts1b_pluginsdk, name) is not None, name
    # re-exported, not copied: one loader
    assert mts1b_pluginsdk.load_plugins is foundation_plugins.load_plugins
    assert mts1b_pluginsdk.Capabilities is foundation_plugins.Capabilities
    assert mts1b_pluginsdk.__version__ == metadata.version("mts1b-pluginsdk")


def test_the_command_group_the_script_and_the_pytest_plugin_are_registered() -> None:
    commands = {ep.name: ep.value for ep in metadata.entry_points(group="mts1b.commands")}
    assert commands["mts1b-pluginsdk"] == "mts1b_pluginsdk.cli:app"
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts["mts1b-pluginsdk"] == "mts1b_pluginsdk.cli:main"
    pytest11 = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert pytest11["mts1b-conformance"] == "mts1b_pluginsdk.pytest_plugin"


def test_the_mts_cli_reads_the_same_groups_as_the_loader() -> None:
    """The CLI spells the groups out (its root must not import foundation): keep them equal."""
    assert mts1b_pluginsdk.COMMANDS.groups == mts_cli._GROUPS
    assert "mts1b-pluginsdk" in mts_cli._entry_points()


def test_readme_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i}", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert "paper" in out[0] and out[-1] == "False"


def test_the_pytest_plugin_loads_nothing_heavy() -> None:
    """Every pytest run where this package is installed loads its pytest plugin: without
    --mts-conformance that must not import foundation (pydantic, numpy) or copier."""
    code = ("import sys, mts1b_pluginsdk.pytest_plugin\n"
            "print(sorted(m for m in ('mts1b_foundation', 'pydantic', 'numpy', 'copier') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
