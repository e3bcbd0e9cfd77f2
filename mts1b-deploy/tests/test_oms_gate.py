"""The OMS in a deploy, against a real OMS (with the paper venue and the treasury, started with
the paper stack's command lines from this environment) on NATS and PostgreSQL: the gate "the
OMS answers", the refusal while an order works - before anything is installed - and
``--drain``: a signed halt, the sweep cancels the order, none works any more."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.history import Generation, append
from mts1b_deploy.local import LocalTarget, ReleaseRequest
from mts1b_deploy.omscheck import OmsAnswers, OrdersGuard, OrdersWorking, working_orders
from mts1b_deploy.paperstack import PaperStack, write_paper_config
from mts1b_deploy.rollout import rollout
from mts1b_deploy.supervisor import SERVICES_FILE, Supervisor, services_json
from mts1b_foundation import CommandReply

pytestmark = pytest.mark.integration
NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
DSN = os.environ.get("MTS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"

if TYPE_CHECKING:
    from conftest import Servers


def test_drain_needs_a_key(tmp_path: Path) -> None:
    from mts1b_deploy.cli import app
    from typer.testing import CliRunner

    done = CliRunner().invoke(app, ["install", "--root", str(tmp_path), "--library",
                                    "mts1b-oms", "--start", "--drain"])
    assert done.exit_code != 0
    assert isinstance(done.exception, ReleaseError)
    assert "--drain needs --key-file" in done.exception.message


def test_the_gate_fails_when_no_oms_answers(servers: Servers) -> None:
    started = time.monotonic()
    why = OmsAnswers(servers.nats_url, servers.namespace("none"), timeout_s=1.0).check(
        Supervisor(Path("/nonexistent")))
    assert why is not None and why.startswith("no answer on mts.v1.oms.commands.state within 1 s")
    assert time.monotonic() - started < 5


@pytest.fixture
def oms_stack(paper_libraries: None, servers: Servers, tmp_path: Path
              ) -> Iterator[tuple[PaperStack, Path]]:
    """The venue, the treasury and the OMS running (their paper-stack command lines, this
    environment's interpreter), one fund; stopped afterwards (then the servers' fixture
    deletes their streams and schemas)."""
    tag = servers.namespace("gate")
    stack = PaperStack(fund_id="f1", strategy="s1", cash=Decimal(1_000_000), symbols=("AAA",),
                       nats_url=NATS_URL, database_url=DSN, namespace=tag,
                       oms_schema=f"{tag}_oms", treasury_schema=f"{tag}_treasury")
    config = tmp_path / "config"
    write_paper_config(stack, config, tmp_path / "desk.key")
    env = {**os.environ, "MTS_NATS_URL": NATS_URL, "MTS_DATABASE_URL": DSN,
           "MTS_DEV_DIR": str(tmp_path / "dev")}
    created = subprocess.run(
        [sys.executable, "-m", "mts1b_platform.cli", "mts1b-treasury", "fund", "create",
         "--file", str(tmp_path / "fund.json"), "--opening-cash", "1000000", "--actor", "test",
         "--namespace", tag, "--schema", stack.treasury_schema], env=env, capture_output=True,
        text=True, timeout=120, check=False)
    assert created.returncode == 0, created.stderr
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, spec in stack.services().items():
            argv = [sys.executable, *spec.argv[1:]]
            argv = [a.replace("{release}/config", str(config)) for a in argv]
            with (tmp_path / f"{name}.log").open("ab") as log:
                procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                              start_new_session=True))
        gate = OmsAnswers(NATS_URL, tag, timeout_s=60)
        assert gate.check(Supervisor(tmp_path)) is None, {
            p.name: p.read_text()[-800:] for p in tmp_path.glob("*.log")}
        yield stack, tmp_path
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


async def _working_order(namespace: str) -> CommandReply:
    """A market order the venue accepts and holds: it fills on the next bar, which never
    comes (the bar before gives the OMS its reference price)."""
    from mts1b_foundation import Bar, Equity, Order, Side, SubmitOrder
    from mts1b_platform.bus import Bus

    bus = await Bus.connect(url=NATS_URL, namespace=namespace, connect_timeout=5)
    try:
        p = Decimal(100)
        bar = Bar(symbol="AAA", ts=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
                  interval="1d", open=p, high=p, low=p, close=p, volume=Decimal(1_000_000))
        await bus.nc.publish(bus.wire_subject("mts.v1.datalake.bars.AAA"), bar.to_json())
        await bus.nc.flush()
        await asyncio.sleep(0.5)
        order = Order(idempotency_key=f"k-{uuid.uuid4().hex}", fund_id="f1", strategy_id="s1",
                      instrument=Equity(symbol="AAA"), side=Side.BUY, quantity=Decimal(10))
        reply = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=order),
                                  timeout=10, reply_model=CommandReply)
        assert isinstance(reply, CommandReply)
        return reply
    finally:
        await bus.drain()


def _kept_release(target: LocalTarget, number: int, stack: PaperStack) -> Generation:
    """A release folder as ``install`` leaves it (without its venv: it is not started)."""
    generation = Generation(generation=number, sha=f"{number}" * 40,
                            directory=f"{number}-{str(number) * 12}", libraries={}, schema={},
                            lock_sha256="0" * 64, config_sha256="0" * 64,
                            installed_at="2026-12-06T00:00:00+00:00", by="test")
    folder = target.releases / generation.directory
    (folder / "config").mkdir(parents=True)
    (folder / "config" / SERVICES_FILE).write_text(services_json(stack.services()))
    (folder / "release.json").write_text("{}")
    append(target.root, generation)
    return generation


def test_refused_while_an_order_works_then_drained(oms_stack: tuple[PaperStack, Path]) -> None:
    stack, tmp_path = oms_stack
    assert working_orders(NATS_URL, stack.namespace) == 0
    assert asyncio.run(_working_order(stack.namespace or "")).ok
    deadline = time.monotonic() + 10
    while working_orders(NATS_URL, stack.namespace) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert working_orders(NATS_URL, stack.namespace) == 1

    target = LocalTarget(tmp_path / "mts")
    request = ReleaseRequest(repo=tmp_path, libraries=("mts1b-oms",),
                             wheelhouse=tmp_path / "no-wheels")
    with pytest.raises(OrdersWorking, match=r"1 order\(s\) are working in the OMS: .*--drain "
                                            r".*nothing was installed"):
        rollout(target, request, Supervisor(target.root), [],
                guard=OrdersGuard(NATS_URL, stack.namespace))
    assert not target.releases.exists() and target.current() is None

    # rollback --restart of a target whose current release runs the OMS: refused as well
    kept = [_kept_release(target, number, stack) for number in (1, 2)]
    target.switch_to(kept[1], "install")
    from mts1b_deploy.cli import app
    from typer.testing import CliRunner

    back = CliRunner().invoke(app, ["rollback", "--root", str(target.root), "--to", "1",
                                    "--restart", "--nats-url", NATS_URL, "--namespace",
                                    stack.namespace or ""])
    assert isinstance(back.exception, OrdersWorking), back.output
    assert back.exception.message.endswith("current was not switched")
    assert target.current() == kept[1]
    # and so is pushing a release into the OMS's Proxmox container (before any SSH)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(EXAMPLE.read_text().replace("ssh_host: pve1.lan",
                                                     "ssh_host: 127.0.0.1\n    ssh_port: 9"))
    pushed = CliRunner().invoke(app, ["push", "oms", "--inventory", str(inventory), "--root",
                                      str(target.root), "--nats-url", NATS_URL,
                                      "--namespace", stack.namespace or ""])
    assert isinstance(pushed.exception, OrdersWorking), pushed.output
    assert pushed.exception.message.endswith("nothing was pushed")

    lines: list[str] = []
    OrdersGuard(NATS_URL, stack.namespace, tmp_path / "desk.key", drain_timeout_s=30)(
        lines.append)
    assert lines[0] == "drain: trading HALTED by deploy-desk; 1 order(s) being canceled"
    assert lines[1].startswith("drain: no order working; trading stays HALTED")
    assert working_orders(NATS_URL, stack.namespace) == 0
    refused = asyncio.run(_working_order(stack.namespace or ""))  # halted: no new order
    assert not refused.ok and refused.message and "HALTED" in refused.message.upper(), refused
