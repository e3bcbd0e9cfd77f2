"""Signed trading-state commands (issue #15, failure 3): "any client sent SetTradingState ACTIVE
with actor 'chief-risk-officer'; it was applied and stored under that name. Halt and resume
share one subject."

Each reproduced failure is a test here, on both stores (the ``store`` fixture: in memory, and
PostgreSQL as an integration run): an unsigned or forged resume changes nothing; the actor
recorded is the signing key's registered name; a replayed command is refused, also by an
instance started after the first one applied it; a stale timestamp is refused; an operations
key cannot resume; halt and resume travel on different subjects. The key registry's and the
key file's formats, and what a refusal logs, are tested below them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing
import pytest
from mts1b_foundation import (
    HaltTrading,
    ReduceTrading,
    ReplyCode,
    ResumeTrading,
    SetTradingState,
    TradingState,
    ValidationFailed,
    model_for_subject,
    parse_message,
)
from mts1b_oms.oms import Oms
from mts1b_oms.orderstore import OrderStore
from mts1b_oms.service import STATE_COMMAND_SUBJECTS
from mts1b_oms.signing import (
    NONCE_RETENTION,
    CommandVerifier,
    KeyFileError,
    KeyRegistry,
    KeyRegistryError,
    Role,
    SigningKey,
)
from mts1b_oms.store import Store
from mts1b_oms.testing import RecordingBroker, make_signing_keys
from mts1b_oms.tradingstate import make_change

if TYPE_CHECKING:
    from conftest import MakeOms

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

T0 = dt.datetime(2026, 7, 2, 14, 30, tzinfo=dt.UTC)


class FixedClock:
    """The verifier's clock, set by the test: freshness is decided without waiting."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.at = now

    def now(self) -> dt.datetime:
        return self.at


KEYS = make_signing_keys()
REGISTRY, SIGNERS = KEYS
OPS, RISK = SIGNERS["ops-test"], SIGNERS["risk-test"]


async def _oms(make: MakeOms, broker: RecordingBroker, store: OrderStore, *,
               clock: FixedClock | None = None) -> tuple[Oms, FixedClock]:
    """An OMS on ``store`` whose kill switch verifies commands against the test registry, the
    nonces going to that store, as the service wires it; and the verifier's clock."""
    clock = clock or FixedClock()
    verifier = CommandVerifier(REGISTRY, store, clock=clock)  # type: ignore[arg-type]
    return await make(broker, store=store, verify=verifier.verify), clock


def _state(oms: Oms) -> TradingState:
    return oms.states.get("fund", "f1")


async def _stored(store: OrderStore) -> dict[tuple[str, str], tuple[str, str]]:
    """Each scope's stored (state, actor)."""
    return {(c.scope, c.scope_id): (c.state.value, c.actor) for c in await store.state_changes()}


# --- the reproduced failure: anyone on the bus could resume trading ---------------------------


