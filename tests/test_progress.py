"""Progress lines: first and last line, time-based lines with count, rate and ETA, and the stages that log them."""

from __future__ import annotations

import logging
import re

import pytest

from tiledup.run import progress as progress_module
from tiledup.run.progress import Progress, duration, rate

from configured import options


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def lines(caplog):
    return [r.getMessage() for r in caplog.records]


def test_first_interval_and_last_lines_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    p = Progress("shard 003", total=1000, unit="images", interval=10, clock=clock)
    for _ in range(79):  # 79 images in 9.875 s: no interval has passed, no line
        clock.now += 0.125
        p.update()
    assert lines(caplog) == ["shard 003: started, 1,000 images"]
    clock.now += 0.125
    p.update()  # 80 images in 10 s: one line, 8 images/s, 920 left = 115 s
    assert lines(caplog)[-1] == "shard 003: 80/1,000 images (8 %), 8.0 images/s, ETA 1 min 55 s, 10 s so far"
    for _ in range(40):
        clock.now += 0.125
        p.update()
    assert len(lines(caplog)) == 2  # 5 s later: still inside the interval
    for _ in range(880):
        clock.now += 0.125
        p.update()
    # a line every 10 s; the 1,000th image (at 125 s) leaves its line to done()
    assert [int(re.match(r"shard 003: ([\d,]+)/", m).group(1)) for m in lines(caplog)[1:]] == \
        [80 * k for k in range(1, 13)]
    p.done()
    p.done()  # once only
    assert lines(caplog)[-1] == "shard 003: done, 1,000 images in 2 min 05 s (8.0 images/s)"
    assert len(lines(caplog)) == 14


def test_slow_items_give_seconds_per_item_and_interval_zero_logs_each_update(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    with Progress("training", total=5, unit="epochs", interval=0, clock=clock) as p:
        for _ in range(2):
            clock.now += 24
            p.update()
    assert lines(caplog)[1:3] == ["training: 1/5 epochs (20 %), 24.0 s per epoch, ETA 1 min 36 s, 24 s so far",
                                  "training: 2/5 epochs (40 %), 24.0 s per epoch, ETA 1 min 12 s, 48 s so far"]
    assert lines(caplog)[-1] == "training: done, 2 epochs in 48 s (24.0 s per epoch)"  # stopped early


def test_unknown_total_and_no_last_line_after_an_error(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    with pytest.raises(RuntimeError):
        with Progress("candidates", unit="tiles", interval=1, clock=clock) as p:
            clock.now += 2
            p.update(5000)
            raise RuntimeError("stop")
    assert lines(caplog) == ["candidates: started", "candidates: 5,000 tiles, 2,500.0 tiles/s, 2 s so far"]


def test_durations_and_rates():
    assert [duration(s) for s in (0, 42.4, 185, 7620)] == ["0 s", "42 s", "3 min 05 s", "2 h 07 min"]
    assert rate(0, 5, "pairs") == "- pairs/s" and rate(3, 1.5, "pairs") == "2.0 pairs/s"
    assert rate(2, 300, "tile pairs") == "2 min 30 s per tile pair" and rate(2, 90, "epochs") == "45.0 s per epoch"


def test_tile_shard_logs_progress(monkeypatch, caplog, airbus_chips, tmp_path):
    from tiledup.tiles.shard import tile_shard

    monkeypatch.setattr(progress_module, "INTERVAL", 0.0)  # a line per image
    listing = tmp_path / "007.txt"
    listing.write_text("\n".join(p.name for p in airbus_chips[:3]) + "\n")
    caplog.set_level(logging.INFO)
    tile_shard(airbus_chips[0].parent, listing, tmp_path / "t.parquet", tmp_path / "r.parquet", **options("tiles"))
    got = [m for m in lines(caplog) if m.startswith("shard 007:")]
    assert got[0] == "shard 007: started, 3 images"
    assert got[1].startswith("shard 007: 1/3 images (33 %), ") and "ETA" in got[1]
    assert got[-1].startswith("shard 007: done, 3 images in ") and len(got) == 4
