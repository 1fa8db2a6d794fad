"""The shared queue's batching (pure logic; the scheduler itself is tested with real workers)."""

from __future__ import annotations

from evixd.engine.scheduler import MAX_BATCH, _flat, _Queue


def _size(batch: list) -> int:
    return sum(1 if names is None else len(names) for _, names in batch)


async def _drain(q: _Queue, slots: int) -> list[int]:
    """The sizes of the batches taken until the queue is done (each released at once)."""
    sizes = []
    while (batch := await q.take(slots=slots)) is not None:
        sizes.append(_size(batch))
        q.release()
    return sizes


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


async def test_a_long_queue_goes_in_full_batches():
    q = _Queue()
    q.put(("big",), [f"n{i}" for i in range(10_000)])
    sizes = await _drain(q, slots=4)
    assert sizes[:5] == [MAX_BATCH] * 5  # capped, and so many items per round trip
    assert sum(sizes) == 10_000


async def test_a_batch_is_a_share_of_the_queue_that_shrinks_as_it_drains():
    q = _Queue()
    q.put(("s",), [f"n{i}" for i in range(1000)])
    sizes = await _drain(q, slots=2)
    assert sizes[0] == 250  # 1000 items // (2 batches x 2 slots): every slot gets work twice over
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1 and sum(sizes) == 1000


async def test_small_chunks_are_merged_into_one_batch():
    q = _Queue()
    for i in range(20):
        q.put((f"s{i}",), ["a", "b", "c"])
    batch = await q.take(slots=1)
    assert [path for path, _ in batch] == [(f"s{i}",) for i in range(10)]  # 60 items // 2: 30
    assert _size(batch) == 30


async def test_small_queues_are_spread_over_slots():
    q = _Queue()
    q.put(("s",), ["a", "b", "c", "d"])
    batch = await q.take(slots=2)
    assert len(batch[0][1]) == 1  # 4 items // (2 * 2 slots): one each, so both slots get work
