"""The errors of the engine and the daemon: one root, a few named kinds."""

from __future__ import annotations


class EvixError(Exception):
    """Any error evix reports to its user (the CLI prints it and exits 1)."""


class InputError(EvixError):
    """The input cannot be loaded (Nix's message included): the evaluation is fatal."""


class WorkerStartError(EvixError):
    """A worker did not start. `fatal` when the input itself failed to load there."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


class WarmingStopped(WorkerStartError):
    """The template passed --max-memory or --timeout while warming: start it again without warming."""


class SessionError(EvixError):
    """A session operation that cannot be done (no warm graph, stream already used...)."""


class RemoteUnreachable(WorkerStartError):
    """A remote worker service could not be reached, after every retry: its slot is retired
    and the run goes on with the other workers."""

    def __init__(self, message: str) -> None:
        super().__init__(message, fatal=False)
