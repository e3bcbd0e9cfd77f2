"""Deploy the paper stack to the local target, change it, roll it back - and trade through it.

Crosses: mts1b-deploy (releases built from the lock, the supervisor, the health gates, the
working-orders guard, ``rollback``), mts1b-platform (the bus the gates, the guard and the
orders travel on; the ``mts`` entry point the services run under) and the paper services it
deploys from their wheels - mts1b-brokers (the venue), mts1b-oms and mts1b-treasury - over real
NATS JetStream and PostgreSQL (``MTS_NATS_URL``, ``MTS_DATABASE_URL``; see conftest.py).

Why it exists beside the deploy library's own tests: those run the rollout against services that
only send heartbeats (``test_rollout.py``), and Tutorial 4's test checks that the venue's command
line names release 1 again after the rollback. Neither shows that what *trades* after a rollback
is release 1. Here each generation trades one order through its OMS and venue, and the treasury
books what the venue charged: no commission under release 1, one basis point under release 2
(its only change), none again once release 1 is back - while the books, kept in PostgreSQL,
carry on across the three restarts.

The release build: the three libraries' closure (five workspace wheels, built into a temporary
folder, never into ``dist/``, which other processes rewrite; the locked third-party wheels
copied from ``dist/`` - or the folder ``MTS_DEPLOY_TEST_DIST`` names, as in mts1b-deploy's
tests - by hash, as ``mts1b-deploy install`` takes them, or downloaded by hash when it lacks
them), once per module.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import (
    Bar,
    CommandReply,
    Equity,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SubmitOrder,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LIBRARIES = ("mts1b-brokers", "mts1b-oms", "mts1b-treasury")
FUND = "desk"
D = Decimal


def _pip() -> list[str]:
    """The base interpreter's pip (the workspace venv has none), or a skip."""
    base = getattr(sys, "_base_executable", sys.executable)
    if subprocess.run([base, "-m", "pip", "--version"], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("dist/ lacks the locked wheels and no pip is here to download them "
                    "(python3 dev.py wheels fills dist/)")
    return [base, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def _download_pins(pins: Any, house: Path) -> None:
    """The locked third-party wheels by hash from the index, for a checkout without a filled
    ``dist/``; a pin the index has only as an sdist is built from its hash-checked sdist and
    recorded as ``python3 dev.py wheels`` records it. Skips, saying why, when offline."""
    from mts1b_deploy.wheelhouse import BUILT_RECORD, sha256_of

    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    sdist_only = {(p["name"], p["version"]) for p in lock["package"]
                  if "version" in p and not p.get("wheels")}
    pip = _pip()
    built: dict[str, object] = {}
    for sdist in (False, True):
        chosen = [p for p in pins if ((p.name, p.version) in sdist_only) is sdist]
        if not chosen:
            continue
        requirements = house.parent / f"{house.name}-{'sdists' if sdist else 'wheels'}.txt"
        requirements.write_text("".join(p.line + "\n" for p in chosen), encoding="utf-8")
        out = house.parent / f"{house.name}-built" if sdist else house
        argv = ([*pip, "wheel", "--no-binary", ":all:", "--wheel-dir", str(out)] if sdist else
                [*pip, "download", "--only-binary=:all:", "--dest", str(out)])
        done = subprocess.run([*argv, "--require-hashes", "--no-deps", "-r", str(requirements)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"dist/ lacks the locked wheels and pip could not fetch them (offline?):"
                        f" {done.stderr.strip().splitlines()[-1:]}; python3 dev.py wheels "
                        "fills dist/")
        for pin in chosen if sdist else ():
            wheel = next(out.glob(f"{pin.name.replace('-', '_')}-{pin.version}-*.whl"))
            shutil.move(str(wheel), house / wheel.name)
            built[wheel.name] = {"sha256": sha256_of(house / wheel.name),
                                 "sdist_hashes": sorted(pin.hashes)}
    if built:
        (house / BUILT_RECORD).write_text(json.dumps(built), encoding="utf-8")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every wheel the paper stack's releases install, in a folder of this module's own."""
    from mts1b_deploy.errors import ReleaseError
    from mts1b_deploy.pins import Closure, find_uv, locked_closure
    from mts1b_deploy.wheelhouse import BUILT_RECORD, collect_wheels

    house = tmp_path_factory.mktemp("paper-wheels")
    try:
        uv = find_uv(REPO)
        closure = locked_closure(REPO, LIBRARIES, uv)
    except ReleaseError as exc:
        pytest.skip(f"no release can be built here: {exc.message}")
    builds = [subprocess.Popen([uv, "build", "--wheel", "--quiet", "--out-dir", str(house),
                                str(REPO / member)], stderr=subprocess.PIPE)
              for member in closure.members]  # side by side: uv waits on its build backend
    for member, build in zip(closure.members, builds, strict=True):
        _, err = build.communicate(timeout=300)
        assert build.returncode == 0, f"uv build {member}: {err.decode()[-2000:]}"
    dist = Path(os.environ.get("MTS_DEPLOY_TEST_DIST", str(REPO / "dist")))  # as mts1b-deploy's
    try:  # hash-checked: a wheel being rewritten in dist/ right now is refused, not taken
        collect_wheels(REPO, Closure((), closure.pins), dist, house)
        if (dist / BUILT_RECORD).is_file():
            shutil.copy2(dist / BUILT_RECORD, house / BUILT_RECORD)
    except (ReleaseError, OSError):
        _download_pins(closure.pins, house)
    return house


def _ok(result: Any) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return str(result.stdout)


async def _trade(servers: Any, namespace: str, treasury_schema: str, key: str,
                 bar_ts: dt.datetime) -> tuple[Decimal, Decimal, Decimal]:
    """A buy of 10 AAPL (limit 105) sent to the deployed OMS over NATS between two one-minute
    bars opening at 100 on the datalake subject, as a replay sends them (the first prices the
    OMS's collar and the venue, the second fills); returns what the treasury booked for that
    order: (quantity, price, commission)."""
    from mts1b_foundation import ReplyCode
    from mts1b_platform.bus import Bus
    from mts1b_treasury.db import TreasuryDb
    from mts1b_treasury.ledger import Ledger

    bus = await Bus.connect(url=servers.nats_url, namespace=namespace, connect_timeout=5)
    db = await TreasuryDb.open(servers.dsn, schema=treasury_schema)

    async def bar(ts: dt.datetime) -> None:
        b = Bar(symbol="AAPL", ts=ts, interval="1m", open=D(100), high=D(101), low=D(99),
                close=D(100), volume=D(1_000_000))
        await bus.nc.publish(bus.wire_subject("mts.v1.datalake.bars.AAPL"), b.to_json())
        await bus.nc.flush()

    try:
        await bar(bar_ts)
        for attempt in range(100):  # until the OMS has the bar's price (core NATS, no ack)
            order = Order(idempotency_key=f"{key}-{attempt}", fund_id=FUND,
                          strategy_id="desk", instrument=Equity(symbol="AAPL"), side=Side.BUY,
                          quantity=D(10), order_type=OrderType.LIMIT, limit_price=D(105))
            answer = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=order),
                                       timeout=30, reply_model=CommandReply)
            assert isinstance(answer, CommandReply)
            reply = answer
            if reply.code is not ReplyCode.NO_REFERENCE_PRICE:
                break
            await asyncio.sleep(0.05)
        assert reply.ok and reply.status is OrderStatus.ACCEPTED, (reply.code, reply.message)
        await bar(bar_ts + dt.timedelta(minutes=1))
        ledger = Ledger(db)
        for _ in range(600):
            booked = [f.posting.fill for f in await ledger.fills(FUND)
                      if f.posting.fill.order_id == reply.order_id]
            if booked:
                [fill] = booked
                return fill.quantity, fill.price, fill.commission
            await asyncio.sleep(0.05)
        raise AssertionError(f"the treasury never booked a fill of {reply.order_id}")
    finally:
        await db.close()
        await bus.drain()


def _next_bar(previous: dt.datetime | None) -> dt.datetime:
    """A bar time after the wall clock and after the bars of the trade before (the venue's
    market time)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=1)
    return now if previous is None else max(now, previous + dt.timedelta(minutes=2))


async def _drop(servers: Any, namespace: str, schemas: list[str]) -> None:
    from mts1b_platform.bus import Bus

    bus = await Bus.connect(url=servers.nats_url, namespace=namespace, connect_timeout=5)
    try:
        await bus.delete_streams()
    finally:
        await bus.drain()
    await servers.drop_schemas(*schemas)


@pytest.fixture
def stack_env(servers: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A namespace and schemas of this test's own, the local target's folder; afterwards the
    services are stopped and the streams and schemas dropped."""
    from mts1b_deploy.supervisor import Supervisor

    namespace = servers.unique("dr")
    root = tmp_path / "mts"
    supervisor = Supervisor(root, stop_timeout=10)  # the services are its children: reaped
    env = {"namespace": namespace, "oms_schema": f"{namespace}_oms",
           "treasury_schema": f"{namespace}_treasury", "root": root, "supervisor": supervisor}
    try:
        yield env
    finally:
        supervisor.stop()
        asyncio.run(_drop(servers, namespace, [env["oms_schema"], env["treasury_schema"]]))


def _cmdline(root: Path, service: str) -> list[str]:
    pid = json.loads((root / "run" / f"{service}.json").read_text())["pid"]
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_a_rollback_brings_back_what_release_1_trades(
        servers: Any, wheelhouse: Path, stack_env: dict[str, Any], tmp_path: Path) -> None:
    """deploy + platform + brokers/OMS/treasury: install 1 (gates), trade; install 2 (one
    setting changed: the venue's commission), trade; roll back to 1, trade - and what runs,
    trades and is booked after the rollback is release 1's."""
    from mts1b_deploy.gates import KillSwitchUnchanged, ProcessesAlive
    from mts1b_deploy.local import LocalTarget, ReleaseRequest, read_config_dir
    from mts1b_deploy.omscheck import OmsAnswers, OrdersGuard
    from mts1b_deploy.paperstack import PaperStack, write_paper_config
    from mts1b_deploy.rollout import restart, rollout
    from mts1b_treasury.cli import app as treasury
    from typer.testing import CliRunner

    ns, root = stack_env["namespace"], stack_env["root"]
    target = LocalTarget(root)
    supervisor = stack_env["supervisor"]
    lines: list[str] = []

    def release(commission_bps: str) -> ReleaseRequest:
        """The paper stack's release with the venue charging ``commission_bps``."""
        stack = PaperStack(fund_id=FUND, cash=D(1_000_000), symbols=("AAPL",),
                           nats_url=servers.nats_url, database_url=servers.dsn, namespace=ns,
                           oms_schema=stack_env["oms_schema"],
                           treasury_schema=stack_env["treasury_schema"],
                           commission_bps=D(commission_bps))
        config = tmp_path / f"config-{commission_bps}bps"
        write_paper_config(stack, config, tmp_path / "desk.key",
                           fund_file=tmp_path / "fund.json")
        files, services = read_config_dir(config)
        return ReleaseRequest(repo=REPO, libraries=LIBRARIES, wheelhouse=wheelhouse,
                              config=files, services=services)

    def gates() -> list[Any]:  # what `install --start --oms-answers --watch-kill-switch` runs
        return [ProcessesAlive(settle_s=2.0),
                OmsAnswers(servers.nats_url, namespace=ns, timeout_s=60),
                KillSwitchUnchanged(servers.nats_url, namespace=ns)]

    guard = OrdersGuard(servers.nats_url, ns)  # refuses a restart while orders work
    first_release = release("0")
    # the OMS trades for the funds the treasury holds: created first, published on the bus
    _ok(CliRunner().invoke(treasury, [
        "fund", "create", "--file", str(tmp_path / "fund.json"), "--opening-cash", "1000000",
        "--actor", "rollback-test", "--dsn", servers.dsn,
        "--schema", stack_env["treasury_schema"], "--namespace", ns],
        env={"MTS_NATS_URL": servers.nats_url}))

    # -- generation 1: no commission -------------------------------------------------------
    first = rollout(target, first_release, supervisor, gates(), lines.append)
    bar = _next_bar(None)
    booked = [asyncio.run(_trade(servers, ns, stack_env["treasury_schema"], "gen1", bar))]

    # -- generation 2: the venue charges one basis point -------------------------------------
    second = rollout(target, release("1"), supervisor, gates(), lines.append, guard=guard)
    bar = _next_bar(bar)
    booked.append(asyncio.run(_trade(servers, ns, stack_env["treasury_schema"], "gen2", bar)))

    # -- back to generation 1 (`rollback --to 1 --restart`) ----------------------------------
    guard(lines.append)
    back = target.rollback("1", lines.append)
    restart(supervisor, lines.append)
    assert ProcessesAlive(settle_s=2.0).check(supervisor) is None
    assert OmsAnswers(servers.nats_url, namespace=ns, timeout_s=60).check(supervisor) is None
    bar = _next_bar(bar)
    booked.append(asyncio.run(_trade(servers, ns, stack_env["treasury_schema"], "back", bar)))

    # what each generation charged, as the treasury booked it from the venue's fills
    assert booked == [(D(10), D(100), D(0)), (D(10), D(100), D("0.10")),
                      (D(10), D(100), D(0))]
    # and the books carried on across the three restarts: one position, one commission
    from mts1b_treasury.db import TreasuryDb
    from mts1b_treasury.ledger import Ledger

    async def books() -> tuple[dict[str, tuple[Decimal, Decimal]], dict[str, Decimal]]:
        db = await TreasuryDb.open(servers.dsn, schema=stack_env["treasury_schema"])
        try:
            ledger = Ledger(db)
            return await ledger.positions(FUND), await ledger.balances(FUND)
        finally:
            await db.close()

    positions, balances = asyncio.run(books())
    assert positions == {"AAPL": (D(30), D(3000))}
    assert (balances["cash"], balances["commissions"]) == (D("996999.90"), D("0.10"))

    # the gates passed for both installs, and the guard found no order working each time
    for gate in ("processes alive", "oms answers", "kill switch unchanged"):
        assert lines.count(f"gate {gate}: ok") == 2, lines
    assert lines.count("orders: none working") == 2, lines

    # what runs now is release 1: its folder, its venue settings, its history line
    assert (first.generation, second.generation, back.generation) == (1, 2, 1)
    assert first.config_sha256 != second.config_sha256
    current = target.current()
    assert current is not None and current.generation == 1
    assert os.readlink(target.current_link) == f"releases/{first.directory}"
    for service in ("brokers", "oms", "treasury"):
        argv = _cmdline(root, service)
        assert argv[0] == str(root.resolve() / "releases" / first.directory / "venv" / "bin" /
                              "python"), argv
    venue = _cmdline(root, "brokers")
    assert venue[venue.index("--commission-bps") + 1] == "0", venue
    assert supervisor.running() == dict.fromkeys(("brokers", "oms", "treasury"), True)
    reasons = [json.loads(line)["reason"] for line in
               (root / "generations.jsonl").read_text().splitlines() if '"switch"' in line]
    assert reasons == ["install", "install", "rollback to 1"]
