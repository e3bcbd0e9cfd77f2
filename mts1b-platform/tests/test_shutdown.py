"""``run_announced``: the one line a ``serve`` command prints once its service is ready."""

from __future__ import annotations

import asyncio

import pytest
from mts1b_platform.shutdown import run_announced


async def test_the_announcement_comes_once_ready_and_the_result_after_the_end() -> None:
    seen: list[tuple[bool, bool]] = []
    ready, finish = asyncio.Event(), asyncio.Event()

    async def service() -> str:
        ready.set()
        await finish.wait()
        return "drained"

    task = asyncio.create_task(run_announced(service(), ready,
                                             lambda is_ready: seen.append((is_ready,
                                                                           finish.is_set()))))
    await asyncio.sleep(0.05)
    assert seen == [(True, False)]  # said while the service still runs
    finish.set()
    assert await task == "drained" and seen == [(True, False)]


async def test_a_service_that_fails_before_ready_is_announced_unready_and_raises() -> None:
    seen: list[bool] = []

    async def service() -> None:
        raise RuntimeError("cannot bind")

    with pytest.raises(RuntimeError, match="cannot bind"):
        await run_announced(service(), asyncio.Event(), seen.append)
    assert seen == [False]
