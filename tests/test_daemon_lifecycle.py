"""Starting and stopping the daemon, its socket file, who may connect, and its limits."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import (
    RawConnection,
    config_for,
    derivation_lines,
    eval_lines,
    short_dir,
    start_daemon,
    wait_until_serving,
    write_jobs,
    write_many,
)
from evix_helpers import command, evix_env, wait_until

from evix_client.daemon_client import DaemonClient
from protocol import rpc

NOBODY = 65534


@pytest.fixture
def work() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_socket_is_private_and_removed_on_sigterm(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock)
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert daemon.stop(signal.SIGTERM) == 0
    assert not sock.exists()


def test_sigint_during_an_eval_answers_shutting_down_and_stops_the_workers(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock)
    config = config_for(write_many(work / "long.nix", 20000))
    with RawConnection(str(sock)) as conn:
        conn.send_json({"jsonrpc": "2.0", "id": 5, "method": "eval", "params": {"config": config}})
        assert conn.read()["method"] == "events"
        workers = psutil.Process(daemon.proc.pid).children(recursive=True)
        assert workers
        daemon.proc.send_signal(signal.SIGINT)
        answer = conn.read_response()
        assert answer["id"] == 5 and answer["error"]["code"] == rpc.ShuttingDownError.CODE
        assert conn.is_closed()
    assert daemon.proc.wait(20) == 0
    assert not sock.exists()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    assert "Traceback" not in daemon.log


def test_a_second_signal_stops_at_once_and_still_cleans_up(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock)
    config = config_for(write_many(work / "long.nix", 20000))
    with RawConnection(str(sock)) as conn:
        conn.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval", "params": {"config": config}})
        assert conn.read()["method"] == "events"
        workers = psutil.Process(daemon.proc.pid).children(recursive=True)
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(20) == 0  # not killed by the default action of the second one
    assert not sock.exists()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


def test_shutdown_method_answers_then_stops(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock)
    assert daemon.call("shutdown") == {"stopping": True}
    assert daemon.proc.wait(20) == 0
    assert not sock.exists()


def test_a_stale_socket_is_replaced(work: Path) -> None:
    sock = work / "evix.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # the file stays, nobody listens: connection refused
    daemon = start_daemon(sock)
    assert daemon.call("status")["pid"] == daemon.proc.pid
    assert daemon.stop() == 0


def test_a_live_socket_is_already_running(work: Path) -> None:
    sock = work / "evix.sock"
    first = start_daemon(sock)
    second = start_daemon(sock, wait=False)
    assert second.proc.wait(20) == 1
    assert "already running" in second.log
    assert first.call("status")["pid"] == first.proc.pid  # the first one still owns and serves it
    assert first.stop() == 0


def test_a_path_that_is_not_a_socket_is_never_deleted(work: Path) -> None:
    path = work / "evix.sock"
    path.write_text("precious")
    daemon = start_daemon(path, wait=False)
    assert daemon.proc.wait(20) == 1
    assert "not a socket" in daemon.log
    assert path.read_text() == "precious"


def test_evix_daemon_subcommand_runs_the_same_daemon(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock, cmd=[*command("evix"), "daemon"])
    assert daemon.call("status")["protocolVersion"] == rpc.PROTOCOL_VERSION
    assert daemon.stop() == 0


def test_another_uid_is_refused_by_peer_credentials(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock)
    # Let the file system allow the connection, so that it is SO_PEERCRED that refuses.
    os.chmod(work, 0o755)
    os.chmod(sock, 0o666)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, connect, report what the daemon said
        code = 1
        try:
            os.close(read_end)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(str(sock))
            try:
                s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
            except BrokenPipeError:
                pass  # the daemon may refuse (and close) before our request is even sent
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    break
                data += chunk
            os.write(write_end, data + b"<CLOSED>")
            code = 0
        except BaseException as e:
            os.write(write_end, f"<CHILD FAILED: {e!r}>".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as r:
        report = r.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report.endswith(b"<CLOSED>")  # the daemon closed the connection
    lines = report[: -len(b"<CLOSED>")].splitlines()
    assert len(lines) == 1
    answer = orjson.loads(lines[0])
    assert answer["id"] is None and answer["error"]["code"] == rpc.ForbiddenError.CODE
    assert f"uid {NOBODY}" in answer["error"]["message"]
    assert daemon.call("status")["pid"] == daemon.proc.pid  # the owner is still served
    assert daemon.stop() == 0


def test_connections_over_the_limit_are_refused_with_an_error(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock, "--max-connections", "2")
    try:
        # Slots are taken on accept and freed when the daemon sees a close: wait for each step.
        held = [DaemonClient.connect(str(sock))]
        wait_until(lambda: held[0].call("status")["connections"] == 1, "the start-up probe to go", timeout=10)
        held.append(DaemonClient.connect(str(sock)))
        wait_until(lambda: held[0].call("status")["connections"] == 2, "the second connection", timeout=10)
        assert held[1].call("status")["connections"] == 2
        with pytest.raises(rpc.TooManyConnectionsError), DaemonClient.connect(str(sock)) as refused:
            refused.call("status")
        held.pop().close()

        def served() -> bool:
            try:
                with DaemonClient.connect(str(sock)) as c:
                    assert c.call("status")["connections"] == 2
                return True
            except rpc.TooManyConnectionsError:
                return False

        wait_until(served, "the freed slot to be reusable", timeout=10)
        held[0].close()
    finally:
        assert daemon.stop() == 0


def test_socket_activation_uses_the_inherited_socket(work: Path) -> None:
    path = work / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    fd = listener.fileno()
    # As systemd does: the socket on fd 3, LISTEN_FDS=1, LISTEN_PID = the daemon's own pid.
    # No --foreground: started by systemd, it must not detach (systemd watches this process).
    launcher = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "os.execv(sys.argv[2], sys.argv[2:])\n"
    )
    evixd = command("evixd")
    if len(evixd) != 1:
        pytest.fail("the evixd console script is not installed in this environment")
    unused = work / "unused.sock"
    log_path = work / "activated.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", launcher, str(fd), evixd[0], "--socket", str(unused), "-v"],
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=evix_env(),
        )
    listener.close()  # only the daemon holds it now
    try:
        wait_until_serving(proc, path, log_path)
        with DaemonClient.connect(str(path)) as c:
            status = c.call("status")
            assert status["socketActivated"] is True and status["socket"] == str(path)
            assert status["pid"] == proc.pid  # the process systemd started serves: it did not detach
        nix = write_jobs(work / "jobs.nix")
        config = config_for(nix)
        with DaemonClient.connect(str(path)) as c:
            chunks: list[str] = []
            c.call("eval", {"config": config}, on_events=chunks.append)
            assert len(derivation_lines("".join(chunks).encode().splitlines())) == 7
            assert c.call("query", {"config": config, "filter": {"names": ["b-1"]}})["count"] == 1
        assert not unused.exists()  # it did not bind its own socket
        workers = wait_until(lambda: psutil.Process(proc.pid).children(recursive=True), "a warm worker")
        for worker in workers:  # the LISTEN_* variables were for the daemon only
            assert b"LISTEN_FDS=" not in Path(f"/proc/{worker.pid}/environ").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log_path.read_text()
    assert path.exists()  # systemd's socket file is systemd's to remove


def test_two_evals_of_different_sessions_run_side_by_side(work: Path) -> None:
    sock = work / "evix.sock"
    daemon = start_daemon(sock)
    try:
        configs = [config_for(write_many(work / f"side{i}.nix", 2000, salt=str(i))) for i in range(2)]
        results: dict[int, int] = {}

        def run(i: int) -> None:
            lines, _ = eval_lines(daemon, configs[i])
            results[i] = len(derivation_lines(lines))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == {0: 2000, 1: 2000}
        assert len(daemon.call("sessions")) == 2
    finally:
        assert daemon.stop() == 0
