"""A service's answer to one command, kept as an event.

Why: commands travel request/reply and are not stored (a stream must not replay a halt), so a
refused command - an unsigned resume, a fund configuration that loosens a limit without the
risk role - would leave no trace, and the audit chain must show it as well as an accepted one.
A service that answers commands publishes each answer on ``mts.v1.<domain>.answers.recorded``,
stored in its domain's stream, where the audit recorder appends it like any other event.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field, JsonValue

from mts1b_foundation.wire import Identifier, UtcDatetime, WireModel

__all__ = ["ANSWERED_DOMAINS", "CommandAnswered", "answers_subject"]

ANSWERED_DOMAINS = ("oms", "treasury", "research")
"""The domains whose services record their answers (each has a stored ``answers`` subject)."""

_MAX_BYTES = 256 * 1024


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > _MAX_BYTES:
        raise ValueError(f"takes {size} bytes as JSON; at most {_MAX_BYTES}")
    return value


JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_bounded)]


def answers_subject(command_subject: str) -> str:
    """``mts.v1.<domain>.answers.recorded`` for a command subject of ``<domain>``."""
    tokens = command_subject.split(".")
    if len(tokens) < 5 or tokens[:2] != ["mts", "v1"] or tokens[2] not in ANSWERED_DOMAINS \
            or tokens[3] != "commands":
        raise ValueError(f"{command_subject!r} is not a command subject of "
                         f"{', '.join(ANSWERED_DOMAINS)}")
    return f"mts.v1.{tokens[2]}.answers.recorded"


class CommandAnswered(WireModel):
    """One command and the answer a service sent to it.

    ``request`` is the command as the service decoded it, ``request_sha256`` the digest of the
    bytes it received (a replayed copy has the same digest), ``request_msg_id`` the sender's
    ``Nats-Msg-Id`` when it set one. ``ok`` and ``code`` summarise the answer (``code``: the
    reply's code, or the error code of a refusal raised before a reply was built); ``reply`` is
    the answer as sent, after redaction. ``answer_id`` identifies this record (its
    ``Nats-Msg-Id``); ``ts`` is when the service answered.
    """

    answer_id: Identifier
    service: Identifier
    command_subject: Annotated[str, Field(pattern=r"^mts\.v1\.[a-z_]+\.commands\.[a-z_]+$")]
    request_msg_id: str | None = Field(default=None, min_length=1, max_length=512)
    request_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    request: JsonObject
    ok: bool
    code: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_.]{0,63}$")] | None = None
    reply: JsonObject = Field(default_factory=dict)
    ts: UtcDatetime
