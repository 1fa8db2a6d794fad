"""--max-memory for one worker process, as the master's watchdog sees it: the worker's own
memory (USS, protocol/own_memory.py), not its RSS, so that a fork is not charged for the
pages it shares with its template.

RSS (cheap: /proc/PID/statm) is read every time; smaps_rollup at most every USS_PERIOD,
or sooner when RSS growth says the limit may be passed (a kill is always confirmed by a
fresh reading).
"""

from __future__ import annotations

import psutil

from protocol.own_memory import OwnMemory

USS_PERIOD = 1.0  # seconds between smaps_rollup readings, at most, when RSS cannot settle it

Gone = (psutil.Error, OSError)
"""What reading a process that has ended raises."""


class MemoryWatch:
    def __init__(self, pid: int) -> None:
        self._ps = psutil.Process(pid)
        self._memory = OwnMemory(pid, period=USS_PERIOD)

    def rss(self) -> int:
        """RSS now (bytes); raises Gone."""
        return int(self._ps.memory_info().rss)

    def over(self, limit: int) -> str | None:
        """How far the process's own memory is past `limit` bytes (a phrase for the kill's
        reason), None while it is not; raises Gone."""
        if not self._memory.exceeds(limit, self.rss()):
            return None
        return f"own memory {self._memory.uss >> 20} MiB"

    def grown_over(self, base_rss: int, limit: int) -> str | None:
        """For a template: how far its RSS grew past `base_rss` + `limit`, None while it did
        not; raises Gone. Its own memory would not do: the pages it shares with a fork become
        its own when that fork ends, a growth it did not allocate."""
        grown = self.rss() - base_rss
        return f"grew by {grown >> 20} MiB" if grown > limit else None
