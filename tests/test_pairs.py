"""Pair generation: canonical order, caps, the solid / equal-digest / near-solid rules, balancing, errors."""

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from tiledup.cli import main
from tiledup.run.errors import TiledupError
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.pairs.shard import PAIR_SCHEMA, make_pairs, pair_shard
from tiledup.tiles.shard import TILE_SCHEMA, tile_shard

from configured import options

def tiles_of_chips(paths, folder) -> pa.Table:
    """The tile stage's own table of some real chips."""
    (folder / "list.txt").write_text("".join(f"{p.name}\n" for p in paths))
    return tile_shard(paths[0].parent, folder / "list.txt", folder / "tiles.parquet", folder / "rejects.parquet", **options("tiles"))[0]


def sharp_tile_table(paths) -> pa.Table:
    """Tile table of real chips computed here, with a sharper dominant_share than the tile stage's.

    dominant_share counts pixels within 1 level (every channel) of the per-channel median,
    solid = at least 99.9 % of them. The tile stage counts within 3 levels and calls a tile
    solid from 99 %, which leaves no near-solid pair on the sample chips; this band leaves
    some, so the near-solid rule can be checked against the seed's pixel rule.
    """
    cols = {name: [] for name in TILE_SCHEMA.names}
    for path in sorted(paths):
        tiles = cut_tiles(read_chip(path))
        for t, tile in enumerate(tiles):
            tile = np.ascontiguousarray(tile)
            flat = tile.reshape(-1, 3).astype(np.int16)
            dominant = np.median(flat, axis=0).astype(np.uint8)
            share = float((np.abs(flat - dominant).max(1) <= 1).mean())
            grey = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY)
            hist = np.bincount(grey.ravel(), minlength=256) / grey.size
            cols["image_id"].append(path.name)
            cols["tile"].append(t)
            cols["xxh3_128"].append(xxhash.xxh3_128_digest(tile.tobytes()))
            cols["bmh"].append(cv2.img_hash.blockMeanHash(tile[:, :, ::-1].copy(), mode=0).tobytes())
            cols["bmh96"].append(b"".join(cv2.img_hash.blockMeanHash(np.ascontiguousarray(tile[:, :, c]),
                                                                     mode=0).tobytes() for c in range(3)))
            cols["solid"].append(share >= 0.999)
            for c, name in enumerate(("r_mean", "g_mean", "b_mean")):
                cols[name].append(float(flat[:, c].mean()))
            cols["grey_std"].append(float(grey.std()))
            cols["entropy"].append(float(-(hist[hist > 0] * np.log2(hist[hist > 0])).sum()))
            cols["dominant"].append(dominant.tobytes())
            cols["dominant_share"].append(share)
            cols["flat_sig"].append(bytes(1024))  # not read by the pair stage
    return pa.table(cols, schema=TILE_SCHEMA)


def synthetic_tiles(n_images: int, seed: int = 0, solid_rate: float = 0.05,
                    same_digest_rate: float = 0.02) -> pa.Table:
    """A random tile table with the contract's schema: some solid tiles, some repeated digests."""
    rng = np.random.default_rng(seed)
    rows = n_images * 9
    digest = rng.integers(0, 256, (rows, 16), dtype=np.uint8)
    copy = np.flatnonzero(rng.random(rows) < same_digest_rate)
    copy = copy[copy % 9 != 0]
    digest[copy] = digest[copy - 1]  # the previous tile of the same image
    dominant = rng.integers(0, 256, (rows, 3), dtype=np.uint8)
    return pa.table({
        "image_id": [f"{k:09x}.jpg" for k in range(n_images) for _ in range(9)],
        "tile": np.tile(np.arange(9, dtype=np.int8), n_images),
        "xxh3_128": pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), rows, [None, pa.py_buffer(digest)]),
        "bmh": _binary(rng.integers(0, 256, (rows, 32), dtype=np.uint8)),
        "bmh96": _binary(rng.integers(0, 256, (rows, 96), dtype=np.uint8)),
        "solid": rng.random(rows) < solid_rate,
        "r_mean": np.zeros(rows, np.float32), "g_mean": np.zeros(rows, np.float32),
        "b_mean": np.zeros(rows, np.float32), "grey_std": np.zeros(rows, np.float32),
        "entropy": np.zeros(rows, np.float32),
        "dominant": _binary(dominant),
        "dominant_share": rng.random(rows).astype(np.float32) * 0.9,
        "flat_sig": _binary(np.zeros((rows, 1024), np.uint8)),
    }, schema=TILE_SCHEMA)


def _binary(a: np.ndarray) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(a.shape[1]), len(a),
                                                [None, pa.py_buffer(np.ascontiguousarray(a))])


def with_column(table: pa.Table, name: str, values) -> pa.Table:
    field = table.schema.field(name)
    return table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))


