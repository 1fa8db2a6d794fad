"""The shared queue's batching and leases (pure logic; the scheduler itself is tested with real workers)."""

from __future__ import annotations

import pytest

from evixd.engine.work_queue import MAX_BATCH, Pipeline, WorkQueue


async def _drain(q: WorkQueue, slots: int) -> list[int]:
    """The sizes of the batches taken until the queue is done (each released at once)."""
    sizes = []
    while (batch := await q.take(slots=slots)) is not None:
        sizes.append(len(batch))
        q.release(batch)
    return sizes


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


async def test_a_long_queue_goes_in_full_batches():
    q = WorkQueue()
    q.put(("big",), [f"n{i}" for i in range(10_000)])
    sizes = await _drain(q, slots=4)
    assert sizes[:5] == [MAX_BATCH] * 5  # capped, and so many items per round trip
    assert sum(sizes) == 10_000


async def test_a_batch_is_a_share_of_the_queue_that_shrinks_as_it_drains():
    q = WorkQueue()
    q.put(("s",), [f"n{i}" for i in range(1000)])
    sizes = await _drain(q, slots=2)
    assert sizes[0] == 250  # 1000 items // (2 batches x 2 slots): every slot gets work twice over
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1 and sum(sizes) == 1000


async def test_small_chunks_are_merged_into_one_batch():
    q = WorkQueue()
    for i in range(20):
        q.put((f"s{i}",), ["a", "b", "c"])
    batch = await q.take(slots=1)
    assert [path for path, _ in batch.chunks] == [(f"s{i}",) for i in range(10)]  # 60 items // 2: 30
    assert len(batch) == 30


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
