"""The template's control channel: how a master asks a template to fork a worker.

A template is a worker process that has loaded the input (and warmed it) and then only forks
evaluation workers. The channel is a SOCK_SEQPACKET socket pair, one message per packet:

    master -> template   b"fork" with four fds attached (SCM_RIGHTS), in this order:
                         the child's stdin (read end), stdout (write end), stderr (write end)
                         and its in-flight word (memfd)
                         b"warm" + a JSON attribute path: evaluate that attribute's drvPath
                         now (errors ignored), so that later forks share what it forced
    template -> master   {"forked": pid}                  the child runs, in request order
                         {"failed": message}              fork() itself failed
                         {"warmed": step}                 done warming (step: see WARMING)
                         {"exited": pid, "status": raw}   a child ended (os.waitpid status)

The child then speaks the worker protocol on its own pipes, beginning with Setup (which must
carry the template's config) like any worker. The master is not the child's parent, so the
template reaps it and reports how it ended.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

FORK = b"fork"
FORK_FDS = 4
MAX_PACKET = 4096
WARM = b"warm"
WARMING = 0
"""The batch id a template marks in its in-flight word when it starts warming (real batches
start at 1), item k for its k-th warming (0: before Ready, then one per warm request): from
then on the master holds it to the memory limit, as a fresh fork evaluating that item."""


@dataclass(frozen=True)
class Forked:
    pid: int


@dataclass(frozen=True)
class ForkFailed:
    message: str


@dataclass(frozen=True)
class Warmed:
    step: int


@dataclass(frozen=True)
class Exited:
    pid: int
    status: int  # as os.waitpid reports it


TemplateEvent = Forked | ForkFailed | Warmed | Exited


def encode_event(event: TemplateEvent) -> bytes:
    if isinstance(event, Forked):
        return orjson.dumps({"forked": event.pid})
    if isinstance(event, ForkFailed):
        return orjson.dumps({"failed": event.message})
    if isinstance(event, Warmed):
        return orjson.dumps({"warmed": event.step})
    return orjson.dumps({"exited": event.pid, "status": event.status})


def decode_event(packet: bytes) -> TemplateEvent:
    """The event of one packet; ValueError when it is not one."""
    try:
        d = orjson.loads(packet)
        if "forked" in d:
            return Forked(int(d["forked"]))
        if "failed" in d:
            return ForkFailed(str(d["failed"]))
        if "warmed" in d:
            return Warmed(int(d["warmed"]))
        return Exited(int(d["exited"]), int(d["status"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a template event: {packet[:80]!r}") from e


def encode_warm(path: list[str]) -> bytes:
    return WARM + orjson.dumps(path)


def decode_warm(packet: bytes) -> list[str]:
    """The attribute path of a warm request; ValueError when it is not one."""
    try:
        path = orjson.loads(packet[len(WARM):])
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not a warm request: {packet[:80]!r}") from e
    if not packet.startswith(WARM) or not isinstance(path, list) or not all(isinstance(n, str) for n in path):
        raise ValueError(f"not a warm request: {packet[:80]!r}")
    return path
