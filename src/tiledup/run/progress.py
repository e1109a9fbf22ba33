"""Progress lines for long steps: count, rate and ETA, logged at most every `interval` seconds.

A step logs a first line when it starts, a line whenever `interval` seconds
have passed since the last one, and a last line with the total time when it is
done. Lines go through `logging`, so a rule's log (results/logs/...) can be
followed with `tail -f` while Snakemake's console shows one line per finished
job. Usage::

    with Progress("shard 003", total=len(ids), unit="images", log=log) as progress:
        for image_id in ids:
            ...
            progress.update()

Time comes from a monotonic clock (injectable for tests); nothing is logged
between updates, so a step that stalls inside one item stays silent until it
moves again.
"""

from __future__ import annotations

import logging
import time

INTERVAL = 15.0  # seconds between lines: frequent enough to show life, rare enough to read


def duration(seconds: float) -> str:
    """Short human duration: 42 s, 3 min 05 s, 2 h 07 min."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def rate(count: float, seconds: float, unit: str) -> str:
    """`85.2 images/s`, or `12.0 s per epoch` / `3 min 30 s per epoch` when slower than one per second."""
    if count <= 0 or seconds <= 0:
        return f"- {unit}/s"
    per_second = count / seconds
    if per_second >= 1:
        return f"{per_second:,.1f} {unit}/s"
    each = seconds / count
    return (f"{each:.1f} s" if each < 60 else duration(each)) + f" per {unit[:-1] if unit.endswith('s') else unit}"


class Progress:
    """Counts the items of one step and logs `what: done/total unit (pct), rate, ETA` lines.

    `total` may be None (unknown): lines then show the count and rate only.
    `interval` defaults to INTERVAL; 0 logs every update (e.g. once per epoch).
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "items", *,
                 log: logging.Logger | None = None, interval: float | None = None, clock=time.monotonic):
        self.what, self.total, self.unit = what, total, unit
        self.log = log or logging.getLogger("tiledup.run.progress")
        self.interval = INTERVAL if interval is None else interval
        self.clock = clock
        self.count = 0
        self.start = self.last = clock()
        self.finished = False
        self.log.info("%s: started%s", what, f", {total:,} {unit}" if total is not None else "")

    def update(self, n: int = 1) -> None:
        """Count n more items; log a line if `interval` seconds passed since the last one."""
        self.count += n
        now = self.clock()
        if now - self.last >= self.interval and not (self.total is not None and self.count >= self.total):
            self.last = now
            self.log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        parts = [f"{self.what}: {self.count:,}"]
        if self.total:
            parts[0] += f"/{self.total:,} {self.unit} ({100 * self.count / self.total:.0f} %)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(rate(self.count, elapsed, self.unit))
        if self.total and 0 < self.count < self.total:
            parts.append(f"ETA {duration(elapsed * (self.total - self.count) / self.count)}")
        parts.append(f"{duration(elapsed)} so far")
        return ", ".join(parts)

    def done(self) -> None:
        """The last line: total count, time and rate (logged once)."""
        if self.finished:
            return
        self.finished = True
        elapsed = self.clock() - self.start
        self.log.info("%s: done, %s %s in %s (%s)", self.what, f"{self.count:,}", self.unit,
                      duration(elapsed), rate(self.count, elapsed, self.unit))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.done()
