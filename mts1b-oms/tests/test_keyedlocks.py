"""KeyedLocks: one holder per key, keys independent, nothing kept once a key is free."""

from __future__ import annotations

import asyncio

import pytest
from mts1b_oms.keyedlocks import KeyedLocks


async def test_one_holder_per_key_in_arrival_order() -> None:
    locks = KeyedLocks()
    inside: list[int] = []
    log: list[tuple[str, int]] = []

    async def work(i: int) -> None:
        async with locks.hold("k"):
            inside.append(i)
            assert len(inside) == 1, "two holders of one key at once"
            log.append(("in", i))
            await asyncio.sleep(0)
            log.append(("out", i))
            inside.remove(i)

    await asyncio.gather(*(work(i) for i in range(5)))
    assert log == [(step, i) for i in range(5) for step in ("in", "out")]
    assert len(locks) == 0


async def test_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLocks()
    b_done = asyncio.Event()

    async def holds_a() -> None:
        async with locks.hold("a"):
            await asyncio.wait_for(b_done.wait(), 1)  # would time out if "b" waited for "a"

    async def holds_b() -> None:
        async with locks.hold("b"):
            b_done.set()

    await asyncio.gather(holds_a(), holds_b())
    assert len(locks) == 0


async def test_a_key_is_forgotten_when_its_last_user_leaves() -> None:
    locks = KeyedLocks()
    async with locks.hold(("f1", "s1", "AAPL")):
        assert len(locks) == 1
    assert len(locks) == 0
    with pytest.raises(RuntimeError, match="boom"):
        async with locks.hold("x"):
            raise RuntimeError("boom")
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("k"):
            pytest.fail("the cancelled waiter must not get the lock")

    first = asyncio.get_running_loop().create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.get_running_loop().create_task(waiter())
    await asyncio.sleep(0)
    assert len(locks) == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    assert len(locks) == 0
    async with locks.hold("k"):  # still usable afterwards
        pass
