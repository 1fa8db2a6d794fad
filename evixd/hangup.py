"""Noticing that the other end of a socket or pipe is gone, while we only wait.

The daemon needs it for clients (one that closed its socket, or died, reads nothing more:
its requests must stop at once, not when a write to it finally fails; one that only shut
down its writing, like `socat`, still waits for its answers), and a local `evix eval` for
its stdout (`| head -1`: stop when the reader leaves, not at the next write). The kernel
tells: a Unix socket shows POLLHUP once the peer's end is closed for good, the write end of
a pipe POLLERR once its reader is gone. trio waits for readability, not for these, so a
private epoll set watches the one fd (epoll always reports EPOLLHUP and EPOLLERR) and trio
waits for that epoll fd to become readable.

Beside `evixd.engine`, like `worker_launch`: the CLI uses it without the daemon.
"""

from __future__ import annotations

import select

import trio

GONE = select.POLLHUP | select.POLLERR


def hung_up(fd: int) -> bool:
    """Whether the other end of `fd` is gone for good (not merely shut down for writing)."""
    poller = select.poll()
    poller.register(fd, 0)  # POLLHUP and POLLERR are always reported
    return any(events & GONE for _, events in poller.poll(0))


async def wait_hangup(fd: int) -> None:
    """Returns once the other end of `fd` (a socket or a pipe) is gone for good."""
    watcher = select.epoll()
    try:
        watcher.register(fd, 0)
        while not watcher.poll(0):
            await trio.lowlevel.wait_readable(watcher.fileno())
    finally:
        watcher.close()
