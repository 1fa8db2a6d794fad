"""A warming template is held to the growth of its RSS, not of its own memory: pages it
shares with a fork become its own when that fork ends, a growth it never allocated (and,
held to that, a template was killed as soon as a fork was recycled while it warmed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from evix_helpers import wait_until
from evixd.engine.memory_watch import MemoryWatch
from protocol.own_memory import read_uss

MIB = 1 << 20

# 200 MiB touched, then a fork that shares it all; the parent waits on stdin.
PARENT = """
import os, sys, time
block = bytearray(200 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
child = os.fork()
if child == 0:
    time.sleep(600)
    os._exit(0)
print(child, flush=True)
sys.stdin.read()
"""


def test_a_forks_end_grows_its_parents_own_memory_but_not_its_rss():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        watch = MemoryWatch(parent.pid)
        base_rss, base_uss = watch.rss(), read_uss(parent.pid)
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: read_uss(parent.pid) > base_uss + 150 * MIB, "the parent's USS to take the pages back")
        assert watch.grown_over(base_rss, 50 * MIB) is None  # RSS did not move
        assert watch.over(100 * MIB) is not None  # while its own memory is now past 200 MiB
    finally:
        parent.kill()
        parent.wait()
