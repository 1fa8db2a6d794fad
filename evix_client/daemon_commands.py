"""`evix eval` through the daemon, `evix query` and `evix diff`.

Light on purpose: only the standard library, orjson and `protocol` (no trio, cffi or
capnp), so a query costs a Python start-up plus one round trip.

When the daemon cannot finish an `eval`: before anything is printed, evaluating locally
takes over (the user sees the same output); after part of the output is printed, the run
exits with EXIT_TRY_AGAIN and says so, since a second run's output would be mixed in.
`query` and `diff` wait and retry for a few seconds while the daemon is at its connection
limit. A socket served by another user is refused outright, never silently passed over.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from protocol import rpc
from protocol.config import EvalConfig
from protocol.query import Filter

from .daemon_client import ConnectionLost, DaemonClient, DaemonError, DaemonUnavailable, ForeignDaemonError
from .stdout import ReaderWatch, Stdout, StdoutClosed

log = logging.getLogger("evix")

EXIT_TRY_AGAIN = 75  # EX_TEMPFAIL: the daemon went away or stayed full; the same command may work now
CAP_RETRY_SECONDS = 10.0  # how long `query`/`diff` retry while the daemon is at its connection limit
START_HINT = "start one with `evix daemon` or `systemctl --user enable --now evixd.socket`"
# Refusals that come before any output, so local evaluation can still take over.
_FALLBACK_CODES = (rpc.TooManyConnectionsError.CODE, rpc.ForbiddenError.CODE, rpc.ShuttingDownError.CODE,
                   rpc.ProtocolVersionError.CODE, rpc.MethodNotFoundError.CODE)  # (an older daemon: no `watch`)


def fail(message: str, code: int = 1) -> int:
    print(f"evix: error: {message}", file=sys.stderr)
    return code


def try_again(message: str) -> int:
    return fail(f"{message}; run the command again (exit status {EXIT_TRY_AGAIN}: try again)", EXIT_TRY_AGAIN)


def try_daemon_eval(config: EvalConfig, path: str, out: Stdout | None = None) -> int | None:
    """Evaluates through the daemon on `path`, printing the same NDJSON as a local run.

    Returns the exit status, or None when no daemon can take the job (then evaluate locally)."""
    summary, code = streamed_call(path, "eval", rpc.EvalParams(config, rpc.PROTOCOL_VERSION).to_json(),
                                  out or Stdout())
    if summary is None:
        return code
    log.info("%d derivations, %d errors in %.2f s (daemon session %s)", summary.get("derivations", 0),
             summary.get("errors", 0), summary.get("seconds", 0.0), str(summary.get("session", ""))[:12])
    return 0


Notified = Callable[[str, dict[str, Any]], bytes | None]
"""(notification method, params) -> what to print for it (None: nothing)."""


def streamed_call(path: str, method: str, params: dict[str, Any], sink: Stdout, on_notification: Notified | None = None,
                  *, flush: bool = False) -> tuple[Any, int | None]:
    """One streaming request (`eval`, `watch`) to the daemon on `path`: its events, and what
    `on_notification` makes of its other notifications, printed to `sink` (flushed at each
    one with `flush`). Returns (result, None) once answered; (None, exit status) when it
    failed; (None, None) when no daemon can take it (then run locally)."""
    try:
        client = DaemonClient.connect(path)
    except ForeignDaemonError as e:
        return None, fail(str(e))
    except DaemonUnavailable as e:
        log.info("%s: evaluating locally", e)
        return None, None
    except DaemonError as e:
        log.warning("%s: evaluating locally", e)
        return None, None
    printed = False

    def write(data: bytes | None) -> None:
        nonlocal printed
        if data:
            printed = True
            sink.write(data)
            if flush:
                sink.flush()

    def notified(name: str, p: dict[str, Any]) -> None:
        write(on_notification(name, p) if on_notification is not None else None)

    with client:
        reader = ReaderWatch(client.abort)  # `| head`: stop when the reader goes, not at the next write
        try:
            result = client.call(method, params, on_events=lambda ndjson: write(ndjson.encode()),
                                 on_notification=notified)
        except (rpc.RpcError, DaemonError) as e:
            if reader.gone:
                raise StdoutClosed("stdout was closed") from None
            sink.flush()
            return None, _eval_stopped(e, path, printed)
    sink.flush()
    return result, None


def _eval_stopped(error: rpc.RpcError | DaemonError, path: str, printed: bool) -> int | None:
    """What an `eval` the daemon did not finish ends with (None: evaluate locally)."""
    gone = isinstance(error, ConnectionLost) or getattr(error, "code", None) == rpc.ShuttingDownError.CODE
    if not printed and (gone or getattr(error, "code", None) in _FALLBACK_CODES):
        how = "went away before sending any event" if gone else "refused the evaluation"
        log.warning("the daemon on %s %s (%s): evaluating locally", path, how, _text(error))
        return None
    if gone:
        return try_again(f"the daemon on {path} went away in the middle of the evaluation ({_text(error)}) "
                         "and the output printed so far is incomplete")
    return fail(_text(error))


def run_query(config: EvalConfig, flt: Filter, path: str, out: Stdout | None = None) -> int:
    """Prints the warm session's derivations matching `flt` as NDJSON."""
    params = rpc.QueryParams(config, flt, "ndjson", rpc.PROTOCOL_VERSION).to_json()
    result = _request(path, "query", params)
    if isinstance(result, int):
        return result
    sink = out or Stdout()
    sink.write(result["ndjson"].encode())
    sink.flush()
    log.info("%d derivations (daemon: %.1f ms)", result.get("count", 0), result.get("serverMs", 0.0))
    return 0


