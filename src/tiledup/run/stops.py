"""Clean stops: a stop signal ends a command and every process it started; so does its death.

A command stopped by SIGTERM (scancel, a SLURM time limit, Snakemake) or SIGINT
(Ctrl-C) first ends its worker processes (`end_children`), then raises
`Stopped` in its main thread instead of dying on the spot: `finally` blocks run
(tiledup.run.io's atomic writers drop their temporary files; pools and loaders find
their workers gone and do not wait for them) and the command exits with
128 + the signal number. A command killed outright (SIGKILL, the OOM killer)
runs no code at all, so each worker watches the command itself
(`watch_parent`) and exits within a second of its death.

Why the worker watches the command's pid rather than its own parent: DataLoader
workers are forked by a forkserver, not by the command, and the forkserver lives
as long as any worker holds its pipe; left alone, both outlive the command for
good (parent PID 1, each worker holding its memory).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Stopped(BaseException):
    """A stop signal arrived. BaseException, like KeyboardInterrupt: `except Exception` lets it pass."""

    def __init__(self, signum: int, ended: list[int]):
        super().__init__(signum)
        self.signum, self.ended = signum, ended  # ended: the worker pids stopped with the command

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


def _stop(signum, frame):
    # One stop is enough: a second signal must not interrupt the cleanup of the first.
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Stopped(signum, end_children())


@contextlib.contextmanager
def stop_on_signals():
    """Turn stop signals into end_children() + `Stopped` in this (main) thread, inside the block.

    A signal ignored when the command started (`nohup`, a shell's background job) stays ignored,
    as Python itself does for SIGINT.
    """
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s, handler in old.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, _stop)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            out[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), parents first."""
    if not Path("/proc/self/stat").exists():  # not Linux: the direct children we know of
        import multiprocessing

        return [p.pid for p in multiprocessing.active_children()]
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    """Running (a zombie, waiting to be reaped, counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ignores_sigterm(pid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


def end_children(grace: float = 3.0) -> list[int]:
    """Stop every descendant of this process: SIGTERM, then SIGKILL after `grace` seconds.

    A helper that ignores SIGTERM (multiprocessing's resource tracker) is left to end by
    itself, which it does as soon as this process has exited (it cleans up first).
    Returns the pids that were signalled.
    """
    pids = [p for p in descendants(os.getpid()) if not _ignores_sigterm(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        for p in pids:  # reap our own children, so they stop counting as alive
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(p, os.WNOHANG)
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for p in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return pids


def watch_parent(pid: int) -> None:
    """Call in a worker process: exit at once when process `pid` (the command) has ended.

    A daemon thread waits on a pidfd of `pid` (Linux >= 5.3; elsewhere it polls twice a
    second). On Linux the worker also asks for SIGKILL when its direct parent dies.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        fd = None
    threading.Thread(target=_exit_after, args=(pid, fd), name="tiledup-watch-parent", daemon=True).start()


def _exit_after(pid: int, fd: int | None) -> None:
    if fd is not None:
        select.select([fd], [], [])  # readable once the process has ended
    else:
        while alive(pid):
            time.sleep(0.5)
    os._exit(1)  # no cleanup: whatever this worker was doing belonged to the ended command
