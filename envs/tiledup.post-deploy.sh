#!/usr/bin/env bash
# Run by Snakemake once, inside the env it just created from tiledup.yaml (--sdm conda):
# installs the tiledup package, which provides the `tiledup` command every rule calls,
# from the repository (the working directory, or TILEDUP_SRC). Editable, so the jobs run
# the repository's code; the env's own packages satisfy the dependencies.
set -euo pipefail
src=${TILEDUP_SRC:-$PWD}
if ! grep -qs '^name = "tiledup"' "$src/pyproject.toml"; then
    echo "tiledup.post-deploy.sh: $src holds no tiledup pyproject.toml;" \
        "run snakemake from the repository root or set TILEDUP_SRC=/path/to/tiledup" >&2
    exit 1
fi
python -m pip install --quiet --no-deps --no-build-isolation -e "$src"
