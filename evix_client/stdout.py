"""Writing the events to stdout, where a failed write is the end of the run, never a traceback.

A reader that goes away (`evix eval … | head -1`) ends the run quietly with 141, what a
shell reports for a process killed by SIGPIPE: the run did not complete, so not 0. It is
noticed when it happens, not at the next write (which may be a long batch away): a local
run waits for the pipe's hang-up in a task (evixd.hangup), a run through the daemon in
`ReaderWatch`'s thread. Any other write error (`> /dev/full`, an I/O error) is one line on
stderr and exit 1. Either way stdout is then pointed at /dev/null, so the interpreter's
last flush cannot fail again.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

EXIT_PIPE_CLOSED = 128 + 13  # 128 + SIGPIPE
EXIT_WRITE_FAILED = 1


class StdoutError(Exception):
    """stdout cannot take more output; `exit_code` says how the CLI ends."""

    exit_code = EXIT_WRITE_FAILED


class StdoutClosed(StdoutError):
    """The reader closed the pipe."""

    exit_code = EXIT_PIPE_CLOSED


class StdoutFailed(StdoutError):
    """Another write error (the message says which)."""


class Stdout:
    """The events' destination: `write` and `flush` raise StdoutError instead of OSError."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._out = stream if stream is not None else sys.stdout.buffer

    def write(self, data: bytes) -> None:
        try:
            self._out.write(data)
        except OSError as e:
            raise _stdout_error(e) from None

    def flush(self) -> None:
        try:
            self._out.flush()
        except OSError as e:
            raise _stdout_error(e) from None


def _stdout_error(e: OSError) -> StdoutError:
    if isinstance(e, BrokenPipeError):
        return StdoutClosed("stdout was closed")
    return StdoutFailed(f"cannot write to stdout: {e.strerror or e}")


def finish(error: StdoutError) -> int:
    """Reports `error` (nothing for a closed pipe), silences stdout, returns the exit status."""
    if not isinstance(error, StdoutClosed):
        print(f"evix: error: {error}", file=sys.stderr)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return error.exit_code


def can_hang_up(fd: int) -> bool:
    """Whether `fd` is a pipe or a socket: the kinds whose reader can go away."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class ReaderWatch:
    """Calls `on_gone` (from a thread of its own) when the reader of stdout goes away."""

    def __init__(self, on_gone: Callable[[], None], fd: int | None = None) -> None:
        self.fd = sys.stdout.fileno() if fd is None else fd
        self.gone = False
        self._on_gone = on_gone
        if can_hang_up(self.fd):
            # A daemon thread: it blocks in poll() until the end, and must not keep us alive.
            threading.Thread(target=self._watch, name="evix-stdout-watch", daemon=True).start()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self.fd, 0)  # POLLERR (a pipe's reader gone) and POLLHUP are always reported
        while not any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll()):
            pass
        self.gone = True
        self._on_gone()
