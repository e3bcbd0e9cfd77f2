"""Over the real NATS at MTS_NATS_URL: conformance, malformed commands, error mapping, the CLI.

Each test uses its own bus namespace (subjects and streams prefixed) and deletes its streams.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal as D  # noqa: N817

import pytest
from mts1b_brokers.conformance import CHECKS, paper_harness, run_check
from mts1b_brokers.remote import RemoteBroker
from mts1b_brokers.service import BrokerService, account_subject
from mts1b_brokers.testing.over_nats import nats_reachable, over_nats
from mts1b_foundation import (
    AccountSnapshot,
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    CommandReply,
    Equity,
    ExecType,
    Order,
    parse_message,
)
from mts1b_platform.bus import Bus
from nats.aio.msg import Msg

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not nats_reachable(URL), reason=f"no NATS at {URL}")]


def order(n: int = 1, **kw: object) -> Order:
    base: dict[str, object] = dict(
        order_id=f"n{n}-{uuid.uuid4().hex[:6]}", idempotency_key=f"k{n}", fund_id="conf",
        strategy_id="s", instrument=Equity(symbol="CONF"), side="buy", quantity=D(10),
        order_type="limit", limit_price=D(90), time_in_force="GTC")
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_paper_passes_over_nats(check: str, namespace: str) -> None:
    base = paper_harness(name="paper")

    await run_check(check, over_nats(base, "paper", url=URL, namespace=namespace, settle=0.2))


async def test_malformed_commands_get_a_reply_naming_the_field(namespace: str) -> None:
    h = await paper_harness()()
    bus = await Bus.connect(url=URL, namespace=namespace)
    async with BrokerService(h.broker, bus):
        subject = bus.wire_subject("mts.v1.brokers.paper.submit")
        good = order().model_dump(mode="json")
        bad = {"order": {**good, "quantity": "lots"}}
        import json
        msg = await bus.nc.request(subject, json.dumps(bad).encode(), timeout=3)
        reply = parse_message(CommandReply, msg.data)
        assert not reply.ok and reply.code == "VALIDATION_FAILED"
        assert reply.context["field"] == "order.quantity" and "order.quantity" in (
            reply.message or "")
        msg = await bus.nc.request(subject, b"{not json", timeout=3)
        assert parse_message(CommandReply, msg.data).code == "VALIDATION_FAILED"
        # the service is still answering
        async with RemoteBroker("paper", url=URL, namespace=namespace) as remote:
            ack = await remote.submit(order())
            assert ack.exec_type is ExecType.ACK
            with pytest.raises(BrokerRejected) as info:
                await remote.submit(order(limit_price=D("90.001")))
            assert info.value.context["reason_code"] == "TICK_SIZE"
            assert info.value.context["remote_code"] == "BROKER_REJECTED"
            assert info.value.context["report"].exec_type is ExecType.REJECT
            snapshot = await remote.account("conf")
            assert snapshot.cash == D(1_000_000)
    await bus.drain()


async def test_no_service_is_a_transport_error_and_silence_an_unknown_outcome(
        namespace: str) -> None:
    async with RemoteBroker("ghost", url=URL, namespace=namespace, timeout=0.5) as remote:
        with pytest.raises(BrokerTransportError):
            await remote.submit(order())
        bus = await Bus.connect(url=URL, namespace=namespace)

        async def swallow(msg: object) -> None:  # receives, never answers
            return None

        await bus.nc.subscribe(bus.wire_subject("mts.v1.brokers.ghost.submit"), cb=swallow)
        await bus.nc.flush()
        # The listener is on another connection: once in CI the server still answered "no
        # responders" right after that flush, so give its interest a bounded time to show.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                await remote.submit(order())
            except BrokerUnknownOutcome as unknown:
                outcome: BrokerUnknownOutcome = unknown
                break
            except BrokerTransportError:
                assert time.monotonic() < deadline, "the listener never became visible"
                await asyncio.sleep(0.05)
            else:
                pytest.fail("a listener that never answers produced a reply")
        assert not isinstance(outcome, BrokerRejected)
        await bus.drain()


async def test_a_submit_waits_for_a_service_that_comes_back_within_the_grace(
        namespace: str) -> None:
    """"No responders" proves the command reached no service, so it is sent again until one
    listens (``unavailable_grace``) - a supervised venue restarting after a SIGKILL - and the
    order is executed once. Without the grace the same moment is a transport error."""
    h = await paper_harness()()
    bus = await Bus.connect(url=URL, namespace=namespace)
    async with RemoteBroker("paper", url=URL, namespace=namespace) as impatient:
        with pytest.raises(BrokerTransportError, match="no 'paper' broker service is listening"):
            await impatient.submit(order())
    async with RemoteBroker("paper", url=URL, namespace=namespace,
                            unavailable_grace=20) as patient:
        submitted = asyncio.create_task(patient.submit(order(2)))
        await asyncio.sleep(0.6)  # several refused sends while nobody listens
        assert not submitted.done()
        async with BrokerService(h.broker, bus):
            ack = await asyncio.wait_for(submitted, 10)
            assert ack.exec_type is ExecType.ACK
            assert [o.order_id for o in await patient.open_orders(None)] == [ack.order_id]
    with pytest.raises(BrokerTransportError, match=r"listening \(waited 0.3s\)"):
        async with RemoteBroker("paper", url=URL, namespace=namespace,
                                unavailable_grace=0.3) as brief:
            await brief.submit(order(3))
    with pytest.raises(ValueError, match="unavailable_grace"):
        RemoteBroker("paper", unavailable_grace=-1)
    await bus.drain()


def _serve_paper(name: str, namespace: str, **env: str) -> subprocess.Popen[str]:
    """``python -m mts1b_brokers.cli serve paper`` (that is, ``mts mts1b-brokers serve``), with
    stdout and stderr kept apart; ``MTS_LOG_*`` only as given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MTS_LOG_")}
    return subprocess.Popen(
        [sys.executable, "-m", "mts1b_brokers.cli", "serve", "paper", "--name", name,
         "--account", "conf=5000", "--nats-url", URL, "--namespace", namespace],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**base, "MTS_LOG_FORMAT": "json", **env},
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.terminate()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return out, err


