"""The DupNet shipped in the package: it loads, decides tests/data's plain real duplicates, and
training keeps it unless fine-tuning on enough pairs beats it on the validation table."""

import json

import pytest
import torch

from tiledup.discovery.compare import compare
from tiledup.model.dupnet import load_dupnet
from tiledup.model.pretrained import PACKAGED
from tiledup.model.train import CHOICE, train
from tiledup.run.errors import TiledupError

from configured import options
from test_train import TINY, tables  # noqa: F401 (tables: the real-chip dataset fixture)

# Real chips of tests/data that overlap with pixels equal up to JPEG noise (/work/shared/data/README.md),
# with the overlap tag where they do (image 2's place in image 1).
PLAIN_DUPLICATES = [("908f11dd6", "c5d9bc753", "02"), ("4add7aa1d", "8ce769141", "05"),
                    ("770c46cd4", "c2955cd21", "25")]
FINETUNE = {k: v for k, v in TINY.items() if k not in ("model", "pretrained")}


def _same_weights(path_a, path_b) -> bool:
    a, b = (load_dupnet(p, "cpu").state_dict() for p in (path_a, path_b))
    return all(torch.equal(a[k], b[k]) for k in a)


def test_packaged_weights_load_and_are_small():
    model = load_dupnet(PACKAGED, "cpu")
    assert model.config["width"] == 16 and model.config["depth"] == 3
    assert PACKAGED.stat().st_size < 1_000_000
    record = json.loads((PACKAGED.parent / "dupnet.json").read_text())
    assert all(d["seed"] != 0 for d in record["demos"]), "the default demo (seed 0) is never training data"


@pytest.mark.parametrize("image1, image2, tag", PLAIN_DUPLICATES)
def test_packaged_model_decides_the_plain_real_duplicates(real_data, image1, image2, tag):
    """Scored as verify and the evaluation score overlaps (tiledup.scoring.overlaps, via compare):
    the overlap where the chips agree is a duplicate, and no other offset of the two chips is."""
    images = real_data / "airbus_samples"
    verify = options("verify")
    scored, _ = compare(images / f"{image1}.jpg", images / f"{image2}.jpg", PACKAGED, device="cpu",
                        batch_size=verify["batch_size"], threshold=verify["dupnet_threshold"],
                        tiles=options("tiles"), evidence=options("evidence"))
    decided = scored[scored.is_dup]
    assert list(decided.tag) == [tag], f"{image1} x {image2}:\n{scored}"


def test_too_few_pairs_keep_the_pretrained_model(tables, real_data, tmp_path):
    best = train(*tables, real_data / "airbus_samples", tmp_path, workers=0,
                 **options("train", epochs=2, min_pairs_finetune=10_000, **FINETUNE))
    choice = json.loads((tmp_path / CHOICE).read_text())
    assert choice["model"] == "pretrained" and "fewer than train.min_pairs_finetune" in choice["why"]
    assert choice["val"]["fine-tuned"] is None and best["epoch"] == 0
    assert choice["val"]["pretrained"]["val_loss"] == pytest.approx(best["val_loss"])
    assert _same_weights(tmp_path / "dupnet.pt", PACKAGED)
    assert not (tmp_path / "resume.pt").exists()  # nothing was trained


def test_fine_tuned_model_is_kept_only_when_its_validation_loss_is_lower(tables, real_data, tmp_path):
    train(*tables, real_data / "airbus_samples", tmp_path, workers=0,
          **options("train", epochs=2, min_pairs_finetune=0, **FINETUNE))
    choice = json.loads((tmp_path / CHOICE).read_text())
    pre, tuned = choice["val"]["pretrained"], choice["val"]["fine-tuned"]
    assert tuned["epoch"] >= 1
    if tuned["val_loss"] < pre["val_loss"]:
        assert choice["model"] == "fine-tuned" and not _same_weights(tmp_path / "dupnet.pt", PACKAGED)
    else:
        assert choice["model"] == "pretrained" and _same_weights(tmp_path / "dupnet.pt", PACKAGED)


def test_a_start_of_another_shape_is_named(tables, real_data, tmp_path):
    with pytest.raises(TiledupError, match="train.pretrained 'packaged' .* set train.pretrained: none"):
        train(*tables, real_data / "airbus_samples", tmp_path, workers=0,
              **options("train", **{**FINETUNE, "model": {"width": 8}}))


def test_the_evaluation_says_which_model_it_scored(tmp_path):
    """choice.json beside the model reaches metrics.json's `model` (the report shows it)."""
    from test_evaluate import evaluate, make_case

    paths = make_case(tmp_path)
    choice = {"model": "pretrained", "why": "a test", "val": {"pretrained": {"val_loss": 0.1, "val_acc": 0.9}}}
    (paths["model_path"].parent / CHOICE).write_text(json.dumps(choice))
    evaluate(**paths, out_dir=tmp_path / "eval", device="cpu", batch_size=16)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["model"] == choice
