"""Sampling and split: groups never straddle splits, balance, determinism, counts, bad input."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from test_pairs import synthetic_tiles, tiles_of_chips
from tiledup.cli import main
from tiledup.pairs.dataset import SPLITS, assign_splits, build_dataset, check_sample_config
from tiledup.run.errors import TiledupError
from tiledup.tiles.manifest import shard_of
from tiledup.pairs.shard import make_pairs

from configured import options

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def write_shards(pairs: pa.Table, folder, shards: int) -> list:
    """Spread a pair table over shard files by image, as the workflow does."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = pairs["image_id"].to_pylist()
    shard = np.array([shard_of(i, shards) for i in ids])
    paths = []
    for k in range(shards):
        path = folder / f"{k:03d}.parquet"
        pq.write_table(pairs.filter(pa.array(shard == k)), path)
        paths.append(path)
    return paths


def write_layout(pairs: pa.Table, path, scenes: int) -> dict:
    """A layout putting consecutive images into `scenes` scenes; returns image -> scene."""
    images = sorted(set(pairs["image_id"].to_pylist()))
    scene = {i: f"s{k * scenes // len(images)}" for k, i in enumerate(images)}
    pq.write_table(pa.table({"image_id": images, "scene": [scene[i] for i in images],
                             "pass": [0] * len(images), "row": [0] * len(images),
                             "col": [0] * len(images)}), path)
    return scene


@pytest.fixture(scope="module")
def synthetic_pairs() -> pa.Table:
    return make_pairs(synthetic_tiles(400, seed=21), **options("pairs"))[0]


@pytest.fixture(scope="module")
def real_pairs(airbus_chips, tmp_path_factory) -> pa.Table:
    return make_pairs(tiles_of_chips(airbus_chips, tmp_path_factory.mktemp("tiles")), **options("pairs"))[0]


def read_splits(out):
    return {s: pq.read_table(out / f"{s}.parquet").to_pandas() for s in SPLITS}


def check_split(out, available: pa.Table, key="image_id", groups=None):
    """Every pair comes from the input; a group's pairs all sit in one split; counts.json is right."""
    splits = read_splits(out)
    counts = json.loads((out / "counts.json").read_text())
    whole = available.to_pandas()
    seen = {}
    for s, df in splits.items():
        assert not df.duplicated(["image_id", "tile1", "tile2"]).any()
        merged = df.merge(whole, on=["image_id", "tile1", "tile2"], suffixes=("", "_in"))
        assert len(merged) == len(df) and (merged.is_dup == merged.is_dup_in).all()
        group = df.image_id.map(groups) if groups else df[key]
        for g in set(group):
            assert seen.setdefault(g, s) == s, f"{g} in {seen[g]} and {s}"
        assert counts[s] == {"pairs": len(df), "dups": int(df.is_dup.sum()),
                             "nondups": int((~df.is_dup).sum()), "images": df.image_id.nunique(), "groups": len(set(group))}
    return splits, counts


def test_split_by_image_is_disjoint_balanced_and_sized(tmp_path, synthetic_pairs):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 3)
    build_dataset(paths, None, tmp_path / "out", **options("sample", pairs=1000, seed=1, fractions=FRACTIONS))
    splits, counts = check_split(tmp_path / "out", synthetic_pairs)
    for s, df in splits.items():
        assert df.is_dup.sum() == (~df.is_dup).sum()
        assert abs(len(df) - 1000 * FRACTIONS[s]) <= 1
    assert counts["available"]["pairs"] == synthetic_pairs.num_rows and counts["warnings"] == []


def test_split_by_scene_keeps_scenes_whole(tmp_path, synthetic_pairs):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 2)
    scene = write_layout(synthetic_pairs, tmp_path / "layout.parquet", scenes=12)
    build_dataset(paths, tmp_path / "layout.parquet", tmp_path / "out", **options("sample", pairs=1000, group_by="scene", fractions=FRACTIONS))
    splits, counts = check_split(tmp_path / "out", synthetic_pairs, groups=scene)
    assert all(counts[s]["groups"] >= 1 for s in SPLITS)
    assert sum(counts[s]["groups"] for s in SPLITS) <= 12


