"""CPU time and memory of processes and their threads, from /proc."""

from __future__ import annotations

import os
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _stat_fields(path: Path) -> list[str]:
    return path.read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads, live or exited; not its
    children)."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) * TICK_S


def threads_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
    """Thread id -> (thread name, user + system CPU seconds) of each live thread."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = _stat_fields(task / "stat")
            name = (task / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) * TICK_S)
    return out


def status_kb(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and its live descendants (fetch processes of the worker, say)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            todo += map(int, Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of processes and their live descendants."""
    total = 0.0
    for pid in {p for root in pids for p in descendants(root)}:
        try:
            total += cpu_s(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def tree_kb(pids: list[int], key: str) -> int:
    """The sum of a `kB` field of /proc/<pid>/status over processes and their descendants."""
    total = 0
    for pid in {p for root in pids for p in descendants(root)}:
        try:
            total += status_kb(pid, key)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total
