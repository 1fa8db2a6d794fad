"""Giving memory back to the system after a client that made the daemon hold a lot leaves.

CPython frees big objects with `free`, but glibc keeps freed heap pages in its arenas for
reuse, so the RSS of a daemon that buffered a big stream stays high after it is gone.
`malloc_trim(0)` hands the free pages of every arena back. A collection first frees what
only reference cycles kept (the frames of a cancelled evaluation, held by its traceback).
"""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger("evix.daemon")

try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
    _malloc_trim.argtypes = (ctypes.c_size_t,)
    _malloc_trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def give_back() -> None:
    """Frees unreachable cycles and returns free heap pages to the system."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