def test_cli_serve_is_quiet_by_default_and_says_where_it_serves_on_stdout(
        namespace: str) -> None:
    proc = _serve_paper("quietcli", namespace)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # printed once the service answers
    out, err = _stop(proc)
    assert (first + out).splitlines() == [
        f"broker paper serving as quietcli on mts.v1.brokers.quietcli.* (namespace {namespace}); "
        "SIGTERM drains", "broker quietcli stopped"]
    assert err == ""  # nothing below WARNING, and nothing went wrong


async def test_cli_serve_paper(namespace: str) -> None:
    name = "papercli"
    proc = _serve_paper(name, namespace, MTS_LOG_LEVEL="INFO")
    try:
        # A generous request timeout: a CI machine under load may take seconds to answer.
        async with RemoteBroker(name, url=URL, namespace=namespace, timeout=10) as remote:
            # A fresh interpreter imports the whole CLI first: on a loaded 2-core machine
            # that alone has taken over 10 s.
            deadline = time.monotonic() + 60.0
            while True:
                try:
                    snapshot = await remote.account("conf")
                    break
                except BrokerTransportError:
                    if time.monotonic() > deadline:
                        pytest.fail("the service did not come up in 60 s")
                    await asyncio.sleep(0.1)
            assert snapshot.cash == D(5000) and snapshot.broker == name
            ack = await remote.submit(order(quantity=D(1)))
            assert ack.exec_type is ExecType.ACK and ack.broker == name
            assert [o.order_id for o in await remote.open_orders("conf")] == [ack.order_id]
    finally:
        out, err = _stop(proc)
    assert out.startswith("broker paper serving as papercli on mts.v1.brokers.papercli.*")
    lines = [json.loads(line) for line in err.splitlines()]  # every stderr line is a log line
    assert {"broker service started", "broker service stopped"} <= {
        line["message"] for line in lines}
    assert {line.get("service") for line in lines} == {"broker-papercli"}