def test_few_scenes_still_fill_every_split(tmp_path, synthetic_pairs):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 1)
    write_layout(synthetic_pairs, tmp_path / "layout.parquet", scenes=3)
    counts = build_dataset(paths, tmp_path / "layout.parquet", tmp_path / "out", **options("sample", pairs=300, group_by="scene", fractions=FRACTIONS))
    assert [counts[s]["groups"] for s in SPLITS] == [1, 1, 1]
    write_layout(synthetic_pairs, tmp_path / "layout.parquet", scenes=2)
    with pytest.raises(TiledupError, match="2 scene.*3 splits"):
        build_dataset(paths, tmp_path / "layout.parquet", tmp_path / "out2", **options("sample", pairs=300, group_by="scene", fractions=FRACTIONS))


def test_same_seed_gives_byte_identical_tables_whatever_the_sharding(tmp_path, synthetic_pairs):
    runs = {}
    for name, shards, seed in (("a", 1, 5), ("b", 4, 5), ("c", 4, 6)):
        paths = write_shards(synthetic_pairs, tmp_path / f"pairs{name}", shards)
        build_dataset(list(reversed(paths)), None, tmp_path / name, **options("sample", pairs=800, seed=seed))
        runs[name] = {f: (tmp_path / name / f).read_bytes() for f in
                      ("train.parquet", "val.parquet", "test.parquet", "counts.json")}
    assert runs["a"] == runs["b"]
    assert runs["a"]["train.parquet"] != runs["c"]["train.parquet"]


def test_sample_larger_than_available_uses_all_with_a_warning(tmp_path, synthetic_pairs, caplog):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 2)
    counts = build_dataset(paths, None, tmp_path / "out", **options("sample", pairs=10**6))
    got = sum(counts[s]["pairs"] for s in SPLITS)
    dups = int(pc.sum(synthetic_pairs["is_dup"]).as_py())
    assert got <= synthetic_pairs.num_rows and got >= 0.9 * min(dups, synthetic_pairs.num_rows - dups) * 2
    assert "1000000 asked" in caplog.text and counts["warnings"]
    unbalanced = build_dataset(paths, None, tmp_path / "all", **options("sample", pairs=10**6, balance=False))
    assert sum(unbalanced[s]["pairs"] for s in SPLITS) == synthetic_pairs.num_rows


def test_real_chips_end_to_end_through_the_cli(tmp_path, real_pairs):
    paths = write_shards(real_pairs, tmp_path / "pairs", 2)
    opts = json.dumps({"pairs": 200, "seed": 0, "balance": True, "group_by": "image",
                       "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}})
    assert main(["dataset", "--pairs", *map(str, paths), "--out-dir", str(tmp_path / "out"),
                 "--options", opts]) == 0
    splits, counts = check_split(tmp_path / "out", real_pairs)
    assert all(counts[s]["dups"] == counts[s]["nondups"] > 0 for s in SPLITS)


def test_the_pairs_split_is_the_plain_shuffle():
    # units go to train first only for the chip split (tiledup.discovery.groups.split_units); the
    # pairs' group split draws as it did before that, here scenes of 40 to 5 pairs (pinned outputs)
    sizes = np.array([40, 35, 30, 25, 20, 10, 5])
    drawn = [assign_splits(sizes, FRACTIONS, np.random.default_rng(seed), "scene").tolist() for seed in range(3)]
    assert drawn == [[0, 0, 1, 0, 2, 0, 0], [2, 0, 0, 0, 0, 1, 0], [0, 0, 2, 0, 0, 1, 1]]


def test_fractions_must_add_up():
    check_sample_config({"pairs": 10, "group_by": "image", "fractions": FRACTIONS})
    with pytest.raises(TiledupError, match="add up to 0.9"):
        check_sample_config({"fractions": {"train": 0.7, "val": 0.1, "test": 0.1}})
    with pytest.raises(TiledupError, match="exactly train, val, test"):
        check_sample_config({"fractions": {"train": 0.9, "val": 0.1}})
    with pytest.raises(TiledupError, match="train must be a number in"):
        check_sample_config({"fractions": {"train": 1.2, "val": 0.1, "test": -0.3}})
    with pytest.raises(TiledupError, match="scene needs the demo layout"):
        check_sample_config(options("sample", group_by="scene"), has_layout=False)


def test_bad_fractions_fail_before_writing(tmp_path, synthetic_pairs):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 1)
    with pytest.raises(TiledupError, match="add up"):
        build_dataset(paths, None, tmp_path / "out", **options("sample", fractions={"train": 0.5, "val": 0.1, "test": 0.1}))
    assert not (tmp_path / "out").exists()


def test_scene_without_layout_and_image_missing_from_layout(tmp_path, synthetic_pairs):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 1)
    with pytest.raises(TiledupError, match="layout"):
        build_dataset(paths, None, tmp_path / "out", **options("sample", group_by="scene"))
    first = synthetic_pairs["image_id"][0].as_py()
    others = synthetic_pairs.filter(pc.not_equal(synthetic_pairs["image_id"], first))
    write_layout(others, tmp_path / "layout.parquet", scenes=5)
    with pytest.raises(TiledupError, match=f"layout.parquet: 1 image.*{first}"):
        build_dataset(paths, tmp_path / "layout.parquet", tmp_path / "out", **options("sample", group_by="scene"))


