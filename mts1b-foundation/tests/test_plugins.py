"""The one plugin loader: group names, legacy groups, failures reported, manifests read.

The plugins are real distributions: a ``*.dist-info`` folder with ``entry_points.txt`` on
``sys.path``, found by ``importlib.metadata`` like an installed package.
"""

from __future__ import annotations

import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from mts1b_foundation import AssetClass, OrderType, TimeInForce, plugins
from mts1b_foundation.plugins import (
    COMMANDS,
    EXTENSION_POINTS,
    Capabilities,
    ExtensionPoint,
    PluginError,
    PluginLoadError,
    capabilities_of,
    entry_points_of,
    load_entry_point,
    load_plugins,
)
from pydantic import ValidationError

POINT = ExtensionPoint("demo", "mts1b.demo_test", "anything", legacy_groups=("mts.demo_test",))


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution with a good, a broken and a legacy-group plugin of POINT."""
    (tmp_path / "fdn_demo_plugin.py").write_text(textwrap.dedent("""
        from mts1b_foundation.plugins import Capabilities

        class Good:
            capabilities = Capabilities(order_types={"market"}, time_in_force={"DAY"},
                                        asset_classes={"crypto"}, streaming=True)

        def old():
            return "old"

        def clash():
            return "current"
    """))
    dist = tmp_path / "fdn_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fdn-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[mts1b.demo_test]\ngood = fdn_demo_plugin:Good\n"
        "broken = fdn_demo_missing_module:thing\nclash = fdn_demo_plugin:clash\n"
        "[mts.demo_test]\nold = fdn_demo_plugin:old\nclash = fdn_demo_plugin:old\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(plugins.EXTENSION_POINTS, "demo", POINT)
    monkeypatch.setattr(plugins, "_warned", set())
    yield tmp_path
    sys.modules.pop("fdn_demo_plugin", None)


def test_every_group_follows_one_scheme() -> None:
    for kind, point in EXTENSION_POINTS.items():
        assert point.kind == kind and point.group == f"mts1b.{kind}"
    assert COMMANDS.legacy_groups == ("mts.commands",)
    assert COMMANDS.groups == ("mts1b.commands", "mts.commands")


def test_one_broken_plugin_is_reported_and_the_others_load(
        installed: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(DeprecationWarning, match=r"'old'.*'mts.demo_test'.*'mts1b.demo_test'"):
        report = load_plugins(POINT)
    assert set(report.plugins) == {"good", "old", "clash"}
    assert report.plugins["clash"]() == "current"  # the current group wins over the old name
    assert report.plugins["old"]() == "old"
    [failure] = report.failures
    assert (failure.name, failure.group, failure.error_type) == (
        "broken", "mts1b.demo_test", "ModuleNotFoundError")
    assert str(failure) == ("plugin 'broken' of group 'mts1b.demo_test' "
                            "(fdn_demo_missing_module:thing) failed to load: ModuleNotFoundError")
    # the user-facing line names the type only; the module name in the error text stays in DEBUG
    warning_lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning_lines == [str(failure)]


def test_the_deprecation_is_said_once_per_plugin(installed: Path) -> None:
    with pytest.warns(DeprecationWarning, match="read for one more release"):
        load_plugins(POINT, skip=["broken"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_plugins(POINT, skip=["broken"])


def test_the_host_may_refuse_a_loaded_plugin(installed: Path) -> None:
    def only_classes(name: str, obj: object) -> None:
        if not isinstance(obj, type):
            raise TypeError(f"{name} is not a class")

    with pytest.warns(DeprecationWarning, match="read for one more release"):
        report = load_plugins(POINT, check=only_classes)
    assert set(report.plugins) == {"good"}
    assert {(f.name, f.error_type) for f in report.failures} == {
        ("broken", "ModuleNotFoundError"), ("old", "TypeError"), ("clash", "TypeError")}


def test_load_entry_point_raises_a_coded_error(installed: Path) -> None:
    broken = entry_points_of(POINT)["broken"]
    with pytest.raises(PluginLoadError) as info:
        load_entry_point(broken)
    assert info.value.code == "FOUNDATION.PLUGIN_LOAD"
    assert info.value.failure.error_type == "ModuleNotFoundError"
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_a_duck_typed_entry_point_gets_the_group_it_was_asked_for() -> None:
    class Fake:
        name = "fake"

        def load(self) -> object:
            raise ImportError("no")

    report = load_plugins(POINT, source=lambda group: [Fake()] if group == POINT.group else [])
    assert [(f.name, f.group, f.value) for f in report.failures] == [
        ("fake", "mts1b.demo_test", "?")]


def test_capabilities_are_read_from_the_plugin(installed: Path) -> None:
    with pytest.warns(DeprecationWarning, match="read for one more release"):
        good = load_plugins(POINT, skip=["broken"]).plugins["good"]
    caps = capabilities_of(good)
    assert caps is not None and caps.streaming and not caps.supports_replace
    assert caps.supports(order_type=OrderType.MARKET, asset_class=AssetClass.CRYPTO)
    assert not caps.supports(order_type=OrderType.LIMIT)
    assert not caps.supports(time_in_force=TimeInForce.GTC)
    assert capabilities_of(good()) == caps
    assert capabilities_of(object()) is None


def test_a_bad_manifest_is_refused_naming_the_field() -> None:
    class Wrong:
        capabilities: ClassVar[dict[str, list[str]]] = {"order_types": ["market"]}

    with pytest.raises(PluginError, match=r"Wrong\.capabilities is a dict") as info:
        capabilities_of(Wrong)
    assert info.value.context["field"] == "capabilities"

    class ByInstance:
        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(order_types=frozenset(), time_in_force=frozenset(),
                                asset_classes=frozenset())

    assert capabilities_of(ByInstance) is None
    assert capabilities_of(ByInstance()) is not None
    with pytest.raises(ValidationError, match="order_types"):
        Capabilities(order_types={"teleport"}, time_in_force=set(), asset_classes=set())
    with pytest.raises(ValidationError, match="extra"):
        Capabilities(order_types=set(), time_in_force=set(), asset_classes=set(),
                     rate_limit=5)  # type: ignore[call-arg]
    caps = Capabilities(order_types=set(), time_in_force=set(), asset_classes=set())
    with pytest.raises(ValidationError):
        caps.streaming = True  # type: ignore[misc]
