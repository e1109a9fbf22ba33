"""tiledup: find same-place, same-time duplicate tiles in grid-cut satellite chip datasets."""

__version__ = "0.1.0"
