"""asyncio target for `bench.py --measure async` (3.7+): one event loop with 300 pending
tasks (100 chains of three coroutines each awaiting the next, 20 gathers of 5, 100 tasks
awaiting other tasks) and one task spinning on the CPU forever, so every sample finds a running
task whose logical stack `--async` builds."""
import asyncio


async def leaf():
    await asyncio.sleep(3600)


async def middle():
    await leaf()


async def chain():
    await middle()


async def gatherer():
    await asyncio.gather(*(leaf() for _ in range(5)))


async def awaiting(task):
    await task


def spin(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


async def busy():
    while True:
        spin(10000)


async def main():
    loop = asyncio.get_event_loop()
    keep = [loop.create_task(chain()) for _ in range(100)]
    keep += [loop.create_task(gatherer()) for _ in range(20)]
    inner = [loop.create_task(leaf()) for _ in range(100)]
    keep += inner + [loop.create_task(awaiting(t)) for t in inner]
    await asyncio.sleep(0.1)
    await loop.create_task(busy())


asyncio.new_event_loop().run_until_complete(main())
