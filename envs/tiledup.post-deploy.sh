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
# Every requirement of the package (pyproject.toml) met by the env, e.g. the torch floor.
python - <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, requires, version

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

bad = []
for req in map(Requirement, requires("tiledup")):
    if req.marker is not None:  # an extra (workflow, test): not needed to run the rules
        continue
    try:
        have = version(req.name)
    except PackageNotFoundError:
        bad.append(f"{req} (not installed)")
        continue
    if not req.specifier.contains(have, prereleases=True):
        bad.append(f"{req} (installed: {have})")
if bad:
    sys.exit("tiledup.post-deploy.sh: the env does not meet tiledup's requirements (pyproject.toml): "
             + "; ".join(bad))
EOF
