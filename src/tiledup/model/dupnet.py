"""DupNet: a 6-channel early-fusion CNN scoring whether two tiles show the same place at the same time.

The two RGB tiles are stacked into one 6-channel input, so the very first
convolution already compares the two tiles pixel by pixel (fine texture such as
waves survives; it would not if each tile were summarised first). A strided
"patchify" stem makes this affordable on a CPU: it sees every pixel but works
at 1/stem of the resolution from then on. BatchNorm + global pooling keep the
net small and independent of the input size.

Speed on a CPU (benchmarks/bench_train.py): the stem is linear, so the
residual channels fold into its weights (conv(W, [x, x1 - x2]) = conv(W', x),
the same function and the same gradients, without building 9 full-resolution
channels), the per-tile statistics come from every 4th row and column, and the
full-resolution float input is made a few pairs at a time: large buffers cost
a fresh page-faulted allocation each (about as much time as the convolutions
themselves), small ones are reused. Channels-last input (N, H, W, 6 in memory,
as stack_pair and the training loader give it) lets the convolutions skip a
transposition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tiledup.run.errors import TiledupError

STAT_STEP = 4  # per-tile mean and std from every 4th row and column (4,096 values per 256 x 256 channel)
CHUNK_VALUES = 1 << 20  # full-resolution float input made this many values (4 MB) at a time


def resolve_device(device: str) -> torch.device:
    """`auto` = CUDA, then Apple MPS, then CPU; anything else is passed to torch.device."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise TiledupError(f"train.device {device!r} is not a torch device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TiledupError(f"train.device {device!r}: CUDA is not available on this machine")
    return dev


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=(kernel - stride + 1) // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DupNet(nn.Module):
    """Logit of P(same place, same time) for a 6-channel tile pair (N, 6, H, W), uint8 scale."""

    def __init__(self, width: int, depth: int, stem: int, max_width: int, normalize: str, residual: bool,
                 fine: int):
        """The shape: config `train.model` (a checkpoint carries its own copy, `self.config`)."""
        super().__init__()
        if (width < 1 or depth < 0 or stem < 1 or max_width < width or normalize not in ("tile", "fixed")
                or fine < 0):
            raise TiledupError(f"train.model: invalid shape width={width} depth={depth} stem={stem} "
                               f"max_width={max_width} normalize={normalize!r} fine={fine}")
        self.config = {"width": width, "depth": depth, "stem": stem, "max_width": max_width,
                       "normalize": normalize, "residual": bool(residual), "fine": fine}
        c_in = 9 if residual else 6  # the residual tile1 - tile2 (after normalisation) as 3 more channels
        # (N, c_in, 256, 256) -> (N, w, 256/stem, 256/stem): non-overlapping stem x stem patches
        self.stem = _conv_bn(c_in, width, stem, stem) if stem > 1 else _conv_bn(c_in, width, 3, 1)
        # fine: two 3 x 3 convolutions of the residual at full resolution, pooled (mean and max) to the
        # stem's grid: texture differences finer than a stem patch, before any averaging
        self.fine = nn.Sequential(_conv_bn(3, fine, 3, 1), _conv_bn(fine, fine, 3, 1)) if fine else None
        layers = []
        c = width + 2 * fine
        for k in range(depth):
            # (N, c, s, s) -> (N, c', s/2, s/2), c' = min(width * 2^(k+1), max_width); one more 3x3 at s/2
            c_out = min(width * 2 ** (k + 1), max_width)
            layers += [_conv_bn(c, c_out, 3, 2), _conv_bn(c_out, c_out, 3, 1)]
            c = c_out
        self.features = nn.Sequential(*layers)
        # mean AND max pooling: a single changed patch (one ship moved) must not be averaged away;
        # with tile normalisation the 12 per-channel means and stds removed from the input join here
        self.head = nn.Linear(2 * c + (12 if normalize == "tile" else 0), 1)  # (N, 2c [+12]) -> (N, 1)

    def forward(self, x: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
        # x: (N, 6, H, W) uint8, any memory layout; channels-last is fastest. Or the two tiles apart,
        # x and x2 (N, 3, H, W) each (stack_pair's halves, e.g. (N, H, W, 3) arrays permuted): the
        # same scores bit for bit, without copying both into one input first (a fifth of inference).
        sides = (x,) if x2 is None else (x, x2)
        n = x.shape[0]
        stats = None
        if self.config["normalize"] == "tile":
            # Each tile channel to zero mean, unit std: a brightness/contrast edit of one side
            # (most of an HLS shift) vanishes from the input, leaving texture to compare.
            # +2 levels keeps near-solid tiles from blowing JPEG noise up to full scale.
            var, mean = (torch.cat(v, 1) for v in zip(*(
                torch.var_mean(s[:, :, ::STAT_STEP, ::STAT_STEP].float(), dim=(2, 3)) for s in sides)))  # (N, 6)
            std = var.sqrt()
            scale = 1.0 / (std + 2.0)
            stats = torch.cat([mean / 127.5 - 1.0, torch.log1p(std) / 4], 1)  # (N, 12)
        else:  # uint8 scale -> [-1, 1]
            scale = torch.full((n, 6), 1 / 127.5, device=x.device)
            mean = torch.full((n, 6), 127.5, device=x.device)
        scale, shift = scale[..., None, None], (-mean * scale)[..., None, None]  # (N, 6, 1, 1)
        conv = self.stem[0]
        w = conv.weight  # (width, 6 or 9, k, k)
        if self.config["residual"]:  # conv(w, [x, x1 - x2]) = conv(w', x): the residual folds into w
            w = w[:, :6] + torch.cat([w[:, 6:], -w[:, 6:]], 1)
        chunk = max(1, CHUNK_VALUES // (6 * x.shape[2] * x.shape[3]))
        stem, fine = [], []
        for i in range(0, n, chunk):
            if x2 is None:
                xn = torch.addcmul(shift[i:i + chunk], x[i:i + chunk].float(), scale[i:i + chunk])  # normalised
            else:  # each tile normalised into its half of one channels-last input
                xn = torch.empty((min(chunk, n - i), 6, *x.shape[2:]), device=x.device,
                                 memory_format=torch.channels_last)
                for s, c in zip(sides, (slice(0, 3), slice(3, 6))):
                    torch.addcmul(shift[i:i + chunk, c], s[i:i + chunk].float(), scale[i:i + chunk, c], out=xn[:, c])
            stem.append(nn.functional.conv2d(xn, w, stride=conv.stride, padding=conv.padding))
            if self.fine is not None:
                fine.append(xn[:, :3] - xn[:, 3:])  # (c, 3, H, W): zero where the aligned tiles agree
        f = self.stem[2](self.stem[1](torch.cat(stem)))  # BN + ReLU: (N, w, H/stem, W/stem)
        if self.fine is not None:
            r = self.fine(torch.cat(fine))  # (N, fine, H, W)
            k = self.config["stem"]
            f = torch.cat([f, nn.functional.avg_pool2d(r, k), nn.functional.max_pool2d(r, k)], 1)
        f = self.features(f)  # (N, c, s', s')
        f = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)  # (N, 2c)
        if stats is not None:
            f = torch.cat([f, stats], dim=1)  # (N, 2c + 12)
        return self.head(f).squeeze(1)  # (N,)


def stack_pair(tiles1: torch.Tensor, tiles2: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 + (N, H, W, 3) uint8 -> (N, 6, H, W) uint8, channels-last in memory."""
    return torch.cat([tiles1, tiles2], dim=3).permute(0, 3, 1, 2)


def save_dupnet(model: DupNet, path: str | Path) -> None:
    """The model file: its shape config + weights (no optimiser state; see train.py for that)."""
    from tiledup.run.io import atomic_path

    state = {"format": "dupnet/2", "config": model.config,
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_dupnet(path: str | Path, device: str | torch.device) -> DupNet:
    """Load a DupNet saved by training, in eval mode, on `device` (`auto` = best available)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TiledupError(f"{path}: model file not found") from None
    except Exception as e:
        raise TiledupError(f"{path}: not a readable DupNet model ({e})") from None
    if not isinstance(state, dict) or state.get("format") != "dupnet/2":
        raise TiledupError(f"{path}: not a DupNet model file (format {state.get('format') if isinstance(state, dict) else None!r})")
    model = DupNet(**state["config"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise TiledupError(f"{path}: weights do not fit the stored config: {e}") from None
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return model.to(dev).eval()


@torch.no_grad()
def predict(model: DupNet, tiles1: np.ndarray, tiles2: np.ndarray, batch_size: int) -> np.ndarray:
    """P(same place, same time) per pair: tiles uint8 (N, 256, 256, 3) RGB -> float32 (N,)."""
    tiles1, tiles2 = np.asarray(tiles1), np.asarray(tiles2)
    if tiles1.shape != tiles2.shape or tiles1.ndim != 4 or tiles1.shape[3] != 3:
        raise TiledupError(f"predict: tiles must be two (N, H, W, 3) arrays of equal shape, "
                           f"got {tiles1.shape} and {tiles2.shape}")
    if tiles1.dtype != np.uint8 or tiles2.dtype != np.uint8:
        raise TiledupError(f"predict: tiles must be uint8, got {tiles1.dtype} and {tiles2.dtype}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = np.empty(len(tiles1), dtype=np.float32)
    for start in range(0, len(tiles1), batch_size):
        t1 = torch.from_numpy(tiles1[start:start + batch_size]).permute(0, 3, 1, 2)
        t2 = torch.from_numpy(tiles2[start:start + batch_size]).permute(0, 3, 1, 2)
        with _autocast(device):
            logits = model(t1.to(device, non_blocking=True), t2.to(device, non_blocking=True))
        out[start:start + len(t1)] = torch.sigmoid(logits.float()).cpu().numpy()
    model.train(was_training)
    return out


def _autocast(device: torch.device):
    """bf16 mixed precision on CUDA; a no-op context elsewhere (CPU results stay float32)."""
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
