"""Dependencies: the runtime needs only the main OpenCV build, the torch floor is stated once
(pyproject.toml), and the conda env of the rules holds every runtime requirement."""

from __future__ import annotations

import ast
import re
import tomllib

import yaml

from workflow import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# PyPI name -> conda-forge name where they differ
CONDA_NAMES = {"xxhash": "python-xxhash", "torch": "pytorch", "matplotlib": "matplotlib-base"}


def name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_runtime_code_does_not_use_the_contrib_build():
    """cv2.img_hash is in opencv-contrib only, which the `test` extra alone installs."""
    uses = []
    for path in (REPO / "src" / "tiledup").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "img_hash"
                    and isinstance(node.value, ast.Name) and node.value.id == "cv2"):
                uses.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert uses == []
    runtime = {name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "opencv-python-headless" in runtime and "opencv-contrib-python-headless" not in runtime
    assert "opencv-contrib-python-headless" in {name(r) for r in extras["test"]}
    assert {"snakemake", "snakemake-executor-plugin-slurm"} <= {name(r) for r in extras["workflow"]}
    assert not runtime & {"snakemake", "snakemake-executor-plugin-slurm", "pytest"}


def test_the_torch_floor_is_stated_once():
    [torch] = [r for r in PYPROJECT["project"]["dependencies"] if name(r) == "torch"]
    assert re.fullmatch(r"torch>=\d+\.\d+", torch)
    env = yaml.safe_load((REPO / "envs" / "tiledup.yaml").read_text())["dependencies"]
    assert "pytorch" in env  # no version of its own: post-deploy checks pyproject's
    makefile = (REPO / "Makefile").read_text()
    assert not re.search(r"torch[<>=~!]=?\s*\d", makefile), "the Makefile restates a torch version"
    assert "pyproject.toml" in makefile and ".[workflow,test]" in makefile


def test_the_conda_env_holds_every_runtime_requirement():
    env = yaml.safe_load((REPO / "envs" / "tiledup.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    have = {name(d) for d in env if isinstance(d, str)} | {name(d) for d in pip}
    wanted = {CONDA_NAMES.get(name(r), name(r)) for r in PYPROJECT["project"]["dependencies"]}
    assert wanted - have == set()
