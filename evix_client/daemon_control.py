"""`evix daemon status` and `evix daemon stop`: ask the daemon on the socket, and check its
pid file only as protocol.pidfile allows (a pid is believed only while it runs the daemon).

Light like the rest of the client: standard library, orjson and `protocol`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

import orjson

from protocol import rpc
from protocol.argtypes import positive_seconds
from protocol.endpoint import socket_path
from protocol.helpformat import ManPageFormatter
from protocol.pidfile import is_running, live_daemon_pid, pid_file_for, read_pid

from .daemon_client import DaemonClient, DaemonError, DaemonUnavailable

NOT_RUNNING = 3  # as `systemctl status` (and LSB init scripts) say "not running"
ANSWER_TIMEOUT = 10.0  # seconds for a status or shutdown answer
STOP_TIMEOUT = 30.0  # running requests get 5 s, then the workers stop: well within this


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evix daemon", description="Ask about or stop the evix daemon.",
                                formatter_class=ManPageFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{status,stop}")
    st = sub.add_parser("status", help="is a daemon running? pid, version, uptime, sessions, workers",
                        description="Whether a daemon answers on the socket, and what it holds.",
                        epilog=f"exit status: 0 when it runs, {NOT_RUNNING} when it does not, 1 on an error, "
                               "2 for a usage error.\n\nexamples:\n  evix daemon status\n"
                               "  evix daemon status --json --socket /tmp/evix.sock\n",
                        formatter_class=ManPageFormatter)
    st.add_argument("--json", action="store_true", help="print the daemon's `status` answer as JSON")
    sp = sub.add_parser("stop", help="stop the daemon and wait until it has exited",
                        description="Ask the daemon to shut down and wait for its process to exit.",
                        epilog="exit status: 0 when it stopped or none was running, 1 otherwise, "
                               "2 for a usage error.\n\nexamples:\n  evix daemon stop\n"
                               "  evix daemon stop --timeout 60\n",
                        formatter_class=ManPageFormatter)
    sp.add_argument("--timeout", type=positive_seconds, default=STOP_TIMEOUT, metavar="S",
                    help=f"how long to wait for it to exit (default {STOP_TIMEOUT:g})")
    for q in (st, sp):
        q.add_argument("--socket", metavar="PATH", help="daemon socket (default: $EVIX_SOCKET or "
                                                        "$XDG_RUNTIME_DIR/evix.sock)")
    return p


def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    path = socket_path(ns.socket)
    if ns.command == "status":
        return run_status(path, ns.json)
    return run_stop(path, ns.timeout)


def run_status(path: str, as_json: bool = False) -> int:
    """Prints what the daemon on `path` says of itself; NOT_RUNNING when none answers."""
    try:
        status = _ask(path, "status")
    except DaemonUnavailable as e:
        print(f"evixd is not running: nothing answers on {path} ({e.reason}){_pid_file_note(path)}")
        return NOT_RUNNING
    except (DaemonError, rpc.RpcError, OSError) as e:
        print(f"evix daemon: error: the daemon on {path} did not answer `status`: {_message(e)}", file=sys.stderr)
        return 1
    if as_json:
        print(orjson.dumps(status).decode())
        return 0
    workers = status.get("workers") or {}
    rows = [
        ("pid", status.get("pid")),
        ("version", f"{status.get('version')} (protocol {status.get('protocolVersion')})"),
        ("uptime", _duration(float(status.get("uptimeSeconds", 0)))),
        ("sessions", f"{status.get('sessions')} ({_mib(status.get('sessionMemoryBytes', 0))} of warm graphs)"),
        ("workers", f"{workers.get('warm', 0)} warm, {workers.get('processes', 0)} running, "
                    f"{workers.get('spawned', 0)} started so far"),
        ("connections", status.get("connections")),
    ]
    activated = " (socket from systemd)" if status.get("socketActivated") else ""
    print(f"evixd is running on {status.get('socket', path)}{activated}")
    for name, value in rows:
        print(f"  {name:<12}{value}")
    return 0


def run_stop(path: str, timeout: float = STOP_TIMEOUT) -> int:
    """Asks the daemon on `path` to shut down and waits (bounded) for its process to exit."""
    try:
        status = _ask(path, "status")
        pid = int(status["pid"])
        _ask(path, "shutdown")
    except DaemonUnavailable as e:
        return _stop_unreachable(path, e, timeout)
    except (DaemonError, rpc.RpcError, OSError, KeyError, ValueError) as e:
        print(f"evix daemon: error: cannot stop the daemon on {path}: {_message(e)}", file=sys.stderr)
        return 1
    if not _wait_gone(pid, timeout):
        print(f"evix daemon: error: evixd (pid {pid}) asked to shut down but still runs after {timeout:g} s; "
              f"`kill {pid}` stops it at once", file=sys.stderr)
        return 1
    print(f"evixd (pid {pid}) on {path} stopped")
    if status.get("socketActivated"):
        print("it was started by systemd socket activation: the next client starts it again "
              "(`systemctl --user stop evixd.socket` keeps it stopped)")
    return 0


def _stop_unreachable(path: str, e: DaemonUnavailable, timeout: float) -> int:
    """Nothing answers: stop a daemon the pid file proves is still running, else say none runs."""
    pid = live_daemon_pid(pid_file_for(path))
    if pid is None:
        print(f"evixd is not running: nothing answers on {path} ({e.reason}){_pid_file_note(path)}")
        return 0
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        print(f"evix daemon: error: evixd (pid {pid}, which does not answer on {path}) still runs "
              f"{timeout:g} s after SIGTERM; `kill -KILL {pid}` ends it", file=sys.stderr)
        return 1
    print(f"evixd (pid {pid}, which did not answer on {path}) stopped after SIGTERM")
    return 0


def _ask(path: str, method: str) -> Any:
    with DaemonClient.connect(path) as client:
        client.sock.settimeout(ANSWER_TIMEOUT)
        return client.call(method)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _pid_file_note(socket: str) -> str:
    """What the pid file adds when nothing answers (a daemon stopping, or a stale file)."""
    path = pid_file_for(socket)
    pid = read_pid(path)
    if pid is None:
        return ""
    if live_daemon_pid(path) == pid:
        return (f"; but evixd pid {pid} ({path}) still runs (stopping, or its socket was removed: "
                "`evix daemon stop` ends it)")
    return f"; {path} is stale (pid {pid} is not an evix daemon)"


def _message(e: BaseException) -> str:
    return getattr(e, "message", None) or str(e) or type(e).__name__


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s"
    h, rem = divmod(s, 3600)
    return f"{h}h {rem // 60:02d}m {rem % 60:02d}s" if h else f"{rem // 60}m {rem % 60:02d}s"


def _mib(n: Any) -> str:
    return f"{(n or 0) / (1 << 20):.1f} MiB"
