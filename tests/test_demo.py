"""The built-in demo: determinism, chips, ids, dup_truth geometry and labels, and its difficulty."""

import itertools
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import simplejpeg

from tiledup.cli import main
from tiledup.demo import generate
from tiledup.demo.chips import hls_shift
from tiledup.demo.scene import BORDER_RGB
from tiledup.run.errors import TiledupError
from tiledup.grid import CHIP, TAGS, TILE, tag_tile_pairs
from tiledup.tiles.decode import cut_tiles, read_chip

from configured import demo_options

# Small but complete: 2 scenes (one overcast), 2 passes each, a border on every pass.
TINY = dict(scenes=2, scene_rows=5, scene_cols=5, passes_max=2, keep=0.8, border_share=1.0)


def run(folder, **options):
    return generate(folder / "images", folder / "dup_truth.txt", folder / "layout.parquet", **demo_options(**options))


def folder_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    counts = run(folder, **TINY)
    layout = pq.read_table(folder / "layout.parquet").to_pandas().set_index("image_id")
    lines = (folder / "dup_truth.txt").read_text().splitlines()
    tiles = {i: cut_tiles(read_chip(folder / "images" / i)) for i in layout.index}
    flats = {i: [flat(t) for t in chip_tiles] for i, chip_tiles in tiles.items()}
    return folder, counts, layout, lines, (tiles, flats)


def near(tiles, rgb, levels=3):
    """Share of (every 4th row and column) pixels within `levels` of `rgb`, per tile."""
    sub = tiles[..., ::4, ::4, :].astype(np.int16)
    return (np.abs(sub - np.asarray(rgb, np.int16)[..., None, None, :]).max(axis=-1) <= levels).mean(axis=(-2, -1))


def flat(tile):
    """Near-solid: 97 % of pixels within 3 levels of the median colour."""
    return near(tile, np.median(tile[::4, ::4].reshape(-1, 3), axis=0).astype(np.int16)) > 0.97


def overlap_tiles(chips, line):
    """(tile of img1, tile of img2, is_dup, flat1, flat2) for every tile pair of a truth line."""
    tiles, flats = chips
    a, b, tag, dup = line.split()
    return [(tiles[a][t1], tiles[b][t2], dup == "1", flats[a][t1], flats[b][t2]) for t1, t2 in tag_tile_pairs(tag)]


def test_same_options_give_byte_identical_output(demo, tmp_path):
    folder = demo[0]
    run(tmp_path, **TINY)
    assert folder_bytes(tmp_path) == folder_bytes(folder)
    run(tmp_path, **TINY)  # a rerun replaces the earlier demo folder
    assert folder_bytes(tmp_path) == folder_bytes(folder)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_another_seed_gives_other_chips(demo, tmp_path):
    run(tmp_path, **{**TINY, "seed": 1})
    assert set(folder_bytes(tmp_path / "images").values()).isdisjoint(folder_bytes(demo[0] / "images").values())


def test_ids_chips_and_layout(demo):
    folder, counts, layout, _, _ = demo
    files = sorted(p.name for p in (folder / "images").iterdir())
    assert files == sorted(layout.index) and len(files) == counts["chips"] >= 20
    assert all(re.fullmatch(r"[0-9a-f]{9}\.jpg", f) for f in files)
    schema = pq.read_schema(folder / "layout.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [
        ("image_id", "string"), ("scene", "int32"), ("pass", "int32"), ("row", "int32"), ("col", "int32"),
        ("kind", "string")]
    # one kind per scene, named from its parts
    assert (layout.groupby("scene")["kind"].nunique() == 1).all()
    assert all(re.fullmatch(r"(overcast )?(dark sea|bright water)( \+ coast)?", k) for k in layout["kind"])
    assert layout["row"].between(0, TINY["scene_rows"] - 3).all()
    assert layout["col"].between(0, TINY["scene_cols"] - 3).all()
    assert not layout.duplicated(["scene", "pass", "row", "col"]).any()
    assert (layout.groupby("scene")["pass"].nunique() >= 2).all()
    for f in files:
        data = (folder / "images" / f).read_bytes()
        assert simplejpeg.decode_jpeg_header(data)[:3] == (CHIP, CHIP, "YCbCr")
        assert simplejpeg.decode_jpeg(data).shape == (CHIP, CHIP, 3)


