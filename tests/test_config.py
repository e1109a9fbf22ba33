"""Config checks against the schema: one short line per mistake, naming the key path and what is allowed."""

from __future__ import annotations

import copy

import pytest
import yaml

from tiledup.run.config import ConfigError, check_config, config_errors, load_schema, schema_path

from workflow import REPO

SCHEMA = schema_path(REPO)


@pytest.fixture(scope="module")
def defaults():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def errors_of(defaults, edit):
    config = copy.deepcopy(defaults)
    edit(config)
    return config_errors(config, load_schema(SCHEMA))


def test_defaults_are_valid(defaults):
    assert config_errors(defaults, load_schema(SCHEMA)) == []
    check_config(defaults, SCHEMA)


def test_unknown_top_level_key_lists_the_allowed_keys(defaults):
    [line] = errors_of(defaults, lambda c: c.update(shard=3))
    allowed = ", ".join(sorted(load_schema(SCHEMA)["properties"]))  # demo, evaluate, images, ...
    assert line == f"unknown key `shard` (did you mean `shards`?); allowed keys at the top level: {allowed}"


def test_nested_typo_names_the_key_path_and_the_block_keys(defaults):
    [line] = errors_of(defaults, lambda c: c["train"]["model"].update(widht=32))
    allowed = sorted(load_schema(SCHEMA)["properties"]["train"]["properties"]["model"]["properties"])
    assert {"depth", "stem", "width"} <= set(allowed)
    assert line == ("unknown key `train.model.widht` (did you mean `train.model.width`?); allowed keys in "
                    f"`train.model`: {', '.join(allowed)}")


@pytest.mark.parametrize("block, key, value, expected", [
    ("train", "epochs", "five", "`train.epochs` must be an integer >= 1; got 'five' (text)"),
    ("demo", "keep", 2, "`demo.keep` must be a number in [0, 1]; got 2 (an integer)"),
    ("pairs", "balance", "rnk", "`pairs.balance` must be one of: rank, threshold, none; got 'rnk' (text)"),
    ("sample", "balance", "yes", "`sample.balance` must be true or false; got 'yes' (text)"),
    ("evaluate", "dupnet_threshold", "auto",
     "`evaluate.dupnet_threshold` must be a number in [0, 1] or 'val'; got 'auto' (text)"),
    ("tiles", "solid_share", 0, "`tiles.solid_share` must be a number in (0, 1]; got 0 (an integer)"),
])
def test_wrong_type_or_value_says_what_is_allowed(defaults, block, key, value, expected):
    assert errors_of(defaults, lambda c: c[block].update({key: value})) == [expected]


def test_a_block_given_as_a_value_and_list_items(defaults):
    assert errors_of(defaults, lambda c: c.update(tiles=3)) == ["`tiles` must be a block of keys; got 3 (an integer)"]
    assert errors_of(defaults, lambda c: c["train"]["augment"].update(jpeg_quality=[90])) == [
        "`train.augment.jpeg_quality` must be a list of 2 items, each an integer in [1, 100]; got [90] (a list)"]
    assert errors_of(defaults, lambda c: c.update(shards=True)) == [
        "`shards` must be an integer >= 1; got True (true/false)"]


def test_every_mistake_is_listed_in_one_short_error(defaults):
    config = copy.deepcopy(defaults)
    config.update(bogus=1)
    config["train"]["epochs"] = 0
    with pytest.raises(ConfigError) as e:
        check_config(config, SCHEMA)
    lines = str(e.value).splitlines()
    assert lines[0].startswith("invalid config") and "config/README.md" in lines[0]
    assert len(lines) == 3 and "`bogus`" in lines[1] and "`train.epochs` must be an integer >= 1; got 0" in lines[2]
