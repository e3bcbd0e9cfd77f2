"""The fund registry on a real PostgreSQL: versions, the risk role for loosening, allocations,
closing, and what it hands its publisher."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import Allocation, FundConfig, RiskEnvelope
from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.funds import FundRecord, FundRegistry, LimitsNeedRiskRole

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)


def fund(fund_id: str = "f1", nav: int = 1_000_000, strategies: tuple[str, ...] = ("mom",),
         **risk: Any) -> FundConfig:
    return FundConfig(fund_id=fund_id, name="Fund", target_nav_usd=Decimal(nav),
                      broker="paper", broker_account_id="a1", strategies=list(strategies),
                      risk=RiskEnvelope(**risk))


class Recorder:
    def __init__(self) -> None:
        self.funds: list[FundRecord] = []
        self.allocations: list[Allocation] = []

    async def fund_changed(self, record: FundRecord) -> None:
        self.funds.append(record)

    async def allocated(self, allocation: Allocation) -> None:
        self.allocations.append(allocation)


async def test_create_get_and_a_second_create_is_refused(db: TreasuryDb) -> None:
    seen = Recorder()
    reg = FundRegistry(db, seen)
    record = await reg.create(fund(), actor="ops", now=T0)
    assert (record.version, record.status, record.updated_by) == (1, "open", "ops")
    assert await reg.get("f1") == record
    with pytest.raises(TreasuryInputError, match="fund_id: a fund with this id exists"):
        await reg.create(fund(), actor="ops")
    assert [r.version for r in seen.funds] == [1]
    assert await reg.get("nope") is None
    with pytest.raises(TreasuryInputError, match="'nope'"):
        await reg.require("nope")


async def test_loosening_needs_the_risk_role_and_nothing_is_written_without_it(
        db: TreasuryDb) -> None:
    reg = FundRegistry(db)
    await reg.create(fund(max_order_quantity=Decimal(100)), actor="ops", now=T0)
    with pytest.raises(LimitsNeedRiskRole, match="loosens max_order_quantity"):
        await reg.configure(fund(max_order_quantity=Decimal(500)), actor="ops",
                            roles={"operations"})
    assert (await reg.require("f1")).config.risk.max_order_quantity == Decimal(100)
    assert len(await reg.history("f1")) == 1
    tighter = await reg.configure(fund(max_order_quantity=Decimal(50)), actor="ops",
                                  reason="tighter")
    assert tighter.version == 2
    looser = await reg.configure(fund(max_order_quantity=Decimal(500)), actor="cro",
                                 roles={"risk"}, reason="approved")
    assert looser.version == 3
    history = await reg.history("f1")
    assert [(h["version"], h["changed_by"], h["reason"], h["loosened"]) for h in history] == [
        (1, "ops", None, []), (2, "ops", "tighter", []),
        (3, "cro", "approved", ["max_order_quantity"])]
    same = await reg.configure(fund(max_order_quantity=Decimal(500)), actor="ops")
    assert same.version == 3  # nothing changed, no new version


async def test_allocations_stay_within_the_funds_capital(db: TreasuryDb) -> None:
    seen = Recorder()
    reg = FundRegistry(db, seen)
    await reg.create(fund(strategies=("mom", "val")), actor="ops", now=T0)
    await reg.allocate(Allocation(fund_id="f1", as_of=T0, amount_usd=Decimal(600_000)),
                       actor="ops")
    await reg.allocate(Allocation(fund_id="f1", strategy_id="mom", as_of=T0,
                                  amount_usd=Decimal(400_000)), actor="ops")
    with pytest.raises(TreasuryInputError, match=r"amount_usd: .* total 600000.01, more than "
                                                 r"the fund's capital 600000"):
        await reg.allocate(Allocation(fund_id="f1", strategy_id="val", as_of=T0,
                                      amount_usd=Decimal("200000.01")), actor="ops")
    with pytest.raises(TreasuryInputError, match="strategy_id: fund f1 lists strategies"):
        await reg.allocate(Allocation(fund_id="f1", strategy_id="carry", as_of=T0,
                                      amount_usd=Decimal(1)), actor="ops")
    await reg.allocate(Allocation(fund_id="f1", strategy_id="val", as_of=T0,
                                  amount_usd=Decimal(200_000)), actor="ops")
    current = {a.strategy_id: a.amount_usd for a in await reg.allocations("f1")}
    assert current == {None: Decimal(600_000), "mom": Decimal(400_000),
                       "val": Decimal(200_000)}
    assert len(seen.allocations) == 3


async def test_a_closed_fund_is_listed_only_on_request_and_cannot_change(
        db: TreasuryDb) -> None:
    reg = FundRegistry(db)
    await reg.create(fund("f1"), actor="ops", now=T0)
    await reg.create(fund("f2"), actor="ops", now=T0)
    closed = await reg.close("f2", actor="ops", reason="wound down")
    assert (closed.status, closed.version) == ("closed", 2)
    assert [r.fund_id for r in await reg.funds()] == ["f1"]
    assert [r.fund_id for r in await reg.funds(include_closed=True)] == ["f1", "f2"]
    with pytest.raises(TreasuryInputError, match="fund_id: the fund is closed"):
        await reg.configure(fund("f2"), actor="ops")
    with pytest.raises(TreasuryInputError, match="the fund is closed"):
        await reg.allocate(Allocation(fund_id="f2", as_of=T0, amount_usd=Decimal(1)),
                           actor="ops")


async def test_import_creates_then_configures_and_publish_all_repeats_every_fund(
        db: TreasuryDb) -> None:
    seen = Recorder()
    reg = FundRegistry(db, seen)
    await reg.import_funds([fund("f1"), fund("f2")], actor="ops")
    await reg.import_funds([fund("f1", max_order_quantity=Decimal(10))], actor="ops")
    assert (await reg.require("f1")).version == 2
    seen.funds.clear()
    assert await reg.publish_all() == 2
    assert sorted(r.fund_id for r in seen.funds) == ["f1", "f2"]
