"""Remote workers when things go wrong: a remote killed mid-run, bytes that are not the
protocol, TLS (self-signed) and the mismatches between TLS and plain ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from evix_helpers import FIXTURES, MEMORY_HOG, Run, eval_locally, start_evix, wait_until
from protocol.environment import TEMPLATE_NAME
from remote_helpers import Service, listen_args, remote_env, services

JOBS = FIXTURES / "jobs.nix"


def _slow_input(tmp_path: Path) -> tuple[Path, Path]:
    """An input whose `slow` attribute blocks, while being evaluated, until its FIFO gets a writer."""
    fifo = tmp_path / "gate.fifo"
    os.mkfifo(fifo)
    source = tmp_path / "slow.nix"
    source.write_text(f"""
let mk = name: derivation {{ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; }};
in builtins.listToAttrs (map (i: {{ name = "d${{toString i}}"; value = mk "d${{toString i}}"; }}) (builtins.genList (x: x) 30))
// {{ slow = builtins.seq (builtins.readFile {fifo}) (mk "slow"); }}
""")
    return source, fifo


def _open_gate(fifo: Path) -> threading.Thread:
    """Lets one reader of the FIFO through (the open blocks until one comes)."""
    def write() -> None:
        with open(fifo, "w"):
            pass  # Nix reads as many bytes as stat says: none; the reader only waited for a writer
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _blocked_on_fifo(service: Service) -> bool:
    for process in service.descendants():
        try:
            if Path(f"/proc/{process.pid}/wchan").read_text() == "wait_for_partner":
                return True
        except OSError:
            continue
    return False


def test_a_remote_killed_mid_run_costs_nothing(tmp_path: Path):
    source, fifo = _slow_input(tmp_path)
    gate = _open_gate(fifo)
    local = eval_locally("--file", str(source))
    gate.join(timeout=10)
    assert local.code == 0, local.stderr
    with services(listen_args(), listen_args()) as pair:
        proc = start_evix("eval", "--no-daemon", "--file", str(source), "--workers", "0",
                          "--remote", pair[0].endpoint, "", "1", "--remote", pair[1].endpoint, "", "1",
                          env=remote_env())
        try:
            victim = wait_until(lambda: next((s for s in pair if _blocked_on_fifo(s)), None),
                                "a remote to evaluate the blocking attribute", timeout=60)
            survivor = pair[1] if victim is pair[0] else pair[0]
            victim.kill()
            wait_until(lambda: _blocked_on_fifo(survivor), "the other remote to take the attribute over", timeout=60)
            _open_gate(fifo).join(timeout=10)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err.decode()
    run = Run(proc.returncode, out, err.decode())
    assert run.canonical() == local.canonical()
    assert "slow" in run.derivations() and not run.errors()


def _frame_header(words: int) -> bytes:
    return struct.pack("<II", 0, words)


@pytest.mark.parametrize("payload, words", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "segment count"),  # garbage
    (_frame_header(1 << 27), "exceeds the limit"),  # a 1 GiB frame announced
    (_frame_header(4) + b"\0" * 8, "inside a frame"),  # truncated: the connection closes mid-frame
])
def test_bytes_that_are_not_the_protocol_close_only_that_connection(payload, words):
    with services(listen_args()) as (service,):
        host, port = service.endpoint.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            while s.recv(4096):
                pass  # the service closes it
        wait_until(lambda: words in service.log, f"the service to log {words!r}", timeout=20)
        good = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "1",
                            env=remote_env())
    assert good.code == 0, good.stderr
    assert good.derivations()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path, str]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    fingerprint = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
                                 check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    return cert, key, fingerprint


def test_tls_with_a_self_signed_certificate(certificate):
    cert, key, fingerprint = certificate
    local = eval_locally("--file", str(JOBS))
    with services(listen_args("tls-token", "--tls-cert", str(cert), "--tls-key", str(key))) as (service,):
        by_ca = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "1",
                             "--remote-tls-ca", str(cert), env=remote_env("tls-token"))
        pinned = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "1",
                              "--remote-tls-fingerprint", fingerprint, env=remote_env("tls-token"))
        wrong_pin = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "1",
                                 "--remote-tls-fingerprint", "00" * 32, env=remote_env("tls-token"))
        plain = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "1",
                             env=remote_env("tls-token"))
        wait_until(lambda: "TLS failed" in service.log, "the service to log the plain-text master")
    assert by_ca.code == 0, by_ca.stderr
    assert by_ca.canonical() == local.canonical()
    assert pinned.code == 0 and pinned.canonical() == local.canonical()
    assert wrong_pin.code == 1 and "is not the pinned one" in wrong_pin.stderr
    assert plain.code == 1 and "unreachable" in plain.stderr


def test_tls_master_to_a_plain_port_fails_clearly(certificate):
    cert, _, _ = certificate
    with services(listen_args()) as (service,):
        run = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "1",
                           "--remote-tls-ca", str(cert), env=remote_env())
        wait_until(lambda: "not the evix remote protocol" in service.log, "the service to log the TLS hello")
        good = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "1",
                            env=remote_env())
    assert run.code == 1 and "unreachable" in run.stderr
    assert good.code == 0


def test_a_stalled_remote_is_dropped_and_its_attribute_taken_over(tmp_path: Path):
    """SIGSTOP on a service mid-batch: its connection goes silent; after the stall timeout the
    master requeues the batch on the other remote (and keeps trying the silent one)."""
    source, fifo = _slow_input(tmp_path)
    with services(listen_args(), listen_args()) as pair:
        proc = start_evix("eval", "--no-daemon", "--file", str(source), "--workers", "0", "--remote-stall-timeout", "2",
                          "--remote", pair[0].endpoint, "", "1", "--remote", pair[1].endpoint, "", "1",
                          env=remote_env())
        victim = None
        try:
            victim = wait_until(lambda: next((s for s in pair if _blocked_on_fifo(s)), None),
                                "a remote to evaluate the blocking attribute", timeout=60)
            survivor = pair[1] if victim is pair[0] else pair[0]
            os.kill(victim.process.pid, signal.SIGSTOP)
            wait_until(lambda: _blocked_on_fifo(survivor), "the other remote to take the attribute over", timeout=60)
            _open_gate(fifo).join(timeout=10)
            out, err = proc.communicate(timeout=120)
        finally:
            if victim is not None:
                os.kill(victim.process.pid, signal.SIGCONT)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    run = Run(proc.returncode, out, err.decode())
    assert run.code == 0, run.stderr
    assert "stopped answering (silent for 2 s)" in run.stderr
    assert "slow" in run.derivations() and not run.errors()


def test_a_silent_connection_is_closed_after_the_handshake_timeout():
    with services(listen_args(None, "--handshake-timeout", "1")) as (service,):
        host, port = service.endpoint.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.settimeout(20)
            assert s.recv(4096) == b""  # closed by the service, not by us
        wait_until(lambda: "no handshake within 1 s" in service.log, "the service to log the timeout")
        assert "WITHOUT A TOKEN" in service.log


def _blocked_evaluator(service: Service) -> int | None:
    for process in service.descendants():
        try:
            if Path(f"/proc/{process.pid}/wchan").read_text() == "wait_for_partner":
                return process.pid
        except OSError:
            continue
    return None


def test_an_evaluator_crash_on_the_remote_blames_its_attribute_only(tmp_path: Path):
    """As for a local worker: the remote says where its evaluator died; that attribute gets
    the error, a new evaluator on the same connection takes the rest."""
    source, fifo = _slow_input(tmp_path)
    with services(listen_args()) as (service,):
        proc = start_evix("eval", "--no-daemon", "--file", str(source), "--workers", "0",
                          "--remote", service.endpoint, "", "1", env=remote_env())
        try:
            pid = wait_until(lambda: _blocked_evaluator(service), "the remote evaluator to block", timeout=60)
            os.kill(pid, signal.SIGSEGV)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log = service.log
    run = Run(proc.returncode, out, err.decode())
    assert run.code == 0, run.stderr
    assert set(run.errors()) == {"slow"}
    assert "SIGSEGV" in run.errors()["slow"]["error"] and "on remote worker" in run.errors()["slow"]["error"]
    assert len(run.derivations()) == 30
    assert log.count("serving") == 1  # one connection, a new evaluator forked behind it


def test_the_per_item_timeout_holds_on_a_remote(tmp_path: Path):
    source, _ = _slow_input(tmp_path)
    with services(listen_args()) as (service,):
        run = eval_locally("--file", str(source), "--workers", "0", "--timeout", "1",
                           "--remote", service.endpoint, "", "1", env=remote_env())
    assert run.code == 0, run.stderr
    assert "timed out after 1 s" in run.errors()["slow"]["error"]
    assert len(run.derivations()) == 30


def test_the_memory_limit_holds_on_a_remote_and_its_retry_runs_in_a_fresh_evaluator(tmp_path: Path):
    """Past --max-memory the service's watchdog kills the evaluator (a death the service
    reports with its item); the master retries that item alone after a `reset fresh` on the
    same connection, and only then makes it an error."""
    source = tmp_path / "hog.nix"
    source.write_text('let mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; }; in '
                      '{ a = mk "a"; middle = mk "m-${toString (' + MEMORY_HOG + ')}"; z = mk "z"; }\n')
    with services(listen_args()) as (service,):
        run = eval_locally("--file", str(source), "--workers", "0", "--max-memory", "300",
                           "--remote", service.endpoint, "", "1", env=remote_env())
        log = service.log
    assert run.code == 0, run.stderr
    error = run.errors()["middle"]["error"]
    assert "memory limit of 300 MiB exceeded" in error and "also when evaluated alone" in error
    assert {"a", "z"} <= set(run.derivations())
    assert log.count("serving") == 1 and log.count("died") >= 2


@contextlib.contextmanager
def _master(*args: str, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """`evix eval --no-daemon ARGS` with the test token, killed at the end if it still runs."""
    proc = start_evix("eval", "--no-daemon", *args, env=remote_env(), **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


BROKEN_NIX = {"NIX_CONFIG": "cores = abc"}
"""A service environment whose evaluators cannot start: Nix refuses the setting at init (the
service itself loads no Nix, so it listens and accepts as usual)."""


def test_a_remote_whose_evaluator_cannot_start_retires_and_the_local_worker_does_the_run(tmp_path: Path):
    """The remote takes every connection and fails it; after a few in a row the master goes on
    without it (it used to stop the whole run, and a remote failing after Ready was retried
    for ever). The blocking attribute holds the run open until the master has given up."""
    source, fifo = _slow_input(tmp_path)
    gate = _open_gate(fifo)
    local = eval_locally("--file", str(source), "--workers", "1")
    gate.join(timeout=10)
    assert local.code == 0, local.stderr
    master_log = tmp_path / "master.log"
    with services(listen_args(), env=BROKEN_NIX) as (service,), master_log.open("wb") as err_file, \
            _master("--file", str(source), "--workers", "1", "--remote", service.endpoint, "", "1",
                    stderr=err_file) as proc:
        def gave_up() -> bool:
            assert proc.poll() is None, master_log.read_text()
            return "failed 3 times in a row" in master_log.read_text()
        wait_until(gave_up, "the master to retire the failing remote", timeout=90)
        _open_gate(fifo).join(timeout=10)
        out, _ = proc.communicate(timeout=120)
        log = service.log
    run = Run(proc.returncode, out, master_log.read_text())
    assert run.code == 0, run.stderr
    assert run.canonical() == local.canonical()
    warning = next(line for line in run.stderr.splitlines() if "failed 3 times in a row" in line)
    assert f"remote worker {service.endpoint}" in warning and "'cores' has invalid value 'abc'" in warning
    assert "going on without it" in warning
    assert log.count("cannot start an evaluator") == 3


def test_a_run_on_failing_remotes_only_ends_naming_them():
    with services(listen_args(), env=BROKEN_NIX) as (service,):
        run = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "2",
                           env=remote_env())
    assert run.code == 1
    assert "no worker left to evaluate on" in run.stderr
    assert f"remote worker {service.endpoint} failed 3 times in a row" in run.stderr
    assert "'cores' has invalid value 'abc'" in run.stderr


def _kill_templates(service: Service, stop: threading.Event) -> threading.Thread:
    """Kills each template process of `service` once its forked evaluator is blocked on the
    FIFO (so that evaluator was ready and took the batch), until `stop` is set: the evaluator
    dies with its template, through no fault of its own."""
    def kill() -> None:
        while not stop.wait(0.02):
            for process in service.descendants():
                with contextlib.suppress(psutil.Error, OSError):
                    if process.name() == TEMPLATE_NAME and any(
                            Path(f"/proc/{child.pid}/wchan").read_text() == "wait_for_partner"
                            for child in process.children()):
                        os.kill(process.pid, signal.SIGKILL)
    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_remote_whose_evaluators_die_after_ready_every_time_is_retired(tmp_path: Path):
    """Once only the blocking attribute is left, each evaluator of the remote (a new one after
    every death) is ready, takes it and dies with its template before finishing anything: after
    a few in a row the master gives up on that remote (it used to reset it for ever)."""
    source, _fifo = _slow_input(tmp_path)
    stop = threading.Event()
    with services(listen_args()) as (service,), \
            _master("--file", str(source), "--workers", "0", "--remote", service.endpoint, "", "1") as proc:
        wait_until(lambda: _blocked_on_fifo(service), "the remote to evaluate the blocking attribute", timeout=60)
        killer = _kill_templates(service, stop)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            stop.set()
            killer.join(timeout=10)
    run = Run(proc.returncode, out, err.decode())
    assert run.code == 1
    assert f"no worker left to evaluate on: remote worker {service.endpoint} failed 3 times in a row" in run.stderr
    assert len(run.derivations()) == 30  # all the others, evaluated before the remote failed
