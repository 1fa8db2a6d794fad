"""SIGTERM and SIGHUP for a local run: stop as Ctrl-C does, and exit 128 + the signal.

`timeout`, a CI runner cancelling a job and a closed terminal send these. The run must end
through its normal teardown (so its workers are stopped), whenever the signal lands: while
the workers are being started (the handler raises `Stopped`), or later (the signal is
remembered until trio runs, whose own signal receiver then takes over, and the run is
cancelled at once).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived before the run started (BaseException: never caught by accident)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """Installs the handlers for the `with` block; `received` is the first signal seen."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.raising = True  # False once trio is about to take over the signals
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if self.raising:
            raise Stopped(signum)

    @property
    def exit_code(self) -> int | None:
        return None if self.received is None else 128 + self.received
