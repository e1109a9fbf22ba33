"""The DupNet shipped in the package, the start of training (config `train.pretrained`).

weights/dupnet.pt was trained by scripts/pretrain_dupnet.py on synthetic demo scenes of
other seeds and sizes than the default demo; weights/dupnet.json records how, and
docs/pretrained.md gives its figures. A DupNet trained from scratch on a small folder of
real chips misses plain duplicates (issue 17: 217 of 220 on 52 real chips); the shipped
one is the start, fine-tuned on the user's chips only when they give enough pairs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tiledup.model.dupnet import load_dupnet
from tiledup.run.errors import TiledupError

PACKAGED = Path(__file__).parent / "weights" / "dupnet.pt"


def pretrained_start(pretrained: str, model_cfg: dict) -> dict | None:
    """`train.pretrained` (packaged, none or a dupnet.pt path) -> None, or {path, digest, weights}."""
    if pretrained == "none":
        return None
    path = PACKAGED if pretrained == "packaged" else Path(pretrained)
    if pretrained == "packaged" and not path.exists():
        raise TiledupError(f"{path}: the packaged DupNet is missing from this installation; reinstall "
                           "tiledup, or set train.pretrained: none to train from scratch")
    net = load_dupnet(path, "cpu")
    if net.config != model_cfg:
        raise TiledupError(f"train.pretrained {pretrained!r} ({path}) has the shape {net.config}, but "
                           f"train.model asks for {model_cfg}: set train.pretrained: none to train that "
                           "shape from scratch, or give a model of that shape")
    return {"path": str(path), "digest": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
            "weights": {k: v.clone() for k, v in net.state_dict().items()}}
