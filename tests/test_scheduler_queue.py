"""The shared queue's batching (pure logic; the scheduler itself is tested with real workers)."""

from __future__ import annotations

from evixd.engine.scheduler import MAX_BATCH, _flat, _Queue


async def test_batches_split_chunks_and_keep_every_item():
    q = _Queue()
    q.put((), None)
    first = await q.take(slots=2)
    assert first == [((), None)]
    names = [f"n{i}" for i in range(1000)]
    q.put(("set",), names)
    q.release()
    seen = []
    while True:
        batch = await q.take(slots=2)
        if batch is None:
            break
        assert 1 <= sum(len(n) for _, n in batch) <= MAX_BATCH
        seen += [name for _, name in _flat(batch)]
        q.release()
    assert seen == names
    assert q.items == 0 and q.done()


async def test_small_queues_are_spread_over_slots():
    q = _Queue()
    q.put(("s",), ["a", "b", "c", "d"])
    batch = await q.take(slots=2)
    assert len(batch[0][1]) == 1  # 4 items // (2 * 2 slots): one each, so both slots get work
