"""A worker never outlives its master: the kernel kills it when the master ends, however
the master ends (SIGKILL included), through Linux's PR_SET_PDEATHSIG.

`die_with_parent` runs in a freshly forked child, before it does anything else: as the
pre-exec step of a spawned worker (`evixd.worker_launch`), or right after `os.fork()` in a
process that forks workers from a template (whose own parent-death signal then chains:
master gone, template killed, its workers killed). The setting survives `exec`.

Two facts shape it. The signal comes when the *thread* that forked the child ends, not the
process: masters must start workers from their main thread (the trio thread), never from
`trio.to_thread`. And a parent that died between `fork` and `prctl` sends nothing: the
child checks that its parent is still the one that forked it, and kills itself if not.
Only the standard library: the CLI imports this before anything heavy.
"""

from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["die_with_parent", "set_process_name"]

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15

# Loaded in the parent, at import: a forked child should only call into libc, not dlopen it.
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int


def die_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """In a child just forked by `parent_pid`: have the kernel send `sig` to this process
    when the forking thread ends, and end now (by `sig`) if that parent is already gone."""
    if _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent_pid:  # re-parented already: the master died before the prctl
        os.kill(os.getpid(), sig)
        os._exit(128 + int(sig))  # only if `sig` is caught or ignored


def set_process_name(name: str) -> None:
    """The name `ps -o comm` and psutil show (at most 15 bytes): see environment.TEMPLATE_NAME."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _prctl(PR_SET_NAME, ctypes.addressof(buf), 0, 0, 0)
