"""A sink from the ``mts1b.alert_sinks`` entry-point group, used by name in the router's config.

The plugin is a real distribution (a ``.dist-info`` folder on ``sys.path``): the router finds it
through ``importlib.metadata`` as it would an installed wheel. Alerts reach it through the
router's outbox on a real PostgreSQL (skipped without one, like the other router tests).
"""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import Alert
from mts1b_operations.alerts.config import PluginReceiver, load_alerts_config
from mts1b_operations.alerts.dispatch import Dispatcher, build_sinks
from mts1b_operations.alerts.errors import AlertsInputError
from mts1b_operations.alerts.router import Router
from mts1b_operations.alerts.store import AlertsDb

NOW = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)
MODULE = "mts1b_test_pager_sink"


@pytest.fixture
def pager_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``mts1b-test-pager``: registers ``pager`` (a recording sink), ``broken`` (its module is
    not installed) and ``notasink`` (a factory returning a string) in ``mts1b.alert_sinks``."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent("""
        SENT = []

        class PagerSink:
            def __init__(self, *, name, channel, token):
                self.name, self.channel, self._token = name, channel, token

            async def send(self, key, alerts):
                SENT.append((self.name, self.channel, key, [a.alert_id for a in alerts]))

        def not_a_sink(**options):
            return "pager"
    """))
    info = tmp_path / "mts1b_test_pager-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mts1b-test-pager\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[mts1b.alert_sinks]\npager = {MODULE}:PagerSink\n"
        "broken = mts1b_test_not_installed:Sink\n"
        f"notasink = {MODULE}:not_a_sink\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(MODULE, None)
    import importlib

    yield importlib.import_module(MODULE)
    sys.modules.pop(MODULE, None)


def _config(sink: str = "pager", **options: Any) -> Any:
    options = options or {"channel": "#ops", "token": "tok-SECRET-1"}
    return load_alerts_config(None, environ={}, overrides={
        "group_wait": 0, "receivers": [
            {"kind": "plugin", "name": "oncall", "sink": sink, "options": options,
             "match": ["fund=f1"]}]})


def test_a_plugin_receiver_builds_the_registered_sink(pager_plugin: Any) -> None:
    config = _config()
    receiver = config.receivers[0]
    assert isinstance(receiver, PluginReceiver) and receiver.sink == "pager"
    sink = build_sinks(config)["oncall"]
    assert isinstance(sink, pager_plugin.PagerSink)
    assert (sink.name, sink.channel) == ("oncall", "#ops")


@pytest.mark.parametrize(("sink", "options", "field", "reason"), [
    ("nosuch", {}, "receivers.oncall.sink", r"no alert sink of that name .*installed: .*pager"),
    ("broken", {}, "receivers.oncall.sink", r"failed to load \(ModuleNotFoundError\)"),
    ("pager", {"channel": "#ops", "token": "tok-SECRET-1", "colour": "red"},
     "receivers.oncall.options", r"the 'pager' sink refused them \(TypeError\)"),
    ("notasink", {"x": 1}, "receivers.oncall.sink", r"returned a str, not an AlertSink"),
])
def test_a_sink_that_cannot_be_built_is_refused_naming_the_receiver(
        pager_plugin: Any, sink: str, options: dict[str, Any], field: str,
        reason: str) -> None:
    with pytest.raises(AlertsInputError, match=reason) as err:
        build_sinks(_config(sink, **options))
    assert err.value.context["field"] == field
    assert "SECRET" not in str(err.value) and "SECRET" not in repr(err.value.context)


def test_bad_plugin_options_in_the_file_are_not_echoed() -> None:
    with pytest.raises(AlertsInputError) as err:
        load_alerts_config(None, environ={}, overrides={"receivers": [
            {"kind": "plugin", "name": "oncall", "sink": "pager",
             "options": "tok-SECRET-1"}]})
    assert err.value.context["field"] == "receivers.0.plugin.options"
    assert "SECRET" not in str(err.value)


async def test_the_router_delivers_to_the_plugin_sink(pager_plugin: Any,
                                                      alerts_db: AlertsDb) -> None:
    config = _config()
    router = Router(alerts_db, config)
    dispatcher = Dispatcher(alerts_db, build_sinks(config), poll=0.05)
    alert = Alert(alert_id=f"alr-{uuid.uuid4().hex[:12]}",
                  labels={"alertname": "OrderRejected", "fund": "f1"}, severity="error",
                  source="mts1b-oms", text="order rejected", ts=NOW)
    elsewhere = alert.model_copy(update={"alert_id": f"alr-{uuid.uuid4().hex[:12]}",
                                         "labels": {"alertname": "OrderRejected",
                                                    "fund": "f2"}})
    assert await router.ingest(alert) and await router.ingest(elsewhere)
    assert await router.tick() == 1  # f2's alert matches no receiver
    await dispatcher.drain("oncall")
    assert [(name, channel, ids) for name, channel, _key, ids in pager_plugin.SENT] == [
        ("oncall", "#ops", [alert.alert_id])]
    assert await alerts_db.undelivered() == 0
