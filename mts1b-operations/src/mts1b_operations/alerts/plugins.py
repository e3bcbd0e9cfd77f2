"""Alert sinks from plugins: the ``mts1b.alert_sinks`` entry points, by name, in the config.

Why: the router delivers to Telegram, e-mail and webhooks itself; anything else (a pager, a
chat product) comes from a package that registers a factory in the ``mts1b.alert_sinks``
entry-point group. A receiver ``{kind: plugin, name: NAME, sink: ENTRY, options: {...}}``
builds ``Factory(name=NAME, **options)`` through the one plugin loader of
``mts1b_foundation.plugins``, which reports a package that does not import by its error type
only. What goes wrong - no such entry point, a factory that does not import, refuses its options
or returns something that is not an ``AlertSink`` - is an :class:`AlertsInputError` naming the
receiver's field and value, at start rather than at the first alert; the options' values are
never shown (they may hold a token).
"""

from __future__ import annotations

import inspect

from mts1b_foundation import AlertSink
from mts1b_foundation.plugins import (
    ALERT_SINKS,
    EntryPointSource,
    PluginLoadError,
    entry_points_of,
    load_entry_point,
)

from mts1b_operations.alerts.config import PluginReceiver
from mts1b_operations.alerts.errors import AlertsInputError

__all__ = ["plugin_sink"]


def plugin_sink(receiver: PluginReceiver, *,
                source: EntryPointSource | None = None) -> AlertSink:
    """The sink ``receiver.sink`` names, built for ``receiver`` (see the module)."""
    where = f"receivers.{receiver.name}.sink"
    found = entry_points_of(ALERT_SINKS, source=source)
    ep = found.get(receiver.sink)
    if ep is None:
        installed = ", ".join(sorted(found)) or "none"
        raise AlertsInputError(where, receiver.sink,
                               f"no alert sink of that name in the {ALERT_SINKS.group!r} "
                               f"entry-point group (installed: {installed})")
    try:
        factory = load_entry_point(ep, group=ALERT_SINKS.group)
    except PluginLoadError as exc:
        raise AlertsInputError(where, receiver.sink,
                               f"the plugin failed to load ({exc.failure.error_type})") from None
    try:
        sink = factory(name=receiver.name, **receiver.options)
    except Exception as exc:  # the plugin's own code: only the error's type is shown
        raise AlertsInputError(f"receivers.{receiver.name}.options", "<secret>",
                               f"the {receiver.sink!r} sink refused them "
                               f"({type(exc).__name__})") from None
    send = getattr(sink, "send", None)
    if not isinstance(getattr(sink, "name", None), str) or not inspect.iscoroutinefunction(send):
        raise AlertsInputError(where, receiver.sink,
                               f"its factory returned a {type(sink).__name__}, not an AlertSink "
                               "(a str name and an async send(key, alerts))")
    return sink  # type: ignore[no-any-return]