async def test_an_unsigned_resume_is_refused_and_nothing_changes(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    """Reproduced: SetTradingState ACTIVE with actor "chief-risk-officer" was applied and stored
    under that name. From outside it is now refused UNAUTHORIZED, and the halt stays."""
    oms, _ = await _oms(make, broker, store)
    assert (await oms.killswitch.handle_command(OPS.sign(HaltTrading, "fund", "f1", "incident",
                                                         now=T0))).ok
    reply = await oms.killswitch.handle_command(SetTradingState(
        scope="fund", scope_id="f1", state=TradingState.ACTIVE, actor="chief-risk-officer",
        reason="all clear"))
    assert (reply.ok, reply.code) == (False, ReplyCode.UNAUTHORIZED)
    assert _state(oms) is TradingState.HALTED
    assert await _stored(store) == {("fund", "f1"): ("HALTED", "ops-test")}


async def test_a_forged_resume_is_refused_and_nothing_changes(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    """A resume naming the risk key but signed by another key, one whose signed text was
    altered, and one by a key the OMS does not know: none changes the halt."""
    oms, _ = await _oms(make, broker, store)
    assert (await oms.killswitch.handle_command(OPS.sign(HaltTrading, "fund", "f1", "incident",
                                                         now=T0))).ok
    forger = SigningKey("risk-test", nacl.signing.SigningKey.generate())  # same name, other key
    genuine = RISK.sign(ResumeTrading, "fund", "f1", "looked at it", now=T0)
    altered = genuine.model_copy(update={"scope": "global", "scope_id": "*"})
    stranger = SigningKey.generate("chief-risk-officer").sign(ResumeTrading, "fund", "f1", "go",
                                                             now=T0)
    dummy_signature = genuine.model_copy(update={"signature": "A" * 86 + "=="})
    for command, code in [
            (forger.sign(ResumeTrading, "fund", "f1", "forged", now=T0),
             ReplyCode.SIGNATURE_INVALID),
            (altered, ReplyCode.SIGNATURE_INVALID),
            (dummy_signature, ReplyCode.SIGNATURE_INVALID),
            (stranger, ReplyCode.UNAUTHORIZED)]:
        reply = await oms.killswitch.handle_command(command)
        assert (reply.ok, reply.code) == (False, code), command
    assert _state(oms) is TradingState.HALTED
    assert oms.states.get("global", "*") is TradingState.ACTIVE
    assert await _stored(store) == {("fund", "f1"): ("HALTED", "ops-test")}
    # the genuine one was never consumed by the forgeries of its text: it still applies
    assert (await oms.killswitch.handle_command(genuine)).ok
    assert _state(oms) is TradingState.ACTIVE


async def test_the_actor_is_the_keys_name_whatever_the_payload(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    """The change and its event name the registered key; a payload cannot carry an actor."""
    oms, _ = await _oms(make, broker, store)
    data = json.loads(RISK.sign(ResumeTrading, "fund", "f1", "ok", now=T0).to_json())
    with pytest.raises(ValidationFailed, match="actor"):
        parse_message(ResumeTrading, {**data, "actor": "chief-risk-officer"})
    assert (await oms.killswitch.handle_command(OPS.sign(ReduceTrading, "fund", "f1", "careful",
                                                         now=T0))).ok
    assert await _stored(store) == {("fund", "f1"): ("REDUCING", "ops-test")}
    assert (await oms.killswitch.handle_command(parse_message(ResumeTrading, data))).ok
    assert await _stored(store) == {("fund", "f1"): ("ACTIVE", "risk-test")}
    published = [json.loads(row[2]) for row in await store.unpublished(100)
                 if row[1] == "mts.v1.oms.state.changed"]
    assert [(p["state"], p["actor"]) for p in published] == [("REDUCING", "ops-test"),
                                                             ("ACTIVE", "risk-test")]


async def test_a_replayed_command_is_refused(make: MakeOms, broker: RecordingBroker,
                                             store: OrderStore) -> None:
    """The same signed halt sent again after a resume: REPLAY_REFUSED, and trading goes on."""
    oms, _ = await _oms(make, broker, store)
    halt = OPS.sign(HaltTrading, "fund", "f1", "incident", now=T0)
    assert (await oms.killswitch.handle_command(halt)).ok
    assert (await oms.killswitch.handle_command(
        RISK.sign(ResumeTrading, "fund", "f1", "fixed", now=T0))).ok
    again = await oms.killswitch.handle_command(parse_message(HaltTrading, halt.to_json()))
    assert (again.ok, again.code) == (False, ReplyCode.REPLAY_REFUSED)
    assert _state(oms) is TradingState.ACTIVE
    # the nonce is the key's: another key may use the same one
    other = SIGNERS["desk-test"].sign(HaltTrading, "fund", "f2", "same nonce", now=T0,
                                      nonce=halt.nonce)
    assert (await oms.killswitch.handle_command(other)).ok


async def test_a_replay_is_refused_after_a_restart(make: MakeOms, broker: RecordingBroker,
                                                   store: OrderStore) -> None:
    """The nonce is in the store, not the process: an instance started after the first one
    applied a resume refuses the same resume (the first instance's memory is gone)."""
    first, clock = await _oms(make, broker, store)
    assert (await first.killswitch.handle_command(
        OPS.sign(HaltTrading, "fund", "f1", "incident", now=T0))).ok
    resume = RISK.sign(ResumeTrading, "fund", "f1", "fixed", now=T0)
    assert (await first.killswitch.handle_command(resume)).ok
    assert (await first.killswitch.handle_command(
        OPS.sign(HaltTrading, "fund", "f1", "again", now=T0))).ok
    await first.stop()
    second, _ = await _oms(make, RecordingBroker(), store, clock=clock)
    assert _state(second) is TradingState.HALTED
    reply = await second.killswitch.handle_command(parse_message(ResumeTrading,
                                                                 resume.to_json()))
    assert (reply.ok, reply.code) == (False, ReplyCode.REPLAY_REFUSED)
    assert _state(second) is TradingState.HALTED


@pytest.mark.integration
async def test_a_replay_is_refused_by_a_new_process_on_postgres(pg_make: MakeOms,
                                                                pg_store: Store) -> None:
    """As above across processes: a new connection pool on the same schema (what a restarted
    service opens) finds the nonce in PostgreSQL."""
    first, clock = await _oms(pg_make, RecordingBroker(), pg_store)
    halt = OPS.sign(HaltTrading, "fund", "f1", "incident", now=T0)
    assert (await first.killswitch.handle_command(halt)).ok
    await first.stop()
    reopened = await Store.open(DSN, schema=pg_store.schema, min_size=1, max_size=2)
    try:
        second, _ = await _oms(pg_make, RecordingBroker(), reopened, clock=clock)
        reply = await second.killswitch.handle_command(parse_message(HaltTrading,
                                                                     halt.to_json()))
        assert (reply.ok, reply.code) == (False, ReplyCode.REPLAY_REFUSED)
        await second.stop()
    finally:
        await reopened.close()


async def test_a_stale_timestamp_is_refused(make: MakeOms, broker: RecordingBroker,
                                            store: OrderStore) -> None:
    """Signed more than 30 s before or after the OMS's clock: STALE_COMMAND, nothing changes
    (and its nonce is not used up); at the edge of the window it is taken."""
    oms, clock = await _oms(make, broker, store)
    window = dt.timedelta(seconds=30)
    for signed in (T0 - window - dt.timedelta(microseconds=1),
                   T0 + window + dt.timedelta(microseconds=1)):
        reply = await oms.killswitch.handle_command(
            OPS.sign(HaltTrading, "fund", "f1", "late", now=signed, nonce="ab" * 16))
        assert (reply.ok, reply.code) == (False, ReplyCode.STALE_COMMAND)
    assert _state(oms) is TradingState.ACTIVE
    assert await _stored(store) == {}
    assert (await oms.killswitch.handle_command(
        OPS.sign(HaltTrading, "fund", "f1", "just in time", now=T0 - window,
                 nonce="ab" * 16))).ok
    clock.at = T0 + dt.timedelta(hours=2)  # a command signed at T0 is long stale by now
    refused = await oms.killswitch.handle_command(
        RISK.sign(ResumeTrading, "fund", "f1", "x", now=T0))
    assert refused.code is ReplyCode.STALE_COMMAND


async def test_an_operations_key_cannot_resume(make: MakeOms, broker: RecordingBroker,
                                               store: OrderStore) -> None:
    """Roles: operations halts, risk resumes; reducing a HALTED scope raises its limits and
    needs risk too. A key with both may do both."""
    oms, _ = await _oms(make, broker, store)
    assert (await oms.killswitch.handle_command(OPS.sign(HaltTrading, "fund", "f1", "stop",
                                                         now=T0))).ok
    for command in (OPS.sign(ResumeTrading, "fund", "f1", "my own resume", now=T0),
                    OPS.sign(ReduceTrading, "fund", "f1", "loosen it", now=T0),
                    RISK.sign(HaltTrading, "fund", "f2", "not my role", now=T0)):
        reply = await oms.killswitch.handle_command(command)
        assert (reply.ok, reply.code) == (False, ReplyCode.UNAUTHORIZED), command
        assert reply.message is not None and "needs the role" in reply.message
    assert _state(oms) is TradingState.HALTED
    assert (await oms.killswitch.handle_command(
        RISK.sign(ReduceTrading, "fund", "f1", "risk says reduce", now=T0))).ok
    assert _state(oms) is TradingState.REDUCING
    desk = SIGNERS["desk-test"]
    assert (await oms.killswitch.handle_command(desk.sign(HaltTrading, "fund", "f1", "h",
                                                          now=T0))).ok
    assert (await oms.killswitch.handle_command(desk.sign(ResumeTrading, "fund", "f1", "r",
                                                          now=T0))).ok
    assert await _stored(store) == {("fund", "f1"): ("ACTIVE", "desk-test")}


async def test_an_operations_reduce_never_lifts_a_halt_it_did_not_see(
        make: MakeOms, store: OrderStore) -> None:
    """Instance A halts the fund; instance B has not heard yet (its memory says ACTIVE) when an
    operations key's reduce reaches it. B checks the role against what it knows, so the write
    may only tighten: the stored HALT stays, and B answers that nothing was applied."""
    a, _ = await _oms(make, RecordingBroker(), store)
    b, _ = await _oms(make, RecordingBroker(), store)
    assert (await a.killswitch.handle_command(OPS.sign(HaltTrading, "fund", "f1", "incident",
                                                       now=T0))).ok
    assert _state(b) is TradingState.ACTIVE
    reply = await b.killswitch.handle_command(OPS.sign(ReduceTrading, "fund", "f1", "reduce",
                                                       now=T0))
    assert reply.ok and reply.context["applied"] is False
    assert await _stored(store) == {("fund", "f1"): ("HALTED", "ops-test")}


async def test_a_state_forged_on_the_fan_out_changes_nothing(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    """The other door: an unsigned ACTIVE put straight into the KV bucket every instance
    watches (dated in the future, so no later change would replace it in memory). The
    instance takes in what PostgreSQL holds for the scope, never the bucket's value."""
    oms, _ = await _oms(make, broker, store)
    assert (await oms.killswitch.handle_command(OPS.sign(HaltTrading, "fund", "f1", "incident",
                                                         now=T0))).ok
    forged = make_change("fund", "f1", TradingState.ACTIVE, "chief-risk-officer", "all clear",
                         dt.datetime.now(dt.UTC) + dt.timedelta(days=365))
    await oms.enforce_state(forged)
    assert _state(oms) is TradingState.HALTED
    await oms.killswitch.poll_once()
    assert _state(oms) is TradingState.HALTED
    assert await _stored(store) == {("fund", "f1"): ("HALTED", "ops-test")}


def test_halt_and_resume_are_on_different_subjects() -> None:
    """Reproduced: halt and resume shared mts.v1.oms.commands.state. Now each has its own
    subject and model, and a signed halt read as a resume (published on the resume subject)
    does not verify: the command is part of the signed bytes."""
    models = {s: model_for_subject(s) for s in STATE_COMMAND_SUBJECTS}
    assert models == {"mts.v1.oms.commands.halt": HaltTrading,
                      "mts.v1.oms.commands.reduce": ReduceTrading,
                      "mts.v1.oms.commands.resume": ResumeTrading,
                      "mts.v1.oms.commands.state": SetTradingState}
    both = SIGNERS["desk-test"]
    halt = both.sign(HaltTrading, "global", "*", "stop", now=T0)
    as_resume = parse_message(ResumeTrading, halt.to_json())
    registered = REGISTRY.get("desk-test")
    assert registered is not None
    assert registered.verifies(halt) and not registered.verifies(as_resume)


async def test_a_refusal_is_logged_at_warning_with_the_key_id_and_no_signature(
        make: MakeOms, broker: RecordingBroker, store: OrderStore,
        caplog: pytest.LogCaptureFixture) -> None:
    oms, _ = await _oms(make, broker, store)
    caplog.set_level(logging.WARNING, logger="mts1b_oms")
    forged = SigningKey("risk-test", nacl.signing.SigningKey.generate()).sign(
        ResumeTrading, "fund", "f1", "forged", now=T0)
    await oms.killswitch.handle_command(forged)
    [record] = [r for r in caplog.records if r.getMessage() == "trading-state command refused"]
    assert record.levelno == logging.WARNING
    context = record.__dict__["mts_context"]
    assert (context["key_id"], context["code"], context["command"]) == (
        "risk-test", "SIGNATURE_INVALID", "resume")
    assert forged.signature not in caplog.text


async def test_an_oms_without_a_key_registry_refuses_every_command(
        make: MakeOms, broker: RecordingBroker) -> None:
    """An OMS built without a key registry applies no state command from outside."""
    oms = await make(broker)
    reply = await oms.killswitch.handle_command(SIGNERS["desk-test"].sign(
        HaltTrading, "fund", "f1", "x"))
    assert (reply.ok, reply.code) == (False, ReplyCode.UNAUTHORIZED)
    assert _state(oms) is TradingState.ACTIVE


# --- the nonce store: both implementations ----------------------------------------------------


async def test_a_nonce_is_claimed_once_per_key_and_forgotten_after_retention(
        store: OrderStore) -> None:
    claim = store.claim_nonce  # type: ignore[attr-defined]
    forget = T0 - NONCE_RETENTION
    assert await claim("k1", "aa" * 16, command="halt", signed_at=T0, now=T0,
                       forget_before=forget)
    assert not await claim("k1", "aa" * 16, command="halt", signed_at=T0, now=T0,
                           forget_before=forget)
    assert await claim("k2", "aa" * 16, command="halt", signed_at=T0, now=T0,
                       forget_before=forget)
    later = T0 + NONCE_RETENTION + dt.timedelta(seconds=1)
    assert await claim("k1", "aa" * 16, command="halt", signed_at=later, now=later,
                       forget_before=later - NONCE_RETENTION)


# --- the key registry and key files -----------------------------------------------------------


def _entry(key: SigningKey, *roles: str) -> dict[str, Any]:
    return {"name": key.name, "public_key": base64.b64encode(key.public_key).decode(),
            "roles": list(roles)}


def test_the_registry_reads_its_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [_entry(OPS, "operations"),
                                         _entry(RISK, "risk", "operations")]}))
    registry = KeyRegistry.load(path)
    assert len(registry) == 2
    risk = registry.get("risk-test")
    assert risk is not None and risk.roles == {Role.RISK, Role.OPERATIONS}
    assert KeyRegistry.from_json(registry.to_json()).get("ops-test") == registry.get("ops-test")


@pytest.mark.parametrize(("keys", "message"), [
    ([{**_entry(OPS, "operations"), "seed": "c2VjcmV0LXNlZWQtdmFsdWU="}],
     r"keys\[0\] \(ops-test\) holds a private key field 'seed'"),
    ([_entry(OPS, "operations"), _entry(OPS, "risk")], "registered twice"),
    ([_entry(OPS, "operations"), {**_entry(RISK, "risk"), "public_key":
                                  base64.b64encode(OPS.public_key).decode()}],
     "same public key"),
    ([_entry(OPS, "admin")], "roles must be"),
    ([_entry(OPS)], "roles must be"),
    ([{**_entry(OPS, "risk"), "public_key": "c2hvcnQ="}], "public_key must be"),
    ([{**_entry(OPS, "risk"), "name": "../ops"}], "name must be"),
    ([{**_entry(OPS, "risk"), "comment": "x"}], "unknown field 'comment'"),
    ([], "holds no key"),
])
def test_the_registry_refuses_what_it_cannot_trust(keys: list[dict[str, Any]],
                                                   message: str) -> None:
    with pytest.raises(KeyRegistryError, match=message) as info:
        KeyRegistry.from_json(json.dumps({"keys": keys}))
    assert "c2VjcmV0" not in str(info.value)  # a pasted seed is never echoed


def test_a_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    key = SigningKey.generate("ops-alice")
    path = tmp_path / "ops-alice.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SigningKey.load(path)
    assert (loaded.name, loaded.public_key) == ("ops-alice", key.public_key)
    seed = json.loads(path.read_text())["seed"]
    assert seed not in repr(loaded) and seed not in str(loaded)
    with pytest.raises(KeyFileError, match="never overwritten"):
        SigningKey.generate("other").save(path)
    assert SigningKey.load(path).public_key == key.public_key
    if os.name == "posix":
        path.chmod(0o640)
        with pytest.raises(KeyFileError, match="may be read by others") as info:
            SigningKey.load(path)
        assert seed not in str(info.value)
    garbage = tmp_path / "garbage.key"
    garbage.write_text(f'{{"kind": "x", "seed": "{seed}"}}')
    garbage.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an MTS1B signing key file") as info:
        SigningKey.load(garbage)
    assert seed not in str(info.value)
    # the code names the shared home, not the OMS: the operations' audit keys load here too
    assert info.value.code == "PLATFORM.SIGNING.KEY_FILE"


def test_the_verifier_window_is_bounded() -> None:
    with pytest.raises(KeyRegistryError, match="window"):
        CommandVerifier(REGISTRY, object(), clock=FixedClock(),  # type: ignore[arg-type]
                        window=dt.timedelta(hours=2))
