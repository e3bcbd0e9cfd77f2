"""GroupCommit batching, in isolation (no database): who goes together, who waits, who fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from mts1b_oms.groupcommit import GroupCommit


class Recorder:
    """A write function that records its batches and fails for items named "bad"."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        await self.gate.wait()
        if "bad" in items:
            raise ValueError("bad row")
        return [f"done:{item}" for item in items]


async def test_a_lone_write_goes_at_once() -> None:
    rec = Recorder()
    batcher: GroupCommit[str, str] = GroupCommit(rec.write)
    assert await batcher.run("a") == "done:a"
    assert rec.batches == [["a"]]


async def test_writes_arriving_during_a_statement_share_the_next_one() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher: GroupCommit[str, str] = GroupCommit(rec.write)
    first = asyncio.ensure_future(batcher.run("a"))
    await asyncio.sleep(0)  # "a" is now in flight, held at the gate
    rest = [asyncio.ensure_future(batcher.run(x)) for x in "bcd"]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == "done:a"
    assert await asyncio.gather(*rest) == ["done:b", "done:c", "done:d"]
    assert rec.batches == [["a"], ["b", "c", "d"]]
    assert (batcher.batches, batcher.items) == (2, 4)


async def test_items_sharing_a_key_go_in_separate_statements_and_max_batch_caps() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher: GroupCommit[str, str] = GroupCommit(rec.write, keys=lambda item: [item[0]],
                                                 max_batch=2)
    first = asyncio.ensure_future(batcher.run("x0"))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.run(x)) for x in ("a1", "a2", "b1", "c1")]
    await asyncio.sleep(0)
    rec.gate.set()
    await asyncio.gather(first, *rest)
    # "a2" shares key "a" with "a1"; "c1" does not fit in a batch of two
    assert rec.batches == [["x0"], ["a1", "b1"], ["a2", "c1"]]


async def test_a_failing_batch_is_retried_item_by_item() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher: GroupCommit[str, str] = GroupCommit(rec.write)
    first = asyncio.ensure_future(batcher.run("a"))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.run(x)) for x in ("b", "bad", "c")]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == "done:a"
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[0] == "done:b" and results[2] == "done:c"
    assert isinstance(results[1], ValueError)
    assert rec.batches == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]


async def test_a_caller_that_stops_waiting_does_not_stop_the_batch() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher: GroupCommit[str, str] = GroupCommit(rec.write)
    first = asyncio.ensure_future(batcher.run("a"))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.run("b"))
    third = asyncio.ensure_future(batcher.run("c"))
    await asyncio.sleep(0)
    second.cancel()
    rec.gate.set()
    assert await first == "done:a"
    assert await third == "done:c"
    assert rec.batches == [["a"], ["b", "c"]]  # "b" was written all the same


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
        GroupCommit(Recorder().write, max_batch=0)
