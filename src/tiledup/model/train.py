"""DupNet training loop: seeded, checkpointed every epoch, resumable after a kill.

Outputs in out_dir: dupnet.pt (the model used), history.csv (one row per epoch;
epoch 0 = the pretrained start), curves.png and choice.json (which model
dupnet.pt is: the pretrained start, fine-tuned, or trained from scratch, and
why; see train()). Beside them, resume.pt holds
the full state after the last finished epoch (model, optimiser, schedule,
history, best model). It is deliberately not a declared workflow output:
Snakemake deletes declared outputs before re-running a rule, and this file
must survive a killed run. The four outputs are written together at the end
(io.atomic_paths), and the workflow marks them update() so that Snakemake
keeps them too: while a longer run trains, and after it is stopped, the
previous model, history and curves stay in place.

resume.log beside resume.pt records the log lines of every run since the
checkpoint was first written (`tiledup train` runs inside recorded_log); a
resumed run first repeats them, so its log holds the whole training, not only
its last part (Snakemake starts the workflow's log file afresh each run). A
run that starts over (another config) drops them: they belong to another training.

A changed config meets an existing resume.pt as follows. `epochs`,
`early_stop`, `device`, `eval_batch_size` and the worker count may change
freely: resuming honours the new values (so a finished run can be extended).
Any other key (model shape, augmentation, seed, optimiser, schedule) or a
changed train/val table defines a different run: if the checkpointed run was
interrupted, training stops with an error naming the differences (throwing
away a killed run's progress is the user's call: delete resume.pt); if it had
finished, the new run simply starts over.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tiledup.model.another_time import check_another_time
from tiledup.model.augment import check_augment
from tiledup.run.errors import TiledupError
from tiledup.run.io import atomic_path, atomic_paths, write_json, write_text
from tiledup.model.loader import TRAIN_STREAM, VAL_STREAM, PairDataset, as_input, check_images, make_loader, read_pairs
from tiledup.model.dupnet import DupNet, _autocast, resolve_device, save_dupnet
from tiledup.model.pretrained import pretrained_start
from tiledup.run.config import defaults
from tiledup.run.progress import Progress

log = logging.getLogger(__name__)

RESUME = "resume.pt"
RESUME_LOG = "resume.log"
CHOICE = "choice.json"
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]


def train(train_path, val_path, images_dir, out_dir, workers: int, *, seed: int, device: str, epochs: int,
          batch_size: int, eval_batch_size: int, lr: float, weight_decay: float, early_stop: int,
          plateau_patience: int, plateau_factor: float, min_lr: float, model: dict, augment: dict,
          another_time: dict, pretrained: str, min_pairs_finetune: int,
          record: ResumeLog | None = None) -> dict:
    """Train DupNet on the train table, select by the val table; returns the best epoch's history row
    (epoch 0 = the pretrained model, kept).

    Keywords = the `train` config block (nested blocks: keys left out take their defaults from
    config/config.yaml); `workers` = DataLoader processes (and twice the model's CPU threads);
    `record` = recorded_log's ResumeLog, told whether the run resumed. `pretrained` (packaged, none
    or a dupnet.pt path) is the start; it is fine-tuned only from min_pairs_finetune training pairs
    on, and kept unless a fine-tuned epoch reaches a lower validation loss. Which model was kept and
    why goes to choice.json beside dupnet.pt.
    """
    out_dir = Path(out_dir)
    known_model = defaults()["train"]["model"]
    unknown_model = set(model) - set(known_model)
    if unknown_model:
        raise TiledupError(f"train.model: unknown key(s) {sorted(unknown_model)}; known: {sorted(known_model)}")
    model_cfg = {**known_model, **model}
    augment_cfg = check_augment(augment)
    retime_cfg = check_another_time(another_time)
    for name, value, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 2),
                            ("eval_batch_size", eval_batch_size, 1), ("early_stop", early_stop, 0),
                            ("min_pairs_finetune", min_pairs_finetune, 0)):
        if not isinstance(value, int) or value < lo:
            raise TiledupError(f"train.{name} must be an integer >= {lo}, got {value!r}")

    tr = read_pairs(train_path, "training")
    va = read_pairs(val_path, "validation")
    n_dup = int(tr["is_dup"].sum())
    if n_dup in (0, len(tr["is_dup"])):
        raise TiledupError(f"{train_path}: the training table has one class only "
                           f"({n_dup} duplicates, {len(tr['is_dup']) - n_dup} non-duplicates)")
    check_images(tr, images_dir, train_path)
    check_images(va, images_dir, val_path)
    init = pretrained_start(pretrained, model_cfg)
    n_train = len(tr["is_dup"])
    small = n_train < min_pairs_finetune
    if small:
        log.warning("only %d training pairs (train.min_pairs_finetune: %d): %s", n_train, min_pairs_finetune,
                    "keeping the pretrained DupNet, too few pairs to fine-tune it on" if init else
                    "a DupNet trained from scratch on this few may miss plain duplicates "
                    "(train.pretrained: packaged starts from the shipped one)")

    dev = resolve_device(device)
    # The loader workers (one process each) take about as much CPU per pair as the model: the model
    # gets half the cores. More threads than cores left over make PyTorch's threads spin-wait for
    # each other: with 2 threads beside 2 workers on 2 cores an epoch took 4x as long (docs/benchmarks.md).
    torch.set_num_threads(max(1, workers // 2))
    torch.backends.cudnn.benchmark = False  # cudnn autotuning picks kernels non-deterministically
    torch.backends.cudnn.deterministic = True
    signature = {"seed": seed, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                 "plateau_patience": plateau_patience, "plateau_factor": plateau_factor,
                 "min_lr": min_lr, "model": model_cfg, "augment": augment_cfg, "another_time": retime_cfg,
                 "train_table": _digest(tr), "val_table": _digest(va),
                 "pretrained": init and init["digest"]}

    torch.manual_seed(seed)
    net = DupNet(**model_cfg)
    if init:
        net.load_state_dict(init["weights"])
    net = net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=plateau_factor,
                                                       patience=plateau_patience, min_lr=min_lr)
    state = {"history": [], "best": None, "best_loss": math.inf, "stale": 0, "finished": False,
             "pretrained": None}
    ckpt_path = out_dir / RESUME
    ckpt = _load_checkpoint(ckpt_path, signature) if ckpt_path.exists() else None
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        if record:
            record.resumed()
        log.info("resuming from %s after epoch %d", ckpt_path, len(state["history"]))
    elif record:
        record.started_over()

    train_set = PairDataset(tr, images_dir, seed=seed, stream=TRAIN_STREAM, augment=augment_cfg,
                            another_time=retime_cfg)
    val_set = PairDataset(va, images_dir, seed=seed, stream=VAL_STREAM, augment=augment_cfg,
                          another_time=retime_cfg)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    pin = dev.type == "cuda"
    log.info("DupNet %s on %s: %d training pairs (%d duplicates), %d validation pairs, %d workers",
             model_cfg, dev, len(train_set), n_dup, len(val_set), workers)

    train_loader = make_loader(train_set, batch_size=batch_size, workers=workers, shuffle=True,
                               seed=seed, pin_memory=pin)
    val_loader = make_loader(val_set, batch_size=eval_batch_size, workers=workers, shuffle=False,
                             seed=seed, pin_memory=pin)  # sampler epoch stays 0: fixed augmentation
    if init and state["pretrained"] is None:
        # The pretrained model on the same validation table (same fixed augmentation) is the best so
        # far: a fine-tuned epoch is kept only if it reaches a lower validation loss.
        net.eval()
        with torch.no_grad():
            pre_loss, pre_acc = _run(net, val_loader, loss_fn, dev, None)
        state["pretrained"] = {"val_loss": pre_loss, "val_acc": pre_acc}
        state["best"], state["best_loss"] = _cpu_copy(net), pre_loss
        log.info("pretrained DupNet %s: val loss %.4f, val acc %.4f", init["path"], pre_loss, pre_acc)
    # one line per epoch with the ETA of the run (an upper bound when early stopping may end it)
    fine_tune = not (init and small)
    run_progress = Progress("training", max(epochs - len(state["history"]), 0) if fine_tune else 0, "epochs",
                            log=log, interval=0)
    while len(state["history"]) < epochs and state["stale"] < (early_stop or math.inf) and fine_tune:
        epoch = len(state["history"]) + 1
        start = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        progress = Progress(f"epoch {epoch}/{epochs}", len(train_set) + len(val_set), "pairs", log=log)
        net.train()
        train_loader.sampler.epoch = epoch
        train_loss, train_acc = _run(net, train_loader, loss_fn, dev, opt, progress)
        net.eval()
        with torch.no_grad():
            val_loss, val_acc = _run(net, val_loader, loss_fn, dev, None, progress)
        progress.done()
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TiledupError(f"training diverged in epoch {epoch} (train loss {train_loss}, val loss "
                               f"{val_loss}); lower train.lr (now {lr_now})")
        sched.step(val_loss)
        row = {"epoch": epoch, "lr": lr_now, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": val_loss, "val_acc": val_acc, "seconds": time.perf_counter() - start}
        state["history"].append(row)
        if val_loss < state["best_loss"]:
            state["best_loss"], state["stale"] = val_loss, 0
            state["best"] = _cpu_copy(net)
        else:
            state["stale"] += 1
        log.info("epoch %d: lr %.2g, train loss %.4f acc %.4f, val loss %.4f acc %.4f, %.1f s",
                 epoch, lr_now, train_loss, train_acc, val_loss, val_acc, row["seconds"])
        state["finished"] = len(state["history"]) >= epochs or state["stale"] >= (early_stop or math.inf)
        _save_checkpoint(ckpt_path, signature, net, opt, sched, state)
        run_progress.update()
    run_progress.done()
    if state["stale"] and early_stop and state["stale"] >= early_stop:
        log.info("early stop: no validation loss improvement for %d epochs", state["stale"])

    net.load_state_dict(state["best"])
    history = state["history"]
    if state["pretrained"]:  # epoch 0: the pretrained model as it came
        history = [{"epoch": 0, "lr": math.nan, "train_loss": math.nan, "train_acc": math.nan,
                    **state["pretrained"], "seconds": 0.0}] + history
    choice = _choice(init, small, state, n_train, len(va["is_dup"]), min_pairs_finetune)
    with atomic_paths(out_dir / "curves.png", out_dir / "history.csv", out_dir / "dupnet.pt",
                      out_dir / CHOICE) as tmp:
        _plot(history, tmp[0])
        _write_history(history, tmp[1])
        save_dupnet(net, tmp[2])
        write_json(choice, tmp[3])
    best = min(history, key=lambda r: r["val_loss"])
    log.info("best epoch %d: val loss %.4f, val acc %.4f", best["epoch"], best["val_loss"], best["val_acc"])
    log.info("model used: %s, because %s", choice["model"], choice["why"])
    return best


def _choice(init, small, state, n_train, n_val, min_pairs_finetune) -> dict:
    """Which model dupnet.pt is (pretrained, fine-tuned or trained from scratch), why, and the
    validation figures of each candidate on the same validation table."""
    trained = min(state["history"], key=lambda r: r["val_loss"]) if state["history"] else None
    pre = state["pretrained"]
    if init is None:
        model, why = "trained from scratch", "train.pretrained is none"
    elif small:
        model, why = "pretrained", (f"{n_train} training pairs are fewer than train.min_pairs_finetune "
                                    f"({min_pairs_finetune}): too few to fine-tune on")
    elif trained is None or trained["val_loss"] >= pre["val_loss"]:
        model, why = "pretrained", (f"no fine-tuned epoch reached a lower validation loss than the "
                                    f"pretrained model's {pre['val_loss']:.4f}")
    else:
        model, why = "fine-tuned", (f"fine-tuned epoch {trained['epoch']} reached validation loss "
                                    f"{trained['val_loss']:.4f}, below the pretrained model's {pre['val_loss']:.4f}")
    figures = (lambda r: r and {"val_loss": r["val_loss"], "val_acc": r["val_acc"]})
    return {"model": model, "why": why, "pretrained": init and init["path"],
            "train_pairs": n_train, "val_pairs": n_val, "min_pairs_finetune": min_pairs_finetune,
            "val": {"pretrained": figures(pre),
                    ("trained from scratch" if init is None else "fine-tuned"): figures(trained)
                    and {**figures(trained), "epoch": trained["epoch"]}}}


def _cpu_copy(net) -> dict:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


class ResumeLog:
    """resume.log of one `tiledup train` run; train() says whether it resumed (see recorded_log)."""

    def __init__(self, path: Path, earlier: str, handler: logging.Handler):
        self.path, self.earlier, self.handler = path, earlier, handler

    def resumed(self) -> None:
        """The checkpoint continues: repeat the earlier runs' lines in this run's log."""
        if self.earlier:
            sys.stderr.write(f"---- earlier runs of this training ({self.path}) ----\n{self.earlier}"
                             "---- this run ----\n")
            sys.stderr.flush()

    def started_over(self) -> None:
        """Another training replaces the checkpoint: its lines leave resume.log."""
        if self.earlier:
            self.handler.flush()
            text = self.path.read_text()[len(self.earlier):]
            self.path.write_text(text)  # the handler appends (O_APPEND) after it
            self.earlier = ""


@contextlib.contextmanager
def recorded_log(out_dir):
    """Also log to resume.log while training, yielding its ResumeLog. While resume.pt exists the
    lines are appended (kept if the run is killed before it knows whether it resumes); train()
    then repeats them in this run's log, or drops them when it starts over."""
    path = Path(out_dir) / RESUME_LOG
    earlier = path.read_text() if (Path(out_dir) / RESUME).exists() and path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path, mode="a" if earlier else "w")
    handler.setFormatter(root.handlers[0].formatter if root.handlers else None)
    root.addHandler(handler)
    try:
        yield ResumeLog(path, earlier, handler)
    finally:
        root.removeHandler(handler)
        handler.close()


