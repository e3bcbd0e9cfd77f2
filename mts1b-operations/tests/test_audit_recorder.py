"""The recorder on a real NATS JetStream and PostgreSQL: every domain but market data, each
event once across redeliveries and restarts, signed checkpoints that verify, the skew alert."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace as Kit
from typing import Any

import pytest
from mts1b_foundation import Alert, parse_message
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.checkpoints import (
    bus_checkpoints,
    load_checkpoint_dir,
    stored_checkpoints,
)
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.recorder import (
    RECORDED_DOMAINS,
    Recorder,
    RecorderOptions,
    run_recorder,
)
from mts1b_operations.audit.verify import verify_entries
from mts1b_operations.cli import app
from mts1b_platform.signing import KeyRegistry, SigningKey
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

KEY = SigningKey.generate("ops-audit")


def keys_json() -> str:
    return json.dumps({"keys": [KEY.registered(["operations"]).entry()]})


def options(bus: Any, db: AuditDb, kit: Kit, **kw: Any) -> RecorderOptions:
    return RecorderOptions(dsn=kit.DSN, schema=db.schema, namespace=bus.namespace,
                           **{"skew_threshold": 0.0, **kw})


async def start(opts: RecorderOptions) -> tuple[asyncio.Task[Recorder], asyncio.Event]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_recorder(opts, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    return task, stop


async def wait_size(db: AuditDb, size: int, timeout: float = 20.0) -> None:
    chain = AuditChain(db)
    deadline = asyncio.get_running_loop().time() + timeout
    while (await chain.head()).size < size:
        assert asyncio.get_running_loop().time() < deadline, (await chain.head()).size
        await asyncio.sleep(0.05)


async def publish(bus: Any, subject: str, body: dict[str, Any], msg_id: str) -> None:
    await bus.publish_bytes(subject, json.dumps(body).encode(), {"Nats-Msg-Id": msg_id})


async def test_every_domain_but_market_data_once_across_restarts(
        audit_db: AuditDb, fresh_bus: Any, kit: Kit, tmp_path: Path) -> None:
    bus = fresh_bus
    await bus.declare_streams()
    opts = options(bus, audit_db, kit, signing_key=KEY, checkpoint_dir=tmp_path,
                   checkpoint_every=4, checkpoint_interval=0.5, batch=3)
    task, stop = await start(opts)
    events = [("mts.v1.oms.orders.accepted", kit.event(1, order="ord-abc")),
              ("mts.v1.brokers.paper.execution", kit.event(2, order="ord-abc")),
              ("mts.v1.treasury.nav.struck", {"fund_id": "F1", "ts": kit.BASE.isoformat()}),
              ("mts.v1.oms.state.changed", {"scope_id": "F1", "actor": "ops-alice"}),
              ("mts.v1.dlq.oms", {"reason": "bad", "order_id": "ord-abc"}),
              ("mts.v1.operations.alerts.raised", {"alert_id": "a1", "source": "oms"})]
    for i, (subject, body) in enumerate(events):
        await publish(bus, subject, body, f"m-{i}")
    await publish(bus, "mts.v1.datalake.bars.AAPL", {"symbol": "AAPL"}, "bar-1")
    await wait_size(audit_db, len(events))
    await asyncio.sleep(1.0)  # the idle checkpoint of the last entries
    stop.set()
    first = await task
    assert (first.stats.appended, first.stats.duplicates) == (6, 0)

    # Lost acknowledgements: the consumers start over from the first message.
    for domain in RECORDED_DOMAINS:
        await bus.js.delete_consumer(bus.stream_for(domain), opts.durable)
    task, stop = await start(opts)
    await publish(bus, "mts.v1.oms.orders.filled", kit.event(7, order="ord-abc"), "m-7")
    await wait_size(audit_db, len(events) + 1)
    await asyncio.sleep(1.0)
    stop.set()
    second = await task
    assert second.stats.appended == 1 and second.stats.duplicates == len(events)

    chain = AuditChain(audit_db)
    assert (await chain.head()).size == 7
    subjects = {r.subject async for r in chain.entries()}
    assert "mts.v1.datalake.bars.AAPL" not in subjects
    assert not any(s.startswith("mts.v1.operations.audit.") for s in subjects)
    # Across streams the chain's order is the order the recorder received them in.
    about = [r.subject for r in await chain.mentioning("ord-abc")]
    assert sorted(about[:3]) == ["mts.v1.brokers.paper.execution", "mts.v1.dlq.oms",
                                 "mts.v1.oms.orders.accepted"]
    assert about[3] == "mts.v1.oms.orders.filled"

    # Checkpoints: in the table, in the directory, on the bus; the chain verifies against
    # them with the signer's public key and is anchored to its end.
    stored = await stored_checkpoints(audit_db)
    files, unreadable = load_checkpoint_dir(tmp_path, audit_db.schema)
    assert unreadable == [] and {c.tree_size for c in files} == {c.tree_size for c in stored}
    # after 4 new entries (where a batch ended) or when idle, whichever came first; the last
    # one after the restart's entry
    assert len(stored) >= 2 and stored[-1].tree_size == 7
    published = await bus.js.get_last_msg(bus.stream_for("operations"),
                                          bus.wire_subject("mts.v1.operations.audit.checkpoint"))
    assert json.loads(published.data)["tree_size"] == 7
    copies = await bus_checkpoints(bus, audit_db.schema)
    assert [c.tree_size for c in copies] == [c.tree_size for c in stored]
    (tmp_path / "keys.json").write_text(keys_json())
    cli = await asyncio.to_thread(
        CliRunner().invoke, app, ["audit", "verify", "--object-store", "--namespace",
                                  bus.namespace, "--keys", str(tmp_path / "keys.json"),
                                  "--schema", audit_db.schema],
        env={"MTS_DATABASE_URL": kit.DSN})
    assert cli.exit_code == 0 and cli.output.endswith("anchored up to 7\n"), cli.output
    keys = KeyRegistry([KEY.registered(["operations"])])
    report = await verify_entries(chain.entries(), checkpoints=files, keys=keys)
    assert report.ok and report.anchored == 7 and report.findings == []

    # A history rewritten with every hash recomputed passes link by link; not the checkpoint.
    await kit.tamper(audit_db, "DELETE FROM audit_entries WHERE seq >= 5")
    rewritten = await verify_entries(chain.entries(), checkpoints=files, keys=keys)
    assert not rewritten.ok
    found = [(f.kind, f.seq) for f in rewritten.findings]
    # (whether entries 0..4 are anchored depends on where the batches ended: a checkpoint of
    # size 5 may exist)
    assert found[0] == ("deleted", 5) and {kind for kind, _ in found} <= {"deleted",
                                                                           "unanchored"}
    forged_key = SigningKey.generate("ops-audit")
    forged = await verify_entries(chain.entries(), checkpoints=files,
                                  keys=KeyRegistry([forged_key.registered(["operations"])]))
    assert {f.kind for f in forged.findings} == {"checkpoint", "unanchored"}


async def test_a_skewed_producer_clock_raises_one_alert(
        audit_db: AuditDb, fresh_bus: Any, kit: Kit) -> None:
    bus = fresh_bus
    await bus.declare_streams()
    alerts: list[Alert] = []

    async def on_alert(msg: Any) -> None:
        alerts.append(parse_message(Alert, msg.data))

    await bus.nc.subscribe(bus.wire_subject("mts.v1.operations.alerts.raised"), cb=on_alert)
    task, stop = await start(options(bus, audit_db, kit, skew_threshold=1.0))
    late = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)).isoformat()
    for i in range(3):
        await publish(bus, "mts.v1.oms.orders.accepted",
                      {"order_id": f"ord-{i}", "ts": late, "actor": "oms-east"}, f"s-{i}")
    await publish(bus, "mts.v1.oms.orders.accepted",
                  {"order_id": "ord-ok", "ts": dt.datetime.now(dt.UTC).isoformat(),
                   "actor": "oms-west"}, "s-ok")
    await wait_size(audit_db, 4)
    deadline = asyncio.get_running_loop().time() + 10
    while not alerts:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    stop.set()
    recorder = await task
    assert recorder.stats.skew_alerts == 1 and len(alerts) == 1
    assert alerts[0].context["producer"] == "oms-east"
    assert float(alerts[0].context["skew_s"]) > 29
