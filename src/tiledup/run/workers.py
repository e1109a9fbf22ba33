"""Worker processes of one command: one core each, gone when the command ends.

The parallelism is across the workers, so each keeps OpenCV (and PyTorch, once
loaded) to one thread: more would only take the cores the other workers use.
Spawned, not forked: the command may hold OpenCV or PyTorch threads, which a
fork copies in an unknown state. Each worker watches the command's pid
(tiledup.run.stops.watch_parent), so a killed command leaves none behind.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import cv2

from tiledup.run.stops import watch_parent


def one_core(command_pid: int) -> None:
    """In a worker: exit when the command ends; one OpenCV thread, one PyTorch thread if it is loaded."""
    watch_parent(command_pid)
    _one_thread()


def _one_thread() -> None:
    cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _start(command_pid: int, initializer, initargs) -> None:
    watch_parent(command_pid)  # first: a slow initializer must not outlive a killed command
    if initializer is not None:
        initializer(*initargs)
    _one_thread()  # after the initializer, which may load PyTorch


def process_pool(workers: int, initializer=None, initargs=()) -> ProcessPoolExecutor:
    """A pool of `workers` spawned one-core processes, each first running initializer(*initargs)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start, initargs=(os.getpid(), initializer, initargs))
