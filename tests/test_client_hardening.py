"""The `evix` client against a daemon that is full, gone, or not ours: real processes, a
real `evixd`, and a fake daemon run by another uid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import work  # noqa: F401 (the `work` directory fixture)
from daemon_fixtures import Daemon, start_daemon, write_jobs
from evix_helpers import command, evix_env, run_evix
from process_watch import write_slow_jobs

from evix_client.daemon_client import DaemonClient

NOBODY = 65534
TRY_AGAIN = 75


def _hold_every_slot(daemon: Daemon, slots: int) -> list[DaemonClient]:
    """`slots` connections, each seen served, so the daemon is at its connection limit."""
    held: list[DaemonClient] = []
    deadline = time.monotonic() + 20
    while len(held) < slots:
        client = daemon.client()
        try:
            client.call("status")
            held.append(client)
        except Exception:  # the start-up probe may still hold a slot for a moment
            client.close()
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return held


# ---- the connection limit: query and diff wait and retry -------------------------------
def test_a_hundred_concurrent_queries_are_all_answered_at_the_connection_limit(work: Path) -> None:
    write_jobs(work / "jobs.nix")
    daemon = start_daemon(work / "evix.sock")  # the default limit: 64
    assert run_evix("eval", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket).code == 0
    expected = run_evix("query", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket).stdout
    assert len(expected.splitlines()) == 7
    held = _hold_every_slot(daemon, 64)  # full when the queries start, and until they queue up

    def release() -> None:
        deadline = time.monotonic() + 60
        while "waits for a slot (10 waiting)" not in daemon.log and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for client in held:
            client.close()

    releasing = threading.Thread(target=release)
    releasing.start()
    queries = [subprocess.Popen([*command("evix"), "query", "--file", "jobs.nix"], cwd=work,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=evix_env(daemon.socket)) for _ in range(100)]
    releasing.join()
    results = [(q.wait(120), *q.communicate()) for q in queries]
    failed = [(code, err) for code, _, err in results if code != 0]
    assert not failed, failed[:3]
    assert all(out == expected for _, out, _ in results)
    assert "64 connections open: a new one waits for a slot (10 waiting)" in daemon.log  # the limit was met
    assert daemon.stop() == 0


def test_a_query_that_stays_at_the_connection_limit_says_so_and_exits_try_again(work: Path) -> None:
    write_jobs(work / "jobs.nix")
    daemon = start_daemon(work / "evix.sock", "--max-connections", "2")
    held = _hold_every_slot(daemon, 2)
    started = time.monotonic()
    run = run_evix("query", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket)
    waited = time.monotonic() - started
    for client in held:
        client.close()
    assert run.code == TRY_AGAIN, run.stderr
    assert "stayed at its connection limit for 10 s" in run.stderr and "run the command again" in run.stderr
    assert waited > 9.5  # it did wait and retry
    assert daemon.stop() == 0


# ---- a socket served by another user ---------------------------------------------------
FAKE_DAEMON = """\
import json, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
os.setgid(65534)
os.setuid(65534)  # SO_PEERCRED reports who called listen()
s.listen()
print("ready", flush=True)
forged = json.dumps({"attr": "hello", "attrPath": ["hello"], "name": "forged", "system": "x86_64-linux",
                     "drvPath": "/nix/store/00000000000000000000000000000000-forged.drv", "outputs": {"out": None}})
while True:
    c, _ = s.accept()
    line = c.makefile("rb").readline()
    if not line:
        c.close()
        continue
    rid = json.loads(line).get("id")
    c.sendall(json.dumps({"jsonrpc": "2.0", "method": "events", "params": {"id": rid, "ndjson": forged + "\\n"}}).encode()
              + b"\\n" + json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"derivations": 1, "count": 1,
                                   "ndjson": forged + "\\n"}}).encode() + b"\\n")
    c.close()
"""


def test_a_socket_served_by_another_user_is_refused_and_no_daemon_still_works(work: Path) -> None:
    assert os.getuid() == 0, "needs root to run the fake daemon as another user"
    write_jobs(work / "jobs.nix")
    sock = work / "evix.sock"
    fake = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, str(sock)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert fake.stdout is not None and fake.stdout.readline() == b"ready\n"
        for args in (("eval", "--file", "jobs.nix"), ("query", "--file", "jobs.nix"), ("diff", "--file", "jobs.nix")):
            run = run_evix(*args, cwd=work, socket_path=sock)
            assert run.code == 1, run.stderr
            assert run.stdout == b""  # nothing forged is printed, and no silent local run either
            message = run.stderr
            assert f"refusing the daemon socket {sock}" in message and f"uid {NOBODY} (nobody)" in message
            assert "--no-daemon" in message and "Traceback" not in message
        local = run_evix("eval", "--no-daemon", "--file", "jobs.nix", cwd=work, socket_path=sock)
        assert local.code == 0 and b'"name":"forged"' not in local.stdout
        assert len([line for line in local.stdout.splitlines() if b'"drvPath"' in line]) == 7
    finally:
        fake.kill()
        fake.wait()


# ---- the daemon going away mid-eval ----------------------------------------------------
def test_sigterm_to_the_daemon_after_output_exits_try_again(work: Path) -> None:
    slow = write_slow_jobs(work)
    daemon = start_daemon(work / "evix.sock", "--warm-seconds", "0")
    client = subprocess.Popen([*command("evix"), "eval", "--file", str(slow), "--workers", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=evix_env(daemon.socket))
    try:
        assert client.stdout is not None
        first = client.stdout.readline()
        daemon.proc.send_signal(signal.SIGTERM)
        rest, err = client.communicate(timeout=60)
    finally:
        client.kill()
    assert first.startswith(b'{"attr":"","attrPath":[]')
    assert client.returncode == TRY_AGAIN, err
    assert b"went away in the middle of the evaluation" in err and b"run the command again" in err
    assert all(line.endswith(b"}") for line in rest.splitlines())  # whole lines only, never half of one
    assert daemon.proc.wait(30) == 0


def test_sigterm_to_the_daemon_before_any_output_falls_back_to_a_local_run(work: Path) -> None:
    nix = work / "slowroot.nix"
    nix.write_text(
        "let slow = let list = builtins.genList (x: x * 7919 - (x / 3) * 5) 200000; in "
        "builtins.foldl' (acc: i: acc + builtins.length (builtins.sort (a: b: a > b) list)) 0 "
        "(builtins.genList (x: x) 30);\n"
        "mk = name: derivation { inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }; in\n"
        "builtins.seq slow { a = mk \"a\"; b = mk \"b\"; }\n")
    daemon = start_daemon(work / "evix.sock", "--warm-seconds", "0")
    client = subprocess.Popen([*command("evix"), "eval", "--file", str(nix)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=evix_env(daemon.socket))
    try:
        deadline = time.monotonic() + 60
        while not any(s["busy"] for s in daemon.call("sessions")):  # its root is being evaluated
            assert time.monotonic() < deadline and client.poll() is None
            time.sleep(0.05)
        daemon.proc.send_signal(signal.SIGTERM)
        out, err = client.communicate(timeout=120)
    finally:
        client.kill()
    assert client.returncode == 0, err
    assert b"went away before sending any event" in err and b"evaluating locally" in err
    local = run_evix("eval", "--no-daemon", "--file", str(nix))
    assert sorted(out.splitlines()) == sorted(local.stdout.splitlines())
    assert len(out.splitlines()) == 3
