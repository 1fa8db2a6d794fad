"""`evix watch`: evaluate a local file or flake, then print one diff per change of its files.

stdout: the first evaluation's events, exactly as `evix eval` prints them, then one JSON
object per line for each change, as `evix diff` prints it (`added`, `removed`, `changed`,
`errors`). An input that stops loading (a syntax error, a deleted file) is a line whose
`errors` say why; the watch goes on and the next good state is compared with the last good
one.

Through the daemon when one answers (its `watch` method: one watcher and one evaluation per
config, however many watch it; `evix query` then answers from the latest state), else in
this process, as `evix eval --no-daemon` runs. Ctrl-C ends it with 130, workers stopped.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

import orjson

from protocol import rpc
from protocol.config import EvalConfig

from .stdout import Stdout

log = logging.getLogger("evix")


def run_watch(config: EvalConfig, extra: tuple[str, ...], socket: str, no_daemon: bool,
              debounce: float | None = None) -> int:
    """Watches `config` (plus the `extra` paths) until stopped; returns the exit status.
    `debounce`: the quiet time that ends a burst (None: the engine's default)."""
    if not no_daemon:
        code = try_daemon_watch(config, extra, socket, debounce)
        if code is not None:
            return code
    from .local import run_local_eval

    return run_local_eval(config, evaluate=functools.partial(_watch_locally, extra, debounce))


def diff_line(diff: dict[str, Any]) -> bytes:
    """One change as printed: what `evix diff` prints."""
    return orjson.dumps({k: diff[k] for k in ("added", "removed", "changed", "errors")}) + b"\n"


async def _watch_locally(extra: tuple[str, ...], debounce: float | None, config: EvalConfig, sink: Stdout,
                         spawned: list[Any]) -> int:
    from evixd.engine import EvixError, Session

    def initial(data: bytes) -> None:
        sink.write(data)
        sink.flush()

    try:
        async with Session(config).watch(extra, initial, spawned, debounce=debounce) as updates:
            log.info("watching %s for changes (Ctrl-C to stop)", config.describe())
            async for update in updates:
                sink.write(diff_line(update.diff.to_json()))
                sink.flush()
    except EvixError as e:
        sink.flush()
        print(f"evix: error: {e}", file=sys.stderr)
        return 1
    return 0


def try_daemon_watch(config: EvalConfig, extra: tuple[str, ...], path: str, debounce: float | None = None,
                     out: Stdout | None = None) -> int | None:
    """Watches through the daemon on `path` until stopped; None when no daemon takes it (then
    watch locally)."""
    from .daemon_commands import streamed_call

    def notified(method: str, params: dict[str, Any]) -> bytes | None:
        diff = params.get("diff")
        return diff_line(diff) if method == rpc.WATCH_DIFF_METHOD and isinstance(diff, dict) else None

    params = rpc.WatchParams(config, extra, debounce, rpc.PROTOCOL_VERSION).to_json()
    _, code = streamed_call(path, "watch", params, out or Stdout(), notified, flush=True)
    return code
