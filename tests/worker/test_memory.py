"""The worker's malloc arena limit (`worker/memory.py`)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from poster_genres.worker.memory import limit_malloc_arenas

GLIBC = platform.libc_ver()[0] == "glibc"


def test_the_environment_s_own_setting_is_left_to_glibc() -> None:
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_on_glibc_the_limit_is_set_and_threads_still_allocate() -> None:
    # in a fresh process, as the worker does it: set first, then threads that allocate
    script = (
        "import threading, sys\n"
        "from worker.memory import limit_malloc_arenas\n"
        "assert limit_malloc_arenas({})\n"
        "def churn():\n"
        "    for _ in range(2000): bytearray(64 * 1024)\n"
        "threads = [threading.Thread(target=churn) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
