"""A process's own memory, as `--max-memory` counts it: the pages no other process shares.

A worker forked from the template shares the template's pages (the loaded input and, when
it warmed, a stdenv) until it writes to them. RSS counts those pages in every fork, so a
limit on RSS would recycle each fork of a big template at once, and the template's memory
would be counted once per worker. USS (Private_Clean + Private_Dirty of
/proc/PID/smaps_rollup) counts what the process allocated or copied: the memory its end
frees. The template is then counted once, by itself, and not against the limit.

Reading smaps_rollup walks the process's page tables: about 20-25 µs per MiB of RSS, so
several milliseconds for a worker, far too slow for every item. A gauge reads it only when
RSS cannot settle the question, and not often: USS <= RSS, so RSS under the limit is under.
Above it, USS is taken as the last reading plus the RSS growth since (new pages are
private), read again when that passes the limit (before anyone acts on it) or when the
reading is older than `period` (pages copied from the template do not grow RSS), the
period being at least `COST_FACTOR` times what one read took.
"""

from __future__ import annotations

import time
from collections.abc import Callable

COST_FACTOR = 50  # reads take at most ~2 % of the time


def read_uss(pid: int | str = "self") -> int:
    """USS of process `pid` in bytes (its private pages), from /proc/PID/smaps_rollup.

    Raises OSError when the process is gone (or the kernel has no smaps_rollup: Linux < 4.14)."""
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        text = f.read()
    uss = 0
    for line in text.splitlines():
        key, _, rest = line.partition(b":")
        if key in (b"Private_Clean", b"Private_Dirty"):
            uss += int(rest.split()[0])
    return uss << 10


class OwnMemory:
    """Tells cheaply whether a process's USS passes a limit, given its RSS (see above)."""

    def __init__(self, pid: int | str = "self", *, period: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pid = pid
        self.min_period = period
        self.clock = clock
        self.uss = 0  # at the last reading (bytes)
        self._rss = 0  # the caller's RSS figure when it was read
        self._read_at: float | None = None
        self._period = period

    def estimate(self, rss: int) -> int:
        """USS now, as far as the last reading and the RSS growth since tell (bytes)."""
        return self.uss + max(0, rss - self._rss)

    def exceeds(self, limit: int, rss: int) -> bool:
        """True when the process's own memory is over `limit` bytes; `rss` is its RSS now
        (or its peak RSS, if the caller always passes that: only its growth is used)."""
        if rss <= limit:
            return False
        now = self.clock()
        fresh = self._read_at is not None and now - self._read_at < self._period
        if fresh and self.estimate(rss) <= limit:
            return False
        self.read(rss, now)  # stale, or the estimate says over: confirm before acting
        return self.uss > limit

    def read(self, rss: int, now: float | None = None) -> None:
        """Reads USS now (into `uss`, bytes); `rss` is the caller's RSS figure at this moment."""
        started = time.perf_counter()
        self.uss = read_uss(self.pid)
        cost = time.perf_counter() - started
        self._rss = rss
        self._read_at = self.clock() if now is None else now
        self._period = max(self.min_period, COST_FACTOR * cost)
