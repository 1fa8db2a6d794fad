"""Two hosts: a master and a worker service each in its own network namespace, joined by a
veth pair, with addresses that exist only inside the namespaces (we are root here; without
`ip netns` this test cannot run and fails saying so)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from evix_helpers import FIXTURES, Run, command, eval_locally, evix_env
from remote_helpers import TOKEN, services


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    tag = f"evx{os.getpid() % 100000}"
    master, worker = f"{tag}-m", f"{tag}-w"
    _ip("netns", "add", master)
    try:
        _ip("netns", "add", worker)
        _ip("link", "add", f"{tag}a", "netns", master, "type", "veth", "peer", "name", f"{tag}b", "netns", worker)
        for ns, dev, addr in ((master, f"{tag}a", "10.231.7.1/24"), (worker, f"{tag}b", "10.231.7.2/24")):
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield master, worker
    finally:
        subprocess.run(["ip", "netns", "del", worker], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", master], capture_output=True, timeout=20)


def test_a_master_and_a_worker_on_two_network_hosts(two_hosts):
    master, worker = two_hosts
    jobs = FIXTURES / "jobs.nix"
    local = eval_locally("--file", str(jobs))
    args = ["--listen", "10.231.7.2:0", "-v", "--token", TOKEN]
    with services(args, prefix=["ip", "netns", "exec", worker]) as (service,):
        assert service.endpoint.startswith("10.231.7.2:")
        proc = subprocess.run(["ip", "netns", "exec", master, *command("evix"), "eval", "--no-daemon", "--file",
                               str(jobs), "--workers", "0", "--remote", service.endpoint, "", "2"],
                              capture_output=True, timeout=120, env=evix_env(extra={"EVIX_REMOTE_TOKEN": TOKEN}))
        run = Run(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))
    assert run.code == 0, run.stderr + service.log
    assert run.canonical() == local.canonical()
    assert "10.231.7.1:" in service.log  # the peer was the master's namespace address
