"""The shared queue's batching and leases (pure logic; the scheduler itself is tested with real workers)."""

from __future__ import annotations

import pytest

from evixd.engine.work_queue import MAX_BATCH, Pipeline, WorkQueue


async def test_batches_split_chunks_and_keep_every_item():
    q = WorkQueue()
    q.put((), None)
    first = await q.take(slots=2)
    assert first.chunks == [((), None)]
    names = [f"n{i}" for i in range(2000)]
    q.put(("set",), names)
    q.release(first)
    seen = []
    sizes = []
    while True:
        batch = await q.take(slots=2)
        if batch is None:
            break
        sizes.append(len(batch))
        seen += [name for _, name in batch.items()]
        q.release(batch)
    assert seen == names
    assert max(sizes) == MAX_BATCH and len(sizes) < len(names) // 2  # batched, never past the cap
    assert q.items == 0 and q.done()


async def test_small_queues_are_spread_over_slots():
    q = WorkQueue()
    q.put(("s",), ["a", "b", "c", "d"])
    batch = await q.take(slots=2)
    assert len(batch) == 1  # 4 items // (2 * 2 slots): one each, so both slots get work


async def test_a_pipeline_gives_each_lease_back_once():
    q = WorkQueue()
    q.put(("s",), [f"n{i}" for i in range(8)])
    pipeline = Pipeline(q)
    pipeline.add(q.take_nowait(slots=1))
    pipeline.add(q.take_nowait(slots=1))
    assert q.leased == 2 and not q.done()
    head = pipeline.head
    pipeline.finish()
    assert q.leased == 1 and pipeline.head is not head
    pipeline.clear()
    pipeline.clear()
    assert q.leased == 0
    with pytest.raises(AssertionError):
        q.release(head)
