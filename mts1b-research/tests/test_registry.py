"""The strategy registry on a real PostgreSQL schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal

import asyncpg
import pytest
from mts1b_foundation import StrategySpec, StrategyState
from mts1b_research.db import ResearchDb
from mts1b_research.errors import ResearchInputError, TransitionRefused
from mts1b_research.promotion import MinimumEvidence, PromotionEvidence
from mts1b_research.registry import StrategyRegistry, TransitionRecord, database_url
from mts1b_research.strategies import StrategyRegistry as ReExported

pytestmark = pytest.mark.integration
S = StrategyState
ENOUGH = PromotionEvidence(sessions=30, mean_ic=0.04, t_stat=2.5)
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class Recorder:
    """A publisher that keeps what it was handed."""

    def __init__(self) -> None:
        self.seen: list[TransitionRecord] = []

    async def transition(self, record: TransitionRecord) -> None:
        self.seen.append(record)


def spec(**changes: object) -> StrategySpec:
    base: dict[str, object] = {"name": "mom", "factor": "f_momentum_12_1",
                               "params": {"h_long": 252, "h_skip": 21},
                               "universe": "us-large-cap"}
    return StrategySpec.model_validate(base | changes)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def reg(db: ResearchDb, recorder: Recorder) -> StrategyRegistry:
    return StrategyRegistry(db, rule=MinimumEvidence(20, min_ic=0.02), publisher=recorder)


async def to_live(reg: StrategyRegistry) -> None:
    await reg.shadow("mom", actor="ann", reason="watch it")
    await reg.promote("mom", S.PAPER, actor="ann", reason="good IC", evidence=ENOUGH)
    await reg.promote("mom", S.LIVE, actor="rita", reason="approved", evidence=ENOUGH,
                      roles=["risk"])


async def test_the_faq_example_momentum_v3(reg: StrategyRegistry) -> None:
    momentum_v3 = StrategySpec(
        name="momentum_v3", factor="f_momentum_12_1", params={"h_long": 252, "h_skip": 21},
        universe="us-large-cap", sizing={"method": "kelly_voltarget_12"}, rebalance="daily",
        fund_id="core", capital_usd=Decimal(250_000))
    record = await reg.register(momentum_v3, actor="ann", reason="from the backtrader port")
    assert (record.name, record.version, record.state) == ("momentum_v3", 1, S.DRAFT)
    assert [r.name for r in await reg.list()] == ["momentum_v3"]
    await reg.shadow("momentum_v3", actor="ann", reason="first look")
    await reg.disable("momentum_v3", actor="ann", reason="pause")
    await reg.enable("momentum_v3", actor="ann", reason="resume")
    shown = await reg.show("momentum_v3")
    assert shown.state is S.SHADOW
    assert shown.spec.sizing == {"method": "kelly_voltarget_12"}
    assert shown.spec.capital_usd == Decimal(250_000) and shown.spec.fund_id == "core"
    assert ReExported is StrategyRegistry


async def test_versions_and_the_noop(reg: StrategyRegistry) -> None:
    first = await reg.register(spec(), actor="ann")
    again = await reg.register(spec(version=7, state="live"), actor="bob", reason="same")
    assert again == first  # registry owns version and state: nothing changed
    await reg.shadow("mom", actor="ann", reason="watch")
    changed = await reg.register(spec(params={"h_long": 126, "h_skip": 21}), actor="bob",
                                 reason="shorter lookback")
    assert (changed.version, changed.state) == (2, S.DRAFT)
    assert changed.spec.params["h_long"] == 126
    versions = await reg.versions("mom")
    assert [(v.spec.version, v.registered_by, v.reason) for v in versions] == [
        (1, "ann", None), (2, "bob", "shorter lookback")]
    assert versions[0].spec.params["h_long"] == 252
    history = await reg.history("mom")
    assert [(h.from_state, h.to_state, h.version) for h in history] == [
        (S.DRAFT, S.SHADOW, 1), (S.SHADOW, S.DRAFT, 2)]
    assert history[-1].reason == "version 2 registered: shorter lookback"


async def test_every_transition_recorded_and_published(reg: StrategyRegistry,
                                                       recorder: Recorder) -> None:
    await reg.register(spec(), actor="ann")
    when = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
    await reg.shadow("mom", actor="ann", reason="watch it", now=when)
    await reg.promote("mom", S.PAPER, actor="ann", reason="good IC", evidence=ENOUGH)
    await reg.promote("mom", S.LIVE, actor="rita", reason="approved", evidence=ENOUGH,
                      roles=["risk", "operations"])
    await reg.disable("mom", actor="ops", reason="data outage")
    assert (await reg.show("mom")).state_before_disable is S.LIVE
    await reg.enable("mom", actor="rita", reason="data back", roles=["risk"])
    await reg.retire("mom", actor="ann", reason="decayed")
    history = await reg.history("mom")
    assert [(h.from_state.value, h.to_state.value, h.actor) for h in history] == [
        ("draft", "shadow", "ann"), ("shadow", "paper", "ann"), ("paper", "live", "rita"),
        ("live", "disabled", "ops"), ("disabled", "live", "rita"), ("live", "retired", "ann")]
    assert history[0].ts == when and history[0].reason == "watch it"
    assert history[2].roles == ("operations", "risk")
    assert history[1].verdict is not None and history[1].verdict.ok
    assert history[1].evidence == ENOUGH
    assert history[3].verdict is None and history[3].evidence is None
    assert recorder.seen == history
    assert (await reg.show("mom")).state is S.RETIRED
    with pytest.raises(TransitionRefused, match="retired"):
        await reg.register(spec(params={"h_long": 1}), actor="ann")


async def test_enable_restores_the_state_before(reg: StrategyRegistry) -> None:
    await reg.register(spec(), actor="ann")
    await reg.shadow("mom", actor="ann", reason="r")
    await reg.promote("mom", S.PAPER, actor="ann", reason="r", evidence=ENOUGH)
    await reg.disable("mom", actor="ann", reason="r")
    back = await reg.enable("mom", actor="ann", reason="r")
    assert back.to_state is S.PAPER
    record = await reg.show("mom")
    assert record.state is S.PAPER and record.state_before_disable is None
    with pytest.raises(TransitionRefused, match="not disabled"):
        await reg.enable("mom", actor="ann", reason="r")


async def test_live_needs_the_risk_role_whatever_the_rule(reg: StrategyRegistry,
                                                          recorder: Recorder) -> None:
    await reg.register(spec(), actor="ann")
    await reg.shadow("mom", actor="ann", reason="r")
    await reg.promote("mom", S.PAPER, actor="ann", reason="r", evidence=ENOUGH)
    with pytest.raises(TransitionRefused) as refused:
        await reg.promote("mom", S.LIVE, actor="ann", reason="r", evidence=ENOUGH,
                          roles=["operations"])
    assert "'risk' role" in refused.value.message
    assert refused.value.context["to_state"] == "live"
    await reg.promote("mom", S.LIVE, actor="rita", reason="r", evidence=ENOUGH, roles=["risk"])
    await reg.disable("mom", actor="ops", reason="r")
    with pytest.raises(TransitionRefused, match="'risk' role"):
        await reg.enable("mom", actor="ops", reason="r")
    assert (await reg.show("mom")).state is S.DISABLED
    assert [h.to_state for h in await reg.history("mom")][-1] is S.DISABLED
    assert len(recorder.seen) == 4


async def test_the_rule_refuses_with_its_reasons_and_writes_nothing(
        reg: StrategyRegistry) -> None:
    await reg.register(spec(), actor="ann")
    await reg.shadow("mom", actor="ann", reason="r")
    with pytest.raises(TransitionRefused) as refused:
        await reg.promote("mom", S.PAPER, actor="ann", reason="r",
                          evidence=PromotionEvidence(sessions=4, mean_ic=0.01))
    assert refused.value.context["reasons"] == ["sessions 4 is fewer than 20",
                                                "mean IC 0.01 is below the floor 0.02"]
    with pytest.raises(TransitionRefused, match="needs evidence"):
        await reg.promote("mom", S.PAPER, actor="ann", reason="r")
    with pytest.raises(TransitionRefused) as both:
        await reg.promote("mom", S.LIVE, actor="ann", reason="r", evidence=ENOUGH)
    assert both.value.context["from_state"] == "shadow"
    assert (await reg.show("mom")).state is S.SHADOW
    assert len(await reg.history("mom")) == 1


async def test_paper_to_live_needs_the_rule_even_with_risk(reg: StrategyRegistry) -> None:
    await reg.register(spec(), actor="ann")
    await reg.shadow("mom", actor="ann", reason="r")
    await reg.promote("mom", S.PAPER, actor="ann", reason="r", evidence=ENOUGH)
    with pytest.raises(TransitionRefused) as refused:
        await reg.promote("mom", S.LIVE, actor="rita", reason="r", roles=["risk"],
                          evidence=PromotionEvidence(sessions=2, mean_ic=0.05))
    assert refused.value.context["reasons"] == ["sessions 2 is fewer than 20"]


async def test_two_disables_at_once_make_one_transition(reg: StrategyRegistry,
                                                       db: ResearchDb) -> None:
    await reg.register(spec(), actor="ann")
    await reg.shadow("mom", actor="ann", reason="r")
    # Hold the row so both disables have started (and read, were they not locking) before
    # either can write: without the lock both would read "shadow" and both would write.
    async with db.pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM strategies WHERE name = 'mom' FOR UPDATE")
        racing = [asyncio.ensure_future(reg.disable("mom", actor=f"op{i}", reason="stop"))
                  for i in range(2)]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in racing)
    outcomes = await asyncio.gather(*racing, return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["TransitionRecord",
                                                          "TransitionRefused"]
    history = await reg.history("mom")
    assert [h.to_state for h in history] == [S.SHADOW, S.DISABLED]


async def test_two_registrations_of_a_new_name_at_once(reg: StrategyRegistry) -> None:
    records = await asyncio.gather(reg.register(spec(), actor="a"),
                                   reg.register(spec(), actor="b"))
    assert {r.version for r in records} == {1}
    assert len(await reg.versions("mom")) == 1


async def test_bad_input_names_its_field(reg: StrategyRegistry) -> None:
    await reg.register(spec(), actor="ann")
    cases = [
        ("name", reg.show("nope")),
        ("name", reg.disable("nope", actor="ann", reason="r")),
        ("actor", reg.disable("mom", actor="has space", reason="r")),
        ("reason", reg.disable("mom", actor="ann", reason=" ")),
        ("roles", reg.disable("mom", actor="ann", reason="r", roles="risk")),
        ("to", reg.promote("mom", S.SHADOW, actor="ann", reason="r")),
        ("name", reg.history("nope")),
    ]
    for field, call in cases:
        with pytest.raises(ResearchInputError) as bad:
            await call
        assert bad.value.context["field"] == field


async def test_history_cannot_be_rewritten(reg: StrategyRegistry, db: ResearchDb) -> None:
    await reg.register(spec(), actor="ann")
    await reg.shadow("mom", actor="ann", reason="r")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.pool.execute("UPDATE strategy_transitions SET actor = 'mallory'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.pool.execute("DELETE FROM strategy_versions")


async def test_open_uses_the_configured_database(db: ResearchDb,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert await database_url("postgresql://x@h/db") == "postgresql://x@h/db"
    monkeypatch.setenv("MTS_DATABASE_URL", DSN)
    assert await database_url() == DSN
    async with await StrategyRegistry.open(schema=db.schema) as reg:
        await reg.register(spec(), actor="ann")
    assert [r.name for r in await StrategyRegistry(db).list()] == ["mom"]


async def test_open_without_configuration_asks_the_dev_services(
        db: ResearchDb, monkeypatch: pytest.MonkeyPatch) -> None:
    import mts1b_platform.devservices as devservices

    asked: list[dict[str, bool]] = []
    url = DSN

    def ensure_up(**kwargs: bool) -> list[devservices.ServiceStatus]:
        asked.append(kwargs)
        return [devservices.ServiceStatus("postgres", url, "started", True)]

    monkeypatch.delenv("MTS_DATABASE_URL", raising=False)
    monkeypatch.setattr(devservices, "ensure_up", ensure_up)
    assert await database_url() == url
    assert asked == [{"nats": False, "postgres": True}]


async def test_a_failed_publish_does_not_undo_the_commit(db: ResearchDb) -> None:
    from mts1b_foundation import MtsError

    class Down:
        async def transition(self, record: TransitionRecord) -> None:
            raise MtsError("bus down")

    reg = StrategyRegistry(db, publisher=Down())
    await reg.register(spec(), actor="ann")
    record = await reg.shadow("mom", actor="ann", reason="r")
    assert await reg.history("mom") == [record]
    assert not await reg._published(record)


async def test_promote_to_an_unknown_state_names_the_field(reg: StrategyRegistry) -> None:
    await reg.register(spec(), actor="ann")
    with pytest.raises(ResearchInputError) as bad:
        await reg.promote("mom", "production", actor="ann", reason="r")  # type: ignore[arg-type]
    assert bad.value.context["field"] == "to"


def _sync_session(schema: str) -> list[str]:
    with StrategyRegistry.connect_sync(DSN, schema=schema) as reg:
        reg.register(spec(), actor="ann")
        reg.shadow("mom", actor="ann", reason="r")
        reg.promote("mom", S.PAPER, actor="ann", reason="r", evidence=ENOUGH)
        with pytest.raises(TransitionRefused):
            reg.promote("mom", S.LIVE, actor="ann", reason="r", evidence=ENOUGH)
        assert reg.show("mom").state is S.PAPER
        assert [v.spec.version for v in reg.versions("mom")] == [1]
        return [h.to_state.value for h in reg.history("mom")]


def test_the_blocking_registry_for_scripts(db_schema: str) -> None:
    assert _sync_session(db_schema) == ["shadow", "paper"]


async def test_the_blocking_registry_inside_a_running_loop(db: ResearchDb) -> None:
    """A notebook cell runs inside the kernel's loop: the facade's own loop still serves."""
    assert _sync_session(db.schema) == ["shadow", "paper"]
    assert [r.state for r in await StrategyRegistry(db).list()] == [S.PAPER]


@pytest.fixture
def db_schema() -> Iterator[str]:
    import uuid

    name = f"rs_s_{uuid.uuid4().hex[:12]}"
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())
