"""Fewer glibc malloc arenas for the worker: less memory for TensorFlow's many threads.

glibc gives each thread that meets a locked arena one of its own, up to 8 per core, and
memory freed in one arena is not reused by another. TensorFlow's thread pools allocate
and free a batch's tensors from many threads, so a worker's resident memory grows with
arenas it rarely reuses. Two arenas keep peak RSS lower at the same events/s
(docs/performance.md).

`MALLOC_ARENA_MAX` in the environment is glibc's own setting and is left to glibc; without
it, the worker sets the same limit with `mallopt` before TensorFlow starts its threads
(arenas are made when threads first contend, so the limit applies to them). Elsewhere than
on glibc this does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(environ: Mapping[str, str], arenas: int = ARENAS) -> bool:
    """Limit glibc's malloc arenas to `arenas` unless MALLOC_ARENA_MAX says otherwise.

    True when the limit was set here; False when the environment sets it, or this is not
    glibc.
    """
    if "MALLOC_ARENA_MAX" in environ:
        return False
    try:  # the process's own symbols: no library search (find_library runs ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_ARENA_MAX, arenas) == 1