@pytest.fixture(scope="module")
def real_tiles(airbus_chips, tmp_path_factory) -> pa.Table:
    return tiles_of_chips(airbus_chips, tmp_path_factory.mktemp("tiles"))


@pytest.fixture(scope="module")
def sharp_tiles(airbus_chips) -> pa.Table:
    return sharp_tile_table(airbus_chips)


def check_invariants(pairs: pa.Table, tiles: pa.Table) -> None:
    """What every pair table must satisfy against the tile table it was built from."""
    assert pairs.schema.equals(PAIR_SCHEMA)
    df = pairs.to_pandas()
    tdf = tiles.to_pandas().set_index(["image_id", "tile"])
    assert (df.tile1 <= df.tile2).all()
    assert (df.is_dup == (df.tile1 == df.tile2)).all()
    assert not df.duplicated(["image_id", "tile1", "tile2"]).any()
    per_image = df.groupby("image_id").is_dup.agg(["sum", "size"])
    assert (per_image["sum"] <= 9).all() and ((per_image["size"] - per_image["sum"]) <= 36).all()
    t1 = tdf.loc[list(zip(df.image_id, df.tile1))]
    t2 = tdf.loc[list(zip(df.image_id, df.tile2))]
    assert not t1.solid.to_numpy().any() and not t2.solid.to_numpy().any()
    nondup = ~df.is_dup.to_numpy()
    assert not (t1.xxh3_128.to_numpy()[nondup] == t2.xxh3_128.to_numpy()[nondup]).any()
    # bmh_sim is 1 - hamming / 256, recomputed bit by bit.
    b1 = np.frombuffer(b"".join(t1.bmh), np.uint8).reshape(-1, 32)
    b2 = np.frombuffer(b"".join(t2.bmh), np.uint8).reshape(-1, 32)
    ham = np.unpackbits(b1 ^ b2, axis=1).sum(1)
    np.testing.assert_array_equal(df.bmh_sim.to_numpy(), (1 - ham / 256).astype(np.float32))
    c1 = np.frombuffer(b"".join(t1.bmh96), np.uint8).reshape(-1, 96)
    c2 = np.frombuffer(b"".join(t2.bmh96), np.uint8).reshape(-1, 96)
    np.testing.assert_allclose(df.bmh96_sim, 1 - np.unpackbits(c1 ^ c2, axis=1).sum(1) / 768, atol=1e-6)
    # Sorted by image, then canonical (tile1, tile2).
    assert df[["image_id", "tile1", "tile2"]].equals(
        df.sort_values(["image_id", "tile1", "tile2"])[["image_id", "tile1", "tile2"]])


@pytest.mark.parametrize("balance", ["rank", "threshold", "none"])
def test_invariants_on_a_synthetic_table(balance):
    tiles = synthetic_tiles(300, seed=1)
    pairs, stats = make_pairs(tiles, **options("pairs", balance=balance, min_bmh_sim=0.5))
    check_invariants(pairs, tiles)
    assert stats["candidates"] == 300 * 45
    assert stats["solid"] > 0 and stats["same_digest"] > 0
    assert stats["dups"] + stats["nondups"] == pairs.num_rows


def test_invariants_on_real_chips(real_tiles, sharp_tiles):
    for tiles in (real_tiles, sharp_tiles):
        for balance in ("rank", "none"):
            pairs, _ = make_pairs(tiles, **options("pairs", balance=balance))
            check_invariants(pairs, tiles)
            assert pairs.num_rows > 0


def test_all_45_candidates_of_a_clean_image():
    """No solid tile, distinct digests, no near-solid tiles, no balancing: 9 + 36 pairs."""
    tiles = synthetic_tiles(5, seed=2, solid_rate=0, same_digest_rate=0)
    pairs, _ = make_pairs(tiles, **options("pairs", balance="none"))
    df = pairs.to_pandas()
    assert len(df) == 5 * 45
    assert (df.groupby("image_id").is_dup.sum() == 9).all()
    assert set(zip(df.tile1[:45], df.tile2[:45])) == {(i, j) for i in range(9) for j in range(i, 9)}


def test_solid_tiles_never_pair():
    tiles = synthetic_tiles(2, seed=3, solid_rate=0, same_digest_rate=0)
    solid = np.zeros(18, bool)
    solid[[4, 9 + 0, 9 + 8]] = True
    pairs, stats = make_pairs(with_column(tiles, "solid", solid), **options("pairs", balance="none"))
    df = pairs.to_pandas()
    first = df[df.image_id == df.image_id.iloc[0]]
    assert len(first) == 8 + 28 and not ((first.tile1 == 4) | (first.tile2 == 4)).any()
    assert len(df) - len(first) == 7 + 21
    assert stats["solid"] == 90 - 36 - 28


