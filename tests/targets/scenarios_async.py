"""Scenarios for Python 3.7+ (imported by scenarios.py): a coroutine blocked while it runs.

The event loop runs in the scenario thread; the innermost coroutine records its stack and blocks
the whole loop (time.sleep, not await) while it is running inside two awaiting coroutines.
"""
import asyncio
import sys
import time


async def coroutine_leaf(register):
    await asyncio.sleep(0)
    register(sys._getframe()); time.sleep(3600)


async def coroutine_middle(register):
    result = await coroutine_leaf(register)
    return result


def run_coroutine(register):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(coroutine_middle(register))
    finally:
        loop.close()


def scenarios(register):
    return [("coroutine", lambda: run_coroutine(register))]
