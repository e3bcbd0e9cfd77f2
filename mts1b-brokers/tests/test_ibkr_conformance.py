"""The IBKR adapter passes the whole conformance kit, fault checks included, against FakeTws
(in process, over a real TCP socket, through ib_async 2.1.0)."""

from __future__ import annotations

import pytest
from mts1b_brokers.conformance import (
    CHECKS,
    BrokerHarness,
    ibkr_harness,
    run_check,
    run_conformance,
)


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_ibkr_passes(check: str) -> None:
    await run_check(check, ibkr_harness())


async def test_the_fault_checks_catch_a_broker_that_gets_them_wrong(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Controls: the same checks fail for an adapter that re-sends an unknown outcome, counts
    a duplicate execution again, or never resynchronises."""
    from mts1b_brokers.ibkr import broker as broker_module
    from mts1b_brokers.ibkr import ledger

    async def never_there(self: object, tracked: object) -> bool:
        return True

    async def no_resync(self: object) -> None:
        return None

    def count_everything(self: ledger.Tracked, execution: ledger.Execution) -> str:
        self.fills[execution.exec_id] = execution
        return "new"

    base = ibkr_harness()

    async def quick() -> BrokerHarness:  # a failing check gives up after 1 s, not 5
        h = await base()
        h.timeout = 1.0
        return h

    with monkeypatch.context() as m:
        m.setattr(broker_module.IbkrBroker, "_absent", never_there)
        failed = await run_conformance(quick, ["ambiguous_submit"])
        assert "a lost answer must never make two" in (failed["ambiguous_submit"] or "")
    with monkeypatch.context() as m:
        m.setattr(ledger.Tracked, "add", count_everything)
        failed = await run_conformance(quick, ["duplicate_and_corrected_execution"])
        assert failed["duplicate_and_corrected_execution"] is not None
    with monkeypatch.context() as m:
        m.setattr(broker_module.IbkrBroker, "_reconcile", no_resync)
        failed = await run_conformance(quick, ["reconnect_resync"])
        assert failed["reconnect_resync"] is not None