def test_equal_digest_drops_only_the_nondup_pair():
    tiles = synthetic_tiles(1, seed=4, solid_rate=0, same_digest_rate=0)
    digest = list(tiles["xxh3_128"].to_pylist())
    digest[5] = digest[2]
    pairs, stats = make_pairs(with_column(tiles, "xxh3_128", digest), **options("pairs", balance="none"))
    got = set(zip(pairs["tile1"].to_pylist(), pairs["tile2"].to_pylist()))
    assert (2, 5) not in got and (2, 2) in got and (5, 5) in got
    assert len(got) == 44 and stats["same_digest"] == 1


def test_near_solid_rule():
    """Dominant colours within near_solid_tol levels and share1 + share2 - 1 >= near_solid_share:
    the i != j pair goes."""
    tiles = synthetic_tiles(1, seed=5, solid_rate=0, same_digest_rate=0)
    share = np.full(9, 0.5, np.float32)
    share[[0, 1, 2, 3]] = [0.99, 0.985, 0.99, 0.96]
    dominant = [bytes([10, 60, 120])] * 9
    dominant[1] = bytes([12, 58, 121])  # within 4 levels of tile 0's colour
    dominant[2] = bytes([10, 60, 140])  # another colour
    tiles = with_column(with_column(tiles, "dominant_share", share), "dominant", dominant)
    pairs, stats = make_pairs(tiles, **options("pairs", balance="none", near_solid_share=0.97, near_solid_tol=4))
    got = set(zip(pairs["tile1"].to_pylist(), pairs["tile2"].to_pylist()))
    assert (0, 1) not in got and (0, 0) in got and (1, 1) in got
    assert {(0, 2), (1, 2), (0, 3), (1, 3)} <= got
    assert stats["near_solid"] == 1
    stricter, _ = make_pairs(tiles, **options("pairs", balance="none", near_solid_share=0.98, near_solid_tol=4))
    assert stricter.num_rows == 45
    closer, _ = make_pairs(tiles, **options("pairs", balance="none", near_solid_share=0.97, near_solid_tol=1))
    assert closer.num_rows == 45


def test_rank_balance_keeps_the_most_similar_nondups():
    tiles = synthetic_tiles(200, seed=6)
    everything = make_pairs(tiles, **options("pairs", balance="none"))[0].to_pandas()
    for ratio in (1.0, 0.5, 2.0):
        kept = make_pairs(tiles, **options("pairs", balance="rank", nondup_per_dup=ratio))[0].to_pandas()
        key = ["image_id", "tile1", "tile2"]
        assert kept[kept.is_dup][key].values.tolist() == everything[everything.is_dup][key].values.tolist()
        for image, group in everything.groupby("image_id"):
            dups = int(group.is_dup.sum())
            candidates = group[~group.is_dup]
            chosen = kept[(kept.image_id == image) & ~kept.is_dup]
            assert len(chosen) == min(len(candidates), int(np.floor(ratio * dups + 0.5)))
            dropped = candidates[~candidates.set_index(["tile1", "tile2"]).index.isin(
                chosen.set_index(["tile1", "tile2"]).index)]
            if len(chosen) and len(dropped):
                assert chosen.bmh_sim.min() >= dropped.bmh_sim.max()


def test_threshold_balance_drops_dissimilar_nondups():
    tiles = synthetic_tiles(100, seed=7)
    pairs, stats = make_pairs(tiles, **options("pairs", balance="threshold", min_bmh_sim=0.52))
    df = pairs.to_pandas()
    assert (df[~df.is_dup].bmh_sim >= 0.52).all() and stats["balance"] > 0
    everything = make_pairs(tiles, **options("pairs", balance="none"))[0].to_pandas()
    assert len(df[~df.is_dup]) == int((everything[~everything.is_dup].bmh_sim >= 0.52).sum())


def test_real_chips_solid_and_border_images(real_tiles):
    pairs, stats = make_pairs(real_tiles, **options("pairs", balance="none"))
    df = pairs.to_pandas()
    solid = real_tiles.to_pandas().groupby("image_id").solid.sum()
    # Every image with a usable tile yields pairs, an all-solid one (73fec0637: white) none.
    assert set(df.image_id) == set(solid[solid < 9].index) and "73fec0637.jpg" not in set(df.image_id)
    # The blue band of 5a70ef013 (tiles 6-8) never pairs.
    border = df[df.image_id == "5a70ef013.jpg"]
    assert len(border) and not border.tile1.isin([6, 7, 8]).any() and not border.tile2.isin([6, 7, 8]).any()
    assert stats["solid"] > 0


def test_default_rank_gives_balanced_classes_on_real_chips(real_tiles):
    pairs, stats = make_pairs(real_tiles, **options("pairs"))
    assert 0.9 <= stats["nondups"] / stats["dups"] <= 1.0


