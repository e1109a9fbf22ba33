"""What a results folder was made from (inputs.json), so that two image folders never mix in one.

Every run writes the record when it starts (the workflow's `onstart`); a run whose
images folder differs from the record stops before any job with a message saying
what the folder holds and how to go on (another results folder, or replacing the run).
The config digest is kept for a reader; a changed config is an ordinary re-run.
`tiledup run --force` replaces the run through REPLACE_ENV rather than by deleting the record
up front: a dry run (`-- -n`) or a run that stops before its start then leaves the record as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tiledup.run.errors import TiledupError
from tiledup.run.io import write_json

RECORD = "inputs.json"
DEMO = "built-in demo"
# Set to "1" by `tiledup run --force` in Snakemake's environment: the record is not checked, and the
# run's start writes the new one.
REPLACE_ENV = "TILEDUP_REPLACE_RUN"


def _folder(images: str) -> str:
    return os.path.abspath(images) if images else DEMO


def inputs_record(images: str, truth: str, config: dict) -> dict:
    """images folder (absolute path, or the built-in demo), truth file and a digest of the whole config."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"images": _folder(images), "truth": os.path.abspath(truth) if truth else "", "config_digest": digest}


def check_inputs(results_dir, images: str) -> None:
    """Stop when results_dir holds the run of another images folder (its inputs.json says which),
    unless this run replaces it (REPLACE_ENV)."""
    path = Path(results_dir) / RECORD
    if not path.exists() or os.environ.get(REPLACE_ENV) == "1":
        return
    try:
        recorded = json.loads(path.read_text())["images"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TiledupError(f"{path}: not a readable record of the inputs ({e}); delete it if the folder "
                           "holds no run you want to keep") from None
    if recorded != _folder(images):
        raise TiledupError(
            f"{results_dir} holds the results of another images folder ({recorded}), not {_folder(images)}: "
            f"give this run its own results folder (`tiledup run IMAGES --out DIR`, or config key `results`), "
            f"or replace that run (`tiledup run --force`, or delete {path})")


def write_inputs(results_dir, images: str, truth: str, config: dict) -> None:
    write_json(inputs_record(images, truth, config), Path(results_dir) / RECORD)