def _run(net, loader, loss_fn, dev, opt, progress=None) -> tuple[float, float]:
    """One pass over a loader (training when opt is given); mean loss and accuracy at 0.5.

    `progress` (a tiledup.run.progress.Progress) counts the pairs.
    """
    total_loss, correct, n = 0.0, 0, 0
    try:
        for x, y in loader:
            x = as_input(x.to(dev, non_blocking=True))  # (B, 256, 256, 6) -> (B, 6, 256, 256) uint8
            y = y.to(dev, non_blocking=True)  # (B,) float
            with _autocast(dev):
                logits = net(x)  # (B,)
            loss = loss_fn(logits.float(), y)
            if opt is not None:
                opt.zero_grad(set_to_none=True)
                (loss / len(y)).backward()
                opt.step()
            total_loss += loss.item()
            correct += int(((logits.detach() > 0).float() == y).sum())
            n += len(y)
            if progress is not None:
                progress.update(len(y))
    except TiledupError:
        raise
    except Exception as e:  # a worker's TiledupError arrives wrapped with its traceback
        if "TiledupError" in str(e) or "RejectedImage" in str(e):
            raise TiledupError(str(e).strip().splitlines()[-1]) from None
        raise
    return total_loss / n, correct / n


def _digest(pairs: dict[str, np.ndarray]) -> str:
    """Content digest of a dataset table's rows: a changed table means a different run."""
    h = hashlib.sha256()
    h.update("\n".join(pairs["image_id"].tolist()).encode())
    for c in ("tile1", "tile2", "is_dup"):
        h.update(np.ascontiguousarray(pairs[c]).astype(np.int16).tobytes())
    return h.hexdigest()[:16]


