"""The paper broker passes the conformance kit in-process."""

from __future__ import annotations

import pytest
from mts1b_brokers.conformance import (
    CHECKS,
    BrokerHarness,
    ConformanceFailure,
    paper_harness,
    run_check,
    run_conformance,
)


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_paper_passes(check: str) -> None:
    await run_check(check, paper_harness())


async def test_kit_catches_a_broker_that_forgets_duplicates() -> None:
    base = paper_harness()

    async def broken() -> BrokerHarness:
        h = await base()
        real_submit = h.broker.submit
        counter = iter(range(1000))

        async def submit(order):  # type: ignore[no-untyped-def]
            return await real_submit(order.model_copy(
                update={"order_id": f"{order.order_id}-{next(counter)}"}))

        h.broker.submit = submit  # type: ignore[method-assign]
        return h

    results = await run_conformance(broken, ["duplicate_submission"])
    assert results["duplicate_submission"] is not None
    with pytest.raises(KeyError):
        await run_check("nope", base)
    assert issubclass(ConformanceFailure, AssertionError)
