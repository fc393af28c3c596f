"""The hang watchdog shows where each pending asyncio task waits."""

from __future__ import annotations

import asyncio

from tests.hang_watchdog import task_stacks


def test_the_watchdog_shows_the_await_a_pending_task_waits_in() -> None:
    loop = asyncio.new_event_loop()
    try:
        never = asyncio.Event()

        async def waits_for_an_event_that_never_comes() -> None:
            await never.wait()

        task = loop.create_task(waits_for_an_event_that_never_comes())
        loop.run_until_complete(asyncio.sleep(0.01))
        stacks = task_stacks()
        assert "pending tasks" in stacks
        assert "waits_for_an_event_that_never_comes" in stacks
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()