def _save_checkpoint(path: Path, signature, net, opt, sched, state) -> None:
    ckpt = {"format": "dupnet-resume/1", "signature": signature, "model": net.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "state": state}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def _load_checkpoint(path: Path, signature: dict) -> dict | None:
    """The checkpoint to resume from; None to start over (the checkpointed run had finished)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TiledupError(f"{path}: unreadable resume checkpoint ({e}); delete it to start over") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "dupnet-resume/1":
        raise TiledupError(f"{path}: not a DupNet resume checkpoint; delete it to start over")
    old = ckpt["signature"]
    diff = [f"{k}: {old.get(k)!r} -> {signature[k]!r}" for k in signature if old.get(k) != signature[k]]
    if not diff:
        return ckpt
    if ckpt["state"]["finished"]:
        log.info("%s is a finished run of a different config (%s); starting over", path, "; ".join(diff))
        return None
    raise TiledupError(f"{path}: the interrupted run in this checkpoint used a different config or "
                       f"dataset ({'; '.join(diff)}); restore those values to resume, or delete "
                       f"{path} to start over")


def _write_history(history: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(buf.getvalue(), path)


def _plot(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, training vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", "loss (BCE)"), (axes[1], "acc", "accuracy")):
        ax.plot(ep, [r[f"train_{key}"] for r in history], "o-", label="train")
        ax.plot(ep, [r[f"val_{key}"] for r in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    best = min(history, key=lambda r: r["val_loss"])
    axes[0].axvline(best["epoch"], color="grey", ls="--", lw=1)
    fig.suptitle(f"DupNet training (best epoch {best['epoch']}: val acc {best['val_acc']:.4f})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
