"""Atomic output: a file, or a set of files, replaced only when complete."""

from __future__ import annotations

import pytest

from tiledup.run.io import atomic_paths


def test_a_set_is_replaced_together_or_not_at_all(tmp_path):
    paths = [tmp_path / n for n in ("curves.png", "history.csv", "dupnet.pt")]
    for p in paths:
        p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_paths(*paths) as tmp:
            tmp[0].write_text("new")
            tmp[1].write_text("new")
            raise RuntimeError("killed before the last file")
    assert [p.read_text() for p in paths] == ["old"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporaries
    with atomic_paths(*paths) as tmp:
        for t in tmp:
            assert t.parent == tmp_path and t.name.startswith(".")
            t.write_text("new")
        assert [p.read_text() for p in paths] == ["old"] * 3  # nothing replaced before the end
    assert [p.read_text() for p in paths] == ["new"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