@pytest.mark.parametrize("table", ["real_tiles", "sharp_tiles"])
def test_near_solid_approximation_against_the_seed_pixel_rule(airbus_chips, table, request):
    """Where the pair stage drops a pair as near-solid, the seed's pixel rule
    (absolute difference image more than 97 % one value) drops it too."""
    tiles = request.getfixturevalue(table)
    kept = make_pairs(tiles, **options("pairs", balance="none"))[0].to_pandas()
    no_ns = make_pairs(tiles, **options("pairs", balance="none", near_solid_share=2.0))[0].to_pandas()
    key = ["image_id", "tile1", "tile2"]
    dropped = no_ns.merge(kept[key], on=key, how="left", indicator=True)
    dropped = dropped[dropped["_merge"] == "left_only"]
    if table == "sharp_tiles":
        assert len(dropped) > 0
    by_name = {p.name: p for p in airbus_chips}
    seed_drops = 0
    for image, group in dropped.groupby("image_id"):
        tiles = cut_tiles(read_chip(by_name[image])).astype(np.int16)
        for t1, t2 in zip(group.tile1, group.tile2):
            diff = np.abs(tiles[t1] - tiles[t2]).ravel()
            seed_drops += np.bincount(diff).max() / diff.size > 0.97
    assert seed_drops == len(dropped)


def test_pair_shard_writes_parquet_and_is_deterministic(tmp_path):
    tiles = synthetic_tiles(50, seed=8)
    pq.write_table(tiles, tmp_path / "000.parquet")
    pair_shard(tmp_path / "000.parquet", tmp_path / "a.parquet", **options("pairs"))
    assert main(["pairs", "--tiles", str(tmp_path / "000.parquet"), "--out", str(tmp_path / "b.parquet"),
                 "--options", "{}"]) == 0
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pq.read_table(tmp_path / "a.parquet").schema.equals(PAIR_SCHEMA)


def test_unsorted_tile_table_gives_the_same_pairs():
    tiles = synthetic_tiles(20, seed=9)
    shuffled = tiles.take(np.random.default_rng(0).permutation(tiles.num_rows))
    assert make_pairs(shuffled, **options("pairs"))[0].equals(make_pairs(tiles, **options("pairs"))[0])


def test_empty_tile_table_gives_empty_pairs(tmp_path, caplog):
    pq.write_table(synthetic_tiles(0), tmp_path / "t.parquet")
    out = pair_shard(tmp_path / "t.parquet", tmp_path / "p.parquet", **options("pairs"))
    assert out.num_rows == 0 and pq.read_table(tmp_path / "p.parquet").schema.equals(PAIR_SCHEMA)
    assert "no images" in caplog.text


def test_image_with_missing_tile_is_named():
    tiles = synthetic_tiles(3, seed=10)
    broken = tiles.filter(pa.array(np.arange(27) != 13))  # image 1 loses tile 4
    with pytest.raises(TiledupError, match=r"t\.parquet.*000000001\.jpg"):
        make_pairs(broken, source="t.parquet", **options("pairs"))


def test_duplicated_tile_row_is_named():
    tiles = synthetic_tiles(2, seed=11)
    doubled = pa.concat_tables([tiles, tiles.slice(9, 1)])
    with pytest.raises(TiledupError, match="000000001.jpg"):
        make_pairs(doubled, **options("pairs"))


def test_missing_column_and_bad_width_are_named(tmp_path):
    tiles = synthetic_tiles(2, seed=12)
    pq.write_table(tiles.drop_columns(["bmh96"]), tmp_path / "t.parquet")
    with pytest.raises(TiledupError, match=r"t\.parquet.*bmh96"):
        pair_shard(tmp_path / "t.parquet", tmp_path / "p.parquet", **options("pairs"))
    narrow = tiles.set_column(3, "bmh", pa.array([b"x" * 8] * 18, pa.binary(8)))
    with pytest.raises(TiledupError, match=r"bmh .*fixed_size_binary\(32\)"):
        make_pairs(narrow, **options("pairs"))
    assert not (tmp_path / "p.parquet").exists()


def test_missing_file_and_unknown_balance_are_clear_errors(tmp_path):
    with pytest.raises(TiledupError, match="absent.parquet"):
        pair_shard(tmp_path / "absent.parquet", tmp_path / "p.parquet", **options("pairs"))
    with pytest.raises(TiledupError, match="balance"):
        make_pairs(synthetic_tiles(1), **options("pairs", balance="global"))
    with pytest.raises(TiledupError, match="nondup_per_dup"):
        make_pairs(synthetic_tiles(1), **options("pairs", nondup_per_dup=-1))
    with pytest.raises(TiledupError, match="unknown pairs option.*ratio"):
        pair_shard(tmp_path / "absent.parquet", tmp_path / "p.parquet", ratio=2, **options("pairs"))