async def test_reports_published_while_the_client_was_away_arrive_after_connect(
        namespace: str) -> None:
    """The fill happens while the RemoteBroker is closed; after connect it resumes the stream
    after the last sequence it saw, so the fill report still arrives."""
    h = await paper_harness()()
    bus = await Bus.connect(url=URL, namespace=namespace)
    async with BrokerService(h.broker, bus):
        remote = RemoteBroker("paper", url=URL, namespace=namespace)
        await remote.connect()
        reports = remote.execution_reports()
        working = order()  # GTC limit 90
        assert (await remote.submit(working)).exec_type is ExecType.ACK
        await remote.close()
        await h.driver.trade("CONF", D(90), D(100))  # fills while the client is away
        await asyncio.sleep(0.3)
        await remote.connect()

        async def fill_of_working() -> ExecType:
            async for report in reports:
                if report.order_id == working.order_id and report.exec_type in (
                        ExecType.PARTIAL_FILL, ExecType.FILL):
                    return report.exec_type
            raise AssertionError("report stream ended")

        assert await asyncio.wait_for(fill_of_working(), 5) is ExecType.FILL
        await remote.close()
    await bus.drain()


async def test_a_fill_publishes_the_account_snapshot(namespace: str) -> None:
    h = await paper_harness()()
    bus = await Bus.connect(url=URL, namespace=namespace)
    snapshots: asyncio.Queue[AccountSnapshot] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        snapshots.put_nowait(parse_message(AccountSnapshot, msg.data))

    await bus.nc.subscribe(bus.wire_subject(account_subject("paper")), cb=collect)
    async with BrokerService(h.broker, bus):
        await h.broker.submit(order())  # GTC limit 90 for 10
        await h.driver.trade("CONF", D(90), D(100))
        snapshot = await asyncio.wait_for(snapshots.get(), 5)
    assert (snapshot.account_id, snapshot.positions) == ("conf", {"CONF": D(10)})
    assert snapshot.cash == D(1_000_000) - D(900)
    await bus.drain()


async def test_stop_finishes_when_a_library_turns_the_pumps_cancel_into_an_error(
        namespace: str) -> None:
    """Reproduced (1 run in about 12 under load): ``stop()`` cancelled the report pump while it
    was publishing, a library on the way turned the cancel into an error of its own, the
    pump's ``except Exception`` logged it and went back to wait for the next report, and
    ``stop()`` waited for the pump for ever. Here the broker's ``account()`` does that
    conversion on purpose while the pump publishes a fill's snapshot."""
    h = await paper_harness()()
    in_account = asyncio.Event()
    real_account = h.broker.account

    async def converting_account(account_id: str) -> AccountSnapshot:
        in_account.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("the cancel, as some client library reports it") from None
        return await real_account(account_id)

    h.broker.account = converting_account  # type: ignore[method-assign]
    bus = await Bus.connect(url=URL, namespace=namespace)
    service = BrokerService(h.broker, bus)
    await service.start()
    await h.broker.submit(order())
    await h.driver.trade("CONF", D(90), D(100))
    await asyncio.wait_for(in_account.wait(), 10)
    stopping = asyncio.create_task(service.stop())
    done, _ = await asyncio.wait({stopping}, timeout=8)  # not wait_for: cancelling stop()
    if not done:  # would also cancel the pump and hide the hang
        stopping.cancel()
    await bus.drain()
    assert done, "stop() still waiting for the report pump after 8 s"
    await stopping
