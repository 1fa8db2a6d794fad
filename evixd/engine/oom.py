"""How many processes the kernel's OOM killer has killed in our memory cgroup.

A worker killed by SIGKILL that we did not send died for memory if this count grew while it
ran; otherwise someone killed it (and its item is not retried as a memory casualty). Works
with cgroup v2 (`memory.events`) and v1 (`memory.oom_control`); None where neither is
readable, and then a foreign SIGKILL is taken as not memory.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


@functools.cache  # our cgroup does not change: /proc/self/cgroup is read once
def _candidates() -> tuple[Path, ...]:
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            rel = path.lstrip("/")
            if controllers == "":
                found.append(_CGROUP_ROOT / rel / "memory.events")
            elif "memory" in controllers.split(","):
                found.append(_CGROUP_ROOT / "memory" / rel / "memory.oom_control")
    found += [_CGROUP_ROOT / "memory.events", _CGROUP_ROOT / "memory" / "memory.oom_control"]
    return tuple(found)


def oom_kills() -> int | None:
    """The cgroup's oom_kill counter, or None when no cgroup file says it."""
    for path in _candidates():
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return None
