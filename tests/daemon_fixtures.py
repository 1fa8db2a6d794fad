"""Helpers for the daemon tests: a real `evixd` process on a short temporary socket,
real Nix fixture files, and raw socket access for protocol-level checks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from evix_client.daemon_client import DaemonClient, DaemonError
from evix_helpers import command, evix_env, wait_until
from protocol import rpc
from protocol.events import EventKind, event_kind

START_TIMEOUT = 30.0


def short_dir() -> Path:
    """A fresh directory with a short path: AF_UNIX paths are limited to 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="evx-", dir="/tmp"))


def _work_dir() -> Iterator[Path]:
    """A short temporary directory for a test's files and socket, removed afterwards."""
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


# Fixtures to import into a test module (both are named `work` there).
work = pytest.fixture(_work_dir, name="work")
module_work = pytest.fixture(_work_dir, name="work", scope="module")


class Daemon:
    """A running `evixd --foreground` process and a way to talk to it."""

    def __init__(self, proc: subprocess.Popen[bytes], socket_path: Path, log_path: Path) -> None:
        self.proc = proc
        self.socket = socket_path
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> DaemonClient:
        return DaemonClient.connect(str(self.socket))

    def call(self, method: str, params: dict[str, Any] | None = None, on_events: Any = None) -> Any:
        with self.client() as c:
            return c.call(method, params, on_events)

    def raw(self) -> RawConnection:
        return RawConnection(str(self.socket))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"evixd did not stop within {timeout} s after {signal.Signals(sig).name}:\n{self.log}")


_started: list[Daemon] = []


@pytest.fixture(autouse=True)
def reap_daemons() -> Iterator[None]:
    """Stops every daemon a test started and left running (say, after a failed assertion)."""
    yield
    while _started:
        daemon = _started.pop()
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(20)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait()


def start_daemon(socket_path: Path, *args: str, cmd: list[str] | None = None, wait: bool = True,
                 pass_fds: tuple[int, ...] = (), extra_env: dict[str, str] | None = None,
                 reap: bool = True) -> Daemon:
    """Starts the daemon and waits until its socket accepts connections.

    With `reap`, the `reap_daemons` fixture stops it after the test if it still runs."""
    log_path = socket_path.parent / f"{socket_path.name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*(cmd or command("evixd")), "--foreground", "--socket", str(socket_path), "-v", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=evix_env(extra=extra_env), pass_fds=pass_fds,
        )
    daemon = Daemon(proc, socket_path, log_path)
    if reap:
        _started.append(daemon)
    if wait:
        wait_until_serving(proc, socket_path, log_path)
    return daemon


def wait_until_serving(proc: subprocess.Popen[bytes], path: Path | str, log_path: Path) -> None:
    """Waits until the daemon `proc` answers `status` on `path` (failing, with its log, if it
    exits first or takes longer than START_TIMEOUT)."""

    def answers() -> bool:
        assert proc.poll() is None, f"evixd exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}"
        try:
            with DaemonClient.connect(str(path), timeout=1) as c:
                c.call("status")
                return True
        except (DaemonError, OSError, rpc.RpcError):  # not listening yet, or not answering yet
            return False

    try:
        wait_until(answers, f"evixd to serve on {path}", timeout=START_TIMEOUT)
    except AssertionError:
        proc.kill()
        raise


def daemon_fixture(*args: str) -> Iterator[Daemon]:
    """Body of a pytest fixture: a daemon for the test, stopped (and checked) afterwards."""
    d = short_dir()
    daemon = start_daemon(d / "evix.sock", *args, reap=False)
    try:
        yield daemon
    finally:
        code = daemon.stop()
        log = daemon.log
        shutil.rmtree(d, ignore_errors=True)
        assert code == 0, f"evixd exited with {code}:\n{log}"
        assert "Traceback" not in log, log


class RawConnection:
    """A plain socket for sending arbitrary bytes and reading framed answers."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_json(self, obj: Any) -> None:
        self.sock.sendall(orjson.dumps(obj) + b"\n")

    def read(self) -> Any:
        line = self.reader.readline()
        assert line.endswith(b"\n"), f"connection closed (got {line[:200]!r})"
        return orjson.loads(line)

    def read_response(self) -> Any:
        """The next message that is not an `events` notification."""
        while True:
            msg = self.read()
            if not (isinstance(msg, dict) and msg.get("method") == rpc.EVENTS_METHOD):
                return msg

    def is_closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.reader.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- Nix fixtures ------------------------------------------------------------------------
JOBS_NIX = """\
{ system ? "x86_64-linux" }:
let
  mk = name: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" "echo ${name} > $out" ]; };
in
{
  hello = mk "HELLO_NAME";
  world = mk "world-2.0";
  pkgs = { recurseForDerivations = true; a = mk "a-1"; b = mk "b-1"; "a.b" = mk "quoted-1"; };
  pkgsx = { recurseForDerivations = true; c = mk "c-1"; };
  arm = derivation { name = "arm-1"; system = "aarch64-linux"; builder = "/bin/sh"; };
  broken = throw "this job is broken";
  EXTRA
}
"""


def write_jobs(path: Path, *, hello: str = "hello-1.0", extra: str = "") -> Path:
    """A small job set: scopes (one whose name extends another's), a quoted attribute, a
    second system, a broken job. `hello` and `extra` let a test change it in place."""
    path.write_text(JOBS_NIX.replace("HELLO_NAME", hello).replace("EXTRA", extra))
    return path


def write_many(path: Path, n: int, groups: int = 10, salt: str = "") -> Path:
    """`n` trivial derivations in `groups` recursed scopes (g0..g9), for streaming and load."""
    path.write_text(f"""\
let
  mk = name: derivation {{ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; salt = "{salt}"; }};
  group = g: builtins.listToAttrs (builtins.genList (i: {{
    name = "p${{toString i}}"; value = mk "g${{toString g}}-p${{toString i}}";
  }}) {n // groups}) // {{ recurseForDerivations = true; }};
in builtins.listToAttrs (builtins.genList (g: {{ name = "g${{toString g}}"; value = group g; }}) {groups})
""")
    return path


def config_for(nix_file: Path, **kw: Any) -> dict[str, Any]:
    """The config JSON `evix` would send for `--file nix_file` from its directory."""
    cfg = {"file": str(nix_file), "baseDir": str(nix_file.parent), "nixPath": os.environ.get("NIX_PATH", "")}
    cfg.update(kw)
    return cfg


def eval_lines(daemon: Daemon, config: dict[str, Any]) -> tuple[list[bytes], dict[str, Any]]:
    """Evaluates through the daemon: (the NDJSON lines streamed, the summary)."""
    chunks: list[str] = []
    summary = daemon.call("eval", {"config": config}, on_events=chunks.append)
    return "".join(chunks).encode().splitlines(), summary


def derivation_lines(lines: list[bytes]) -> dict[str, bytes]:
    """attr -> line, for the derivation events among `lines`."""
    out = {}
    for line in lines:
        d = orjson.loads(line)
        if event_kind(d) is EventKind.DERIVATION:
            out[d["attr"]] = line
    return out
