"""Find a test's processes from /proc, by an environment variable every descendant inherits.

A worker whose parent has died is re-parented (to PID 1), so the process tree alone
cannot tell which processes a command left behind; its environment still can.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

TAG = "TILEDUP_TEST_TAG"


def tagged_env(**extra) -> tuple[str, dict]:
    """(tag, environment) for a command whose processes should be found later."""
    tag = uuid.uuid4().hex
    return tag, dict(os.environ, **{TAG: tag}, **extra)


def with_env(key: str, value: str) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every running process whose environment has key=value."""
    want = f"{key}={value}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if want not in (d / "environ").read_bytes().split(b"\0"):
                continue
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if stat[0] != "Z":
            out.append((int(d.name), int(stat[1]), cmd))
    return out


def tagged(tag: str) -> list[tuple[int, int, str]]:
    return with_env(TAG, tag)


def wait_until(predicate, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until predicate() held (polled every `step`), or None after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def catches(pid: int, signum: int) -> bool:
    """Has process `pid` installed a handler for signal `signum` (SigCgt in /proc/<pid>/status)?"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def kill_tagged(tag: str) -> list[tuple[int, int, str]]:
    """SIGKILL whatever a test left running (so a failing test does not leak processes)."""
    left = tagged(tag)
    for pid, _, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
