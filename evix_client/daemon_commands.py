"""`evix eval` through the daemon, `evix query` and `evix diff`.

Light on purpose: only the standard library, orjson and `protocol` (no trio, cffi or
capnp), so a query costs a Python start-up plus one round trip.
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO

import orjson

from protocol import rpc
from protocol.config import EvalConfig
from protocol.query import Filter

from .daemon_client import DaemonClient, DaemonError, DaemonUnavailable

log = logging.getLogger("evix")

START_HINT = "start one with `evix daemon` or `systemctl --user enable --now evixd.socket`"
# Refusals that come before any output, so local evaluation can still take over.
_FALLBACK_CODES = (rpc.TooManyConnectionsError.CODE, rpc.ForbiddenError.CODE, rpc.ShuttingDownError.CODE,
                   rpc.ProtocolVersionError.CODE)


def fail(message: str) -> int:
    print(f"evix: error: {message}", file=sys.stderr)
    return 1


def try_daemon_eval(config: EvalConfig, path: str, out: BinaryIO | None = None) -> int | None:
    """Evaluates through the daemon on `path`, printing the same NDJSON as a local run.

    Returns the exit status, or None when no daemon can take the job (then evaluate locally)."""
    out = out or sys.stdout.buffer
    try:
        client = DaemonClient.connect(path)
    except DaemonUnavailable as e:
        log.info("%s: evaluating locally", e)
        return None
    except DaemonError as e:
        log.warning("%s: evaluating locally", e)
        return None
    printed = False

    def write(ndjson: str) -> None:
        nonlocal printed
        printed = True
        out.write(ndjson.encode())

    with client:
        try:
            summary = client.call("eval", rpc.EvalParams(config, rpc.PROTOCOL_VERSION).to_json(), on_events=write)
        except rpc.RpcError as e:
            out.flush()
            if not printed and e.code in _FALLBACK_CODES:
                log.warning("the daemon on %s refused the evaluation (%s): evaluating locally", path, e.message)
                return None
            return fail(e.message)
        except DaemonError as e:
            out.flush()
            return fail(str(e))
    out.flush()
    log.info("%d derivations, %d errors in %.2f s (daemon session %s)", summary.get("derivations", 0),
             summary.get("errors", 0), summary.get("seconds", 0.0), str(summary.get("session", ""))[:12])
    return 0


def run_query(config: EvalConfig, flt: Filter, path: str, out: BinaryIO | None = None) -> int:
    """Prints the warm session's derivations matching `flt` as NDJSON."""
    out = out or sys.stdout.buffer
    try:
        with DaemonClient.connect(path) as client:
            result = client.call("query", rpc.QueryParams(config, flt, "ndjson", rpc.PROTOCOL_VERSION).to_json())
    except DaemonUnavailable as e:
        return fail(f"{e}: `evix query` needs the daemon; {START_HINT}")
    except (rpc.RpcError, DaemonError) as e:
        return fail(getattr(e, "message", None) or str(e))
    out.write(result["ndjson"].encode())
    out.flush()
    log.info("%d derivations (daemon: %.1f ms)", result.get("count", 0), result.get("serverMs", 0.0))
    return 0


def run_diff(config: EvalConfig, path: str, out: BinaryIO | None = None) -> int:
    """Prints one JSON object: added, removed, changed, errors."""
    out = out or sys.stdout.buffer
    try:
        with DaemonClient.connect(path) as client:
            result = client.call("diff", rpc.DiffParams(config, rpc.PROTOCOL_VERSION).to_json())
    except DaemonUnavailable as e:
        return fail(f"{e}: `evix diff` needs the daemon; {START_HINT}")
    except (rpc.RpcError, DaemonError) as e:
        return fail(getattr(e, "message", None) or str(e))
    diff = {k: result[k] for k in ("added", "removed", "changed", "errors")}
    out.write(orjson.dumps(diff) + b"\n")
    out.flush()
    summary = result.get("summary") or {}
    log.info("%d added, %d removed, %d changed, %d errors (%d derivations in %.2f s)", len(diff["added"]),
             len(diff["removed"]), len(diff["changed"]), len(diff["errors"]), summary.get("derivations", 0),
             summary.get("seconds", 0.0))
    return 0
