"""Bulkhead: a concurrency limit, a bounded queue, priority lanes, shedding and deadlines.

Run: python examples/bulkhead.py [asyncio|trio]
"""

from __future__ import annotations

import sys

import anyio

import asyncres


async def query(label: str) -> str:
    """A call to a dependency."""
    await anyio.sleep(0.01)
    return label


# At most 2 calls at once, 2 more waiting (each at most 1 s); beyond that, fail fast.
db = asyncres.Bulkhead(max_concurrent=2, max_queued=2, queue_timeout=1.0, name="db")

# Priority lanes share the bulkhead's permits: higher is served first and shed last.
checkout = db.lane(1)
reports = db.lane(-1)


@checkout
async def place_order(order_id: int) -> str:
    return await query(f"order {order_id}")


async def main() -> None:
    # 1. The faces: call(), the decorator, and a block.
    print(await db.call(query, "users"))
    print(await place_order(42))
    async with db.acquire(priority=1):
        print(await query("block"))

    # 2. Overload. The dependency stalls until `recovered` is set.
    recovered = anyio.Event()

    async def stalled(label: str) -> str:
        await recovered.wait()
        return label

    async def guarded(lane: asyncres.BulkheadLane, label: str) -> None:
        try:
            print("served:", await lane.call(stalled, label))
        except asyncres.BulkheadFullError as exc:
            print(f"{label}: rejected ({exc.reason})")

    async with anyio.create_task_group() as tg:
        # 2 reports run and 2 wait: the queue is full.
        for label in ["report 1", "report 2", "report 3", "report 4"]:
            tg.start_soon(guarded, reports, label)
            await anyio.wait_all_tasks_blocked()  # (orders the arrivals for this demo)
        # A checkout outranks the queued reports: the newest report is shed for it...
        tg.start_soon(guarded, checkout, "checkout")
        await anyio.wait_all_tasks_blocked()
        # ...while another report, outranking nobody, is rejected at once.
        await guarded(reports, "report 5")
        print("queued per priority:", db.statistics().queued_by_priority)
        recovered.set()

    # 3. The caller's deadline bounds the wait: a queued call leaves with its caller.
    async with db, db:  # both permits busy
        try:
            with asyncres.timeout(0.1):
                await db.call(query, "late")
        except asyncres.TimeoutExceededError:
            print("gave up waiting after 0.1 s")

    print(db.statistics())


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
