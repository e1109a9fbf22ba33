"""The config's defaults as the tests pass them: blocks of config/config.yaml, the one home of every default."""

from __future__ import annotations

from tiledup.run.config import defaults

CONFIG = defaults()


def options(block: str, **changes) -> dict:
    """A config block by its path ("tiles", "train.augment", ...) with some keys changed."""
    value = CONFIG
    for key in block.split("."):
        value = value[key]
    return {**value, **changes}


def solid_options(**changes) -> dict:
    """The `tiles` block as hash_tiles / tile_chip take it (without the thread count)."""
    return {k: v for k, v in options("tiles", **changes).items() if k != "workers"}


def demo_options(**changes) -> dict:
    """The `demo` block as tiledup.demo.generate takes it, rendering in this process unless told."""
    return options("demo", **{"workers": 1, **changes})