def run_diff(config: EvalConfig, path: str, out: Stdout | None = None) -> int:
    """Prints one JSON object: added, removed, changed, errors."""
    result = _request(path, "diff", rpc.DiffParams(config, rpc.PROTOCOL_VERSION).to_json())
    if isinstance(result, int):
        return result
    from .watch import diff_line

    sink = out or Stdout()
    sink.write(diff_line(result))
    sink.flush()
    summary = result.get("summary") or {}
    log.info("%d added, %d removed, %d changed, %d errors (%d derivations in %.2f s)", len(result["added"]),
             len(result["removed"]), len(result["changed"]), len(result["errors"]), summary.get("derivations", 0),
             summary.get("seconds", 0.0))
    return 0


def _request(path: str, method: str, params: dict[str, Any]) -> Any:
    """The result of one `query`/`diff` request, or the exit status after saying what went wrong."""
    try:
        return call_with_retry(path, method, params)
    except ForeignDaemonError as e:
        return fail(str(e))
    except DaemonUnavailable as e:
        return fail(f"{e}: `evix {method}` needs the daemon; {START_HINT}")
    except rpc.TooManyConnectionsError as e:
        return try_again(f"the daemon on {path} stayed at its connection limit for {CAP_RETRY_SECONDS:g} s "
                         f"({e.message})")
    except rpc.ShuttingDownError as e:
        return try_again(f"the daemon on {path} is stopping ({e.message})")
    except ConnectionLost as e:
        return try_again(str(e))
    except (rpc.RpcError, DaemonError) as e:
        return fail(_text(e))


def call_with_retry(path: str, method: str, params: dict[str, Any], patience: float = CAP_RETRY_SECONDS) -> Any:
    """One request on a fresh connection; while the daemon refuses it for being at its
    connection limit, waits (exponential backoff with jitter) and retries for `patience` s."""
    deadline = time.monotonic() + patience
    delay = 0.02
    while True:
        try:
            with DaemonClient.connect(path) as client:
                return client.call(method, params)
        except rpc.TooManyConnectionsError:
            if time.monotonic() + delay > deadline:
                raise
        import random  # only when the daemon is full: costs a little start-up otherwise

        log.debug("the daemon is at its connection limit: retrying in %.0f ms", delay * 1000)
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 0.5)


def _text(error: rpc.RpcError | DaemonError) -> str:
    return getattr(error, "message", None) or str(error)