def test_truth_lines_are_well_formed_and_canonical(demo):
    _, counts, layout, lines, _ = demo
    assert lines == sorted(set(lines)) and len(lines) == counts["truth_lines"]
    for line in lines:
        a, b, tag, dup = line.split(" ")
        assert a < b and a in layout.index and b in layout.index
        assert tag in TAGS and dup in ("0", "1")
        assert (dup == "1") == (layout.loc[a, "pass"] == layout.loc[b, "pass"])
        assert layout.loc[a, "scene"] == layout.loc[b, "scene"]
    assert 0 < counts["dups"] < counts["truth_lines"]


def test_truth_recomputed_from_layout_pixel_windows(demo):
    """Every overlapping same-scene pair is listed, with the tag of its pixel overlap inside img1."""
    _, _, layout, lines, _ = demo
    expected = set()
    for (a, ra), (b, rb) in itertools.combinations(sorted(layout.iterrows()), 2):
        if ra.scene != rb.scene:
            continue
        # Pixel windows in scene coordinates; the overlap, in img1's own pixels.
        y0, y1 = max(ra.row, rb.row) * TILE, min(ra.row, rb.row) * TILE + CHIP
        x0, x1 = max(ra.col, rb.col) * TILE, min(ra.col, rb.col) * TILE + CHIP
        if y0 >= y1 or x0 >= x1:
            continue
        oy0, ox0 = y0 - ra.row * TILE, x0 - ra.col * TILE
        oy1, ox1 = y1 - 1 - ra.row * TILE, x1 - 1 - ra.col * TILE
        first, last = (oy0 // TILE) * 3 + ox0 // TILE, (oy1 // TILE) * 3 + ox1 // TILE
        expected.add(f"{a} {b} {first}{last} {int(ra['pass'] == rb['pass'])}")
    assert set(lines) == expected
    assert {line.split()[2] for line in lines} >= {"08", "05", "38", "02", "68"}  # full, half, corner


def test_tag_tile_pairs_show_the_same_scene_area(demo):
    """In same-pass overlaps, the tag's partner tile is the one of img2's 9 tiles that matches best."""
    _, _, _, lines, (tiles, _) = demo
    grey = {i: t.mean(axis=-1).reshape(9, -1) for i, t in tiles.items()}
    best = []
    for line in (line for line in lines if line.endswith(" 1")):
        a, b, tag, _ = line.split()
        for t1, t2 in tag_tile_pairs(tag):
            if grey[a][t1].std() < 1:  # flat: any tile matches
                continue
            corr = [np.corrcoef(grey[a][t1], g)[0, 1] if g.std() > 0 else -1 for g in grey[b]]
            best.append((int(np.argmax(corr)) == t2, corr[t2]))
    found, corr = np.array(best).T
    assert len(best) > 50 and found.all()
    assert np.median(corr) > 0.95


def test_same_pass_tiles_are_rarely_byte_identical(demo):
    _, _, _, lines, tiles = demo
    same = [np.array_equal(t1, t2) for line in lines if line.endswith(" 1")
            for t1, t2, _, f1, f2 in overlap_tiles(tiles, line) if not (f1 and f2)]
    assert len(same) > 50 and np.mean(same) < 0.2


def test_passes_differ_in_content_not_only_in_colour(demo):
    """A per-channel gain + offset explains a duplicate tile pair, never a different-pass pair."""
    _, _, _, lines, tiles = demo

    def residual(t1, t2):
        a, b = t1[::2, ::2].reshape(-1, 3).astype(np.float64), t2[::2, ::2].reshape(-1, 3).astype(np.float64)
        res = []
        for c in range(3):
            design = np.stack([a[:, c], np.ones(len(a))], axis=1)
            coef = np.linalg.lstsq(design, b[:, c], rcond=None)[0]
            res.append(np.abs(design @ coef - b[:, c]).mean())
        return max(res)

    scores = {True: [], False: []}
    for line in lines:
        for t1, t2, dup, f1, f2 in overlap_tiles(tiles, line):
            if not (f1 or f2):
                scores[dup].append(residual(t1, t2))
    dup, nondup = np.array(scores[True]), np.array(scores[False])
    assert len(dup) > 50 and len(nondup) > 50
    assert np.median(nondup) > 2 * np.median(dup)
    assert np.mean(nondup > np.percentile(dup, 50)) > 0.9


def test_non_duplicates_are_never_byte_identical_where_it_matters(demo):
    _, _, _, lines, tiles = demo
    for line in (line for line in lines if line.endswith(" 0")):
        for t1, t2, _, f1, _ in overlap_tiles(tiles, line):
            assert f1 or not np.array_equal(t1, t2), line


def test_solid_tiles_occur(demo):
    """Cloud white, black no-data and the blue border fill whole tiles, as in the real chips."""
    *_, (tiles, flats) = demo
    everything = np.concatenate(list(tiles.values()))
    for rgb in (255, 255, 255), (0, 0, 0), BORDER_RGB:
        assert (near(everything, rgb) > 0.97).sum() > 0, rgb
    assert np.mean([not f for chip_flats in flats.values() for f in chip_flats]) > 0.5


def test_calm_dark_sea_is_the_hard_case(demo):
    """Different passes of dark sea differ by a few levels only: no easier than a colour-shifted duplicate."""
    _, _, _, lines, tiles = demo
    mad = [np.abs(t1.astype(np.int16) - t2).mean() for line in lines if line.endswith(" 0")
           for t1, t2, _, f1, _ in overlap_tiles(tiles, line) if max(t1.mean(), t2.mean()) < 20 and not f1]
    assert len(mad) > 20 and np.median(mad) < 12


def test_hls_shift_size_on_real_chips(airbus_chips):
    """hls_level is about the mean abs diff of the shift on mid-tone real chips."""
    mids = [c for c in map(read_chip, airbus_chips) if 50 < c.mean() < 150]
    assert mids
    mad = [np.abs(hls_shift(c, np.random.default_rng(k), 12.0).astype(np.int16) - c).mean()
           for c in mids for k in range(5)]
    assert 8 < np.mean(mad) < 16


@pytest.mark.parametrize("options, words", [
    ({"sceens": 2}, "unknown demo option(s): sceens"),
    ({"scenes": "6"}, "`scenes` must be int"),
    ({"scenes": True}, "`scenes` must be int"),
    ({"keep": 1.5}, "`keep` = 1.5 is outside"),
    ({"passes_min": 3, "passes_max": 2}, "`passes_max` = 2 is outside"),
    ({"scene_rows": 2}, "`scene_rows` = 2 is outside"),
    ({"overcast_scenes": 3, "scenes": 2}, "`overcast_scenes` = 3 is outside"),
    ({"quality_min": 97, "quality_max": 95}, "`quality_max` = 95 is outside"),
])
def test_bad_options_are_clear_errors(tmp_path, options, words):
    with pytest.raises(TiledupError, match=re.escape(words)):
        run(tmp_path, **options)
    assert not (tmp_path / "images").exists()


def test_refuses_to_replace_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("mine")
    with pytest.raises(TiledupError, match="not an earlier demo"):
        run(tmp_path, **{**TINY, "scenes": 1, "overcast_scenes": 0, "scene_rows": 3, "scene_cols": 3})
    assert (tmp_path / "images" / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["images"]  # nothing written, no temporary left


def test_cli_reports_bad_option(tmp_path, caplog):
    code = main(["demo", "--images", str(tmp_path / "i"), "--truth", str(tmp_path / "t.txt"),
                 "--layout", str(tmp_path / "l.parquet"), "--options", '{"keep": -1}'])
    assert code == 2 and "`keep` = -1.0 is outside" in caplog.text


def test_chips_sets_the_number_of_scenes_and_keeps_the_scene_statistics():
    """demo.chips: N gives about N chips from scenes of the configured kind, the overcast share kept."""
    from tiledup.demo import _plan, scenes_for

    for n in (2_000, 20_000):
        scenes, overcast = scenes_for(n, 6, 1, 2, 3, 8, 8, 0.6)  # the config's defaults
        assert overcast == round(scenes / 6)
        plan = _plan(scenes, 2, 3, 8, 8, 0.6, seed=1)
        chips = sum(len(kept) for passes in plan for kept in passes)
        assert abs(chips - n) < 0.03 * n
        assert abs(np.mean([len(passes) for passes in plan]) - 2.5) < 1.5 / np.sqrt(scenes)  # 3 sd
    assert scenes_for(10, 6, 1, 2, 3, 8, 8, 0.6) == (1, 0)
