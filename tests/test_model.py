"""DupNet: shapes, the predict/load contract used by evaluation, device resolution."""

import numpy as np
import pytest
import torch

from tiledup.run.errors import TiledupError
from tiledup.model.dupnet import DupNet, load_dupnet, predict, resolve_device, save_dupnet, stack_pair

from configured import options


@pytest.mark.parametrize("cfg", [{}, {"width": 8, "depth": 1, "stem": 8}, {"stem": 1, "depth": 0, "width": 4},
                                 {"normalize": "fixed", "width": 8}])
def test_forward_gives_one_logit_per_pair(cfg):
    torch.manual_seed(0)
    net = DupNet(**options("train.model", **cfg)).eval()
    x = torch.randint(0, 256, (3, 6, 256, 256), dtype=torch.uint8)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (3,) and torch.isfinite(out).all()


@pytest.mark.parametrize("cfg", [{}, {"width": 8, "depth": 1, "stem": 8, "fine": 2}, {"normalize": "fixed", "width": 8}])
def test_forward_on_the_two_tiles_apart_equals_the_stacked_input_bit_for_bit(cfg):
    """predict gives DupNet the tiles apart (no 6-channel copy): the scores must not move by a bit."""
    torch.manual_seed(0)
    net = DupNet(**options("train.model", **cfg)).eval()
    t1 = torch.randint(0, 256, (5, 256, 256, 3), dtype=torch.uint8)
    t2 = t1.clone()
    t2[2:] = torch.randint(0, 256, (3, 256, 256, 3), dtype=torch.uint8)
    with torch.no_grad():
        stacked = net(stack_pair(t1, t2))
        apart = net(t1.permute(0, 3, 1, 2), t2.permute(0, 3, 1, 2))
    assert torch.equal(stacked, apart)


def test_stack_pair_puts_tile1_in_channels_0_to_2():
    t1 = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    t2 = torch.full((2, 4, 4, 3), 7, dtype=torch.uint8)
    x = stack_pair(t1, t2)
    assert x.shape == (2, 6, 4, 4) and int(x[:, :3].max()) == 0 and int(x[:, 3:].min()) == 7


def test_predict_save_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    net = DupNet(**options("train.model", width=8, depth=2))
    rng = np.random.default_rng(0)
    tiles1 = rng.integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
    tiles2 = rng.integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
    p = predict(net, tiles1, tiles2, batch_size=2)
    assert p.dtype == np.float32 and p.shape == (5,) and ((p >= 0) & (p <= 1)).all()
    assert np.allclose(p, predict(net, tiles1, tiles2, batch_size=64), atol=1e-5)  # batch-size free
    save_dupnet(net, tmp_path / "dupnet.pt")
    loaded = load_dupnet(tmp_path / "dupnet.pt", device="cpu")
    assert not loaded.training and loaded.config == net.config
    assert np.allclose(predict(loaded, tiles1, tiles2, batch_size=64), p, atol=1e-6)
    assert load_dupnet(tmp_path / "dupnet.pt", device="auto").config == net.config


def test_load_and_predict_errors_name_the_problem(tmp_path):
    with pytest.raises(TiledupError, match="not found"):
        load_dupnet(tmp_path / "missing.pt", "cpu")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(TiledupError, match="junk.pt"):
        load_dupnet(tmp_path / "junk.pt", "cpu")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(TiledupError, match="not a DupNet model"):
        load_dupnet(tmp_path / "other.pt", "cpu")
    net = DupNet(**options("train.model", width=4, depth=1))
    with pytest.raises(TiledupError, match="equal shape"):
        predict(net, np.zeros((2, 256, 256, 3), np.uint8), np.zeros((3, 256, 256, 3), np.uint8), 64)
    with pytest.raises(TiledupError, match="uint8"):
        predict(net, np.zeros((2, 256, 256, 3), np.float32), np.zeros((2, 256, 256, 3), np.float32), 64)
    with pytest.raises(TiledupError, match="invalid shape"):
        DupNet(**options("train.model", width=0))


def test_resolve_device():
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto.type == "cpu"
        with pytest.raises(TiledupError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TiledupError, match="not a torch device"):
        resolve_device("abacus")


@pytest.mark.parametrize("cfg", [{"residual": True}, {"residual": True, "fine": 2}, {"normalize": "fixed"}])
def test_folded_stem_equals_the_explicit_residual_input(cfg):
    """forward folds [x, x1 - x2] into the stem weights and works a few pairs at a time: same logits
    as the plain definition (normalise, concatenate the residual, convolve) on a batch larger than a chunk."""
    torch.manual_seed(2)
    net = DupNet(**options("train.model", width=8, depth=1, **cfg)).eval()
    x = torch.randint(0, 256, (5, 6, 256, 256), dtype=torch.uint8)
    if net.config["normalize"] == "tile":
        var, mean = torch.var_mean(x[:, :, ::4, ::4].float(), dim=(2, 3), keepdim=True)
        xn = (x.float() - mean) / (var.sqrt() + 2.0)
        stats = torch.cat([mean.flatten(1) / 127.5 - 1.0, torch.log1p(var.sqrt().flatten(1)) / 4], 1)
    else:
        xn, stats = x.float() / 127.5 - 1.0, None
    residual = xn[:, :3] - xn[:, 3:]
    with torch.no_grad():
        f = net.stem(torch.cat([xn, residual], 1) if net.config["residual"] else xn)
        if net.fine is not None:
            r = net.fine(residual)
            f = torch.cat([f, torch.nn.functional.avg_pool2d(r, 4), torch.nn.functional.max_pool2d(r, 4)], 1)
        f = net.features(f)
        f = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))] + ([stats] if stats is not None else []), 1)
        expected = net.head(f).squeeze(1)
        assert torch.allclose(net(x), expected, atol=1e-4), (net(x), expected)
