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

    def baseline(self) -> int:
        """The process's own memory now (bytes), read from smaps_rollup; raises Gone."""
        return self._memory.read(self._ps.memory_info().rss)

    def over(self, limit_mb: int, base: int = 0) -> str | None:
        """How far the process's own memory is past `base` + `limit_mb` MiB (a phrase for the
        kill's reason), None while it is not; raises Gone."""
        if not self._memory.exceeds(base + (limit_mb << 20), self._ps.memory_info().rss):
            return None
        own = self._memory.uss
        return f"grew by {(own - base) >> 20} MiB" if base else f"own memory {own >> 20} MiB"