def test_empty_shards_warn_and_all_empty_fails(tmp_path, synthetic_pairs, caplog):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 1)
    empty = tmp_path / "pairs" / "001.parquet"
    pq.write_table(synthetic_pairs.slice(0, 0), empty)
    build_dataset([*paths, empty], None, tmp_path / "out", **options("sample", pairs=100))
    assert f"{empty}: no pairs" in caplog.text
    with pytest.raises(TiledupError, match="no pairs in any of the 1"):
        build_dataset([empty], None, tmp_path / "out2", **options("sample"))


def test_image_in_two_shards_is_named(tmp_path, synthetic_pairs):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(synthetic_pairs.slice(0, 50), a)
    pq.write_table(synthetic_pairs.slice(40, 50), b)
    image = synthetic_pairs["image_id"][45].as_py()
    with pytest.raises(TiledupError, match=f"{image} in two shards"):
        build_dataset([a, b], None, tmp_path / "out", **options("sample"))


def test_one_class_split_warns_and_empty_split_fails(tmp_path, caplog):
    # Two images: one with dups only, one with both classes.
    pairs = pa.table({"image_id": ["a.jpg"] * 3 + ["b.jpg"] * 4,
                      "tile1": pa.array([0, 1, 2, 0, 0, 1, 3], pa.int8()),
                      "tile2": pa.array([0, 1, 2, 0, 1, 1, 5], pa.int8()),
                      "is_dup": [True, True, True, True, False, True, False],
                      "bmh_sim": pa.array([1, 1, 1, 1, 0.6, 1, 0.7], pa.float32())})
    path = tmp_path / "000.parquet"
    pq.write_table(pairs, path)
    fractions = {"train": 0.5, "val": 0.5, "test": 0.0}
    counts = build_dataset([path], None, tmp_path / "out", **options("sample", pairs=7, balance=False, fractions=fractions))
    assert counts["test"]["pairs"] == 0 and len(pq.read_table(tmp_path / "out" / "test.parquet")) == 0
    assert any("one class only" in w for w in counts["warnings"]) and "one class only" in caplog.text
    with pytest.raises(TiledupError, match="is empty.*one class missing"):
        build_dataset([path], None, tmp_path / "out2", **options("sample", pairs=7, balance=True, fractions=fractions))
    assert not (tmp_path / "out2").exists()  # nothing written when a split would be empty


def test_unknown_and_bad_options(tmp_path, synthetic_pairs):
    paths = write_shards(synthetic_pairs, tmp_path / "pairs", 1)
    with pytest.raises(TiledupError, match="unknown sample option.*size"):
        build_dataset(paths, None, tmp_path / "out", size=3, **options("sample"))
    with pytest.raises(TiledupError, match="sample.pairs"):
        build_dataset(paths, None, tmp_path / "out", **options("sample", pairs=0))
    with pytest.raises(TiledupError, match="seed"):
        build_dataset(paths, None, tmp_path / "out", **options("sample", seed=-1))


def test_one_real_chip_still_fills_every_split(tmp_path, real_pairs):
    """A folder with one usable chip (the rest rejected): its pairs are spread over the three splits,
    each class in each split, with a warning that the splits share that image."""
    one = real_pairs.filter(pc.equal(real_pairs["image_id"], real_pairs["image_id"][0]))
    path = tmp_path / "000.parquet"
    pq.write_table(one, path)
    counts = build_dataset([path], None, tmp_path / "out", **options("sample"))
    splits = read_splits(tmp_path / "out")
    assert all(counts[s]["dups"] == counts[s]["nondups"] > 0 for s in SPLITS)
    assert sum(len(df) for df in splits.values()) == sum(counts[s]["pairs"] for s in SPLITS)
    rows = pd.concat(splits.values())
    assert not rows.duplicated(["tile1", "tile2"]).any()  # no pair twice, though the image is in all three
    assert any("cannot fill the 3 splits" in w for w in counts["warnings"])
