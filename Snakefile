# tiledup: find same-place, same-time duplicate tiles in grid-cut chip datasets.
# Wiring only: every rule calls one `tiledup` subcommand; the logic lives in src/tiledup.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/tiles.smk"
include: "workflow/rules/truth.smk"
include: "workflow/rules/pairs.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/discovery.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        all_targets(),
    default_target: True
