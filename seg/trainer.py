"""The training loop: `fit(cfg)` yields one metrics dict per epoch; `Trainer` holds the state a search checkpoints.

The loop follows airbench rather than the paper's DataLoader: every split is decoded once into uint8 tensors on
the training device, batches are sliced and augmented there, and the loss is read back once per epoch (no host
sync per step). On CUDA it adds bf16 autocast, channels_last, cudnn.benchmark and fused Adam; on the CPU the same
code runs with the levers that help there. The weights with the best `val_miou` are kept (the paper's "save the
best model and load it after all epochs"), and the test split is evaluated at each new best (seg.evaluate), so
every epoch's dict (seg.epoch_metrics) carries the test metrics of the checkpoint that would be reported. The
command line is seg.train.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from seg.atomic import atomic_write
from seg.config import ConfigError, TrainConfig
from seg.data.augment import augment_batch, batch_indices
from seg.data.cache import SplitData, class_pixel_counts, load_split
from seg.data.classes import ClassInfo
from seg.data.registry import dataset_classes
from seg.epoch_metrics import best_metrics, epoch_metrics
from seg.evaluate import evaluate
from seg.levers import Levers, autocast, device_name, resolve_levers
from seg.losses import build_loss
from seg.models.registry import build_model

STATE_VERSION = 1
# Called as hook(epoch, trainer) before each epoch trains (1-based): how a caller observes or interrupts the loop
# (the search's fault-injection tests raise from one) without the config carrying anything but hyperparameters.
EpochHook = Callable[[int, "Trainer"], None]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run stops instead of training on garbage."""


# ---------------------------------------------------------------------------------------------------------------
# Optimiser and schedule
# ---------------------------------------------------------------------------------------------------------------
def build_optimizer(cfg: TrainConfig, params, fused: bool) -> torch.optim.Optimizer:
    extra = {"fused": True} if fused else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)


def lr_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of cfg.lr at optimiser step `step` (0-based): linear warm-up, then constant / cosine / poly."""
    warmup = round(cfg.warmup_epochs * total_steps / cfg.epochs)
    if step < warmup:
        return 0.01 + 0.99 * step / warmup  # from lr/100 up to lr
    if cfg.scheduler == "none":
        return 1.0
    floor = cfg.min_lr / cfg.lr
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.scheduler == "cosine" else (1 - progress) ** 0.9
    return floor + (1 - floor) * shape


# ---------------------------------------------------------------------------------------------------------------
# One epoch of training
# ---------------------------------------------------------------------------------------------------------------
def train_one_epoch(model, loss_fn, optimizer, scheduler, data: SplitData, cfg: TrainConfig, levers: Levers,
                    order_gen: torch.Generator, aug_gen: torch.Generator) -> tuple[torch.Tensor, int]:
    """Returns (sum of batch losses as a device tensor, number of images seen). No host sync inside."""
    model.train()
    loss_sum = torch.zeros((), device=levers.device, dtype=torch.float32)
    seen = 0
    for idx in batch_indices(len(data), cfg.batch_size, order_gen, shuffle=True, drop_last=True):
        idx = idx.to(levers.device, non_blocking=True)
        x, y = augment_batch(data.images[idx], data.masks[idx], cfg, aug_gen)  # (B,3,S,S) float, (B,S,S) long
        if levers.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(levers):
            logits = model(x)  # (B,C,S,S)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach()
        seen += len(idx)
    return loss_sum, seen


# ---------------------------------------------------------------------------------------------------------------
# The trainer: state a search can checkpoint and restore
# ---------------------------------------------------------------------------------------------------------------
class Trainer:
    """Owns data, model, optimiser, schedule and the best checkpoint of one run.

    `epochs()` yields one metrics dict per remaining epoch; `save`/`load` round-trip everything needed to continue
    an interrupted run exactly where it stopped. `hooks` are called before each epoch (see EpochHook).
    """

    def __init__(self, cfg: TrainConfig, hooks: Sequence[EpochHook] = ()):
        self.cfg = cfg
        self.hooks = tuple(hooks)
        self.levers = resolve_levers(cfg)
        self.device_name = device_name(self.levers.device)
        torch.manual_seed(cfg.seed)  # fixes init
        if self.levers.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.data = self._load_data()
        self.classes: ClassInfo = dataset_classes(cfg.resolved())  # VOC's 21, or the folder's classes.yaml
        self.pixel_counts = class_pixel_counts(self.data["train"].masks, self.classes.num_classes)
        self.model = self._build_model()
        self.loss_fn = build_loss(cfg, self.pixel_counts.to(self.levers.device), self.classes.num_classes)
        self.optimizer = build_optimizer(cfg, self.model.parameters(), self.levers.fused_optimizer)
        self.steps_per_epoch = len(self.data["train"]) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size ({cfg.batch_size}) is larger than the training split "
                              f"({len(self.data['train'])} images): lower batch_size")
        total = self.steps_per_epoch * cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(cfg, s, total))
        # Data order on the CPU (randperm), augmentation on the training device: both seeded from cfg.seed.
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device=self.levers.device).manual_seed(cfg.seed + 1)
        self.epoch = 0
        self.best: dict[str, Any] = {}  # metrics of the best-val epoch (best_*, test_*, iou_*)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_masks: dict[str, np.ndarray] | None = None
        self.last_metrics: dict[str, Any] = {}  # the dict of the last epoch run (kept in the state: see load)
        self.val_mious: list[float] = []  # every epoch's val mIoU, for val_miou_avg5 (seg.epoch_metrics.avg5)
        self.compiled = None

    # -- construction ---------------------------------------------------------------------------------------------
    def _load_data(self) -> dict[str, SplitData]:
        cfg, dev = self.cfg, self.levers.device
        data = {"train": load_split(cfg, cfg.train_split, dev), "val": load_split(cfg, cfg.val_split, dev)}
        if cfg.test_split:
            data["test"] = load_split(cfg, cfg.test_split, dev)
        return data

    def _build_model(self) -> nn.Module:
        model = build_model(self.cfg, self.classes.num_classes).to(self.levers.device)
        if self.levers.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    # -- the epoch loop ----------------------------------------------------------------------------------------------
    def epochs(self) -> Iterator[dict[str, Any]]:
        cfg, lv = self.cfg, self.levers
        forward_model = self._compiled_model()
        while self.epoch < cfg.epochs:
            epoch = self.epoch + 1
            for hook in self.hooks:
                hook(epoch, self)
            t0 = time.perf_counter()
            loss_sum, seen = train_one_epoch(forward_model, self.loss_fn, self.optimizer, self.scheduler,
                                             self.data["train"], cfg, lv, self.order_gen, self.aug_gen)
            train_loss = (loss_sum / self.steps_per_epoch).item()  # the one host sync of the epoch
            train_seconds = time.perf_counter() - t0
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(
                    f"training loss became {train_loss} in epoch {epoch} (arch={cfg.arch}, lr={cfg.lr:g}, "
                    f"optimizer={cfg.optimizer}): the run diverged; lower lr or add warmup_epochs")
            val, _ = self._evaluate(forward_model, "val")
            self.epoch = epoch
            self.val_mious.append(float(val["miou"]))
            if not self.best or val["miou"] > self.best["best_val_miou"]:
                self._new_best(forward_model, val)
            self.last_metrics = epoch_metrics(
                epoch, train_loss, val, self.val_mious, self.best, lr=self.optimizer.param_groups[0]["lr"],
                images_per_s=seen / train_seconds, seconds=time.perf_counter() - t0,
                compile_seconds=self._compile_seconds if epoch == 1 else 0.0,
                pretrained=bool(getattr(self.model, "pretrained_loaded", False)))
            yield dict(self.last_metrics)
        if self.best_state is not None:  # the paper: load the best model after all epochs
            self.model.load_state_dict(self.best_state)

    def _evaluate(self, model, split: str) -> tuple[dict[str, Any], torch.Tensor | None]:
        return evaluate(model, self.loss_fn, self.data[split], self.levers, max(self.cfg.batch_size, 32),
                        paper_batch=self.cfg.paper_metric_batch, num_classes=self.classes.num_classes)

    def _compiled_model(self):
        self._compile_seconds = 0.0
        if self.levers.compile_mode is None:
            return self.model
        if self.compiled is None:
            t0 = time.perf_counter()
            self.compiled = torch.compile(self.model, mode=self.levers.compile_mode)
            # Compile now on one batch-shaped input so the cost is reported apart from the epoch's throughput.
            x = torch.zeros(self.cfg.batch_size, 3, self.cfg.image_size, self.cfg.image_size, device=self.levers.device)
            if self.levers.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            was_training = self.model.training
            with autocast(self.levers):
                self.compiled(x).float().sum().backward()
            self.model.zero_grad(set_to_none=True)
            self.model.train(was_training)
            self._compile_seconds = time.perf_counter() - t0
        return self.compiled

    def _new_best(self, model, val: dict[str, Any]) -> None:
        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        test = self._evaluate(model, "test")[0] if "test" in self.data else None
        self.best = best_metrics(self.epoch, val, test, self.classes.columns)
        self._keep_masks(model)

    def _keep_masks(self, model) -> None:
        n = min(self.cfg.num_masks, len(self.data["val"]))
        if n == 0:
            return
        val = self.data["val"]
        _, pred = evaluate(model, self.loss_fn, SplitData(val.images[:n], val.masks[:n], val.ids[:n]),
                           self.levers, n, keep=n, num_classes=self.classes.num_classes)
        self.best_masks = {
            "ids": np.array(val.ids[:n]), "images": val.images[:n].permute(0, 2, 3, 1).cpu().numpy(),
            "gt": val.masks[:n].cpu().numpy(), "pred": pred.numpy(), "epoch": np.array(self.epoch),
        }

    # -- state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "config": self.cfg.model_dump(mode="json"), "epoch": self.epoch,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "best": dict(self.best), "best_state": self.best_state,
            "order_gen": self.order_gen.get_state(), "aug_gen": self.aug_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "last_metrics": dict(self.last_metrics), "val_mious": list(self.val_mious), "classes": self.classes.to_yaml_dict(),
            "best_masks": None if self.best_masks is None else
            {k: torch.from_numpy(v) if k != "ids" else list(map(str, v)) for k, v in self.best_masks.items()},
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if sd.get("version") != STATE_VERSION:
            raise ValueError(f"checkpoint format {sd.get('version')} is not {STATE_VERSION}; start the run afresh")
        self.model.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        self.epoch = int(sd["epoch"])
        self.best = dict(sd["best"])
        self.best_state = sd["best_state"]
        self.order_gen.set_state(sd["order_gen"])
        self.aug_gen.set_state(sd["aug_gen"])
        torch.set_rng_state(sd["torch_rng"])
        self.last_metrics = dict(sd.get("last_metrics") or {})  # absent in states saved before it was added
        # absent before val_miou_avg5 was added: such a run's average starts again from its resumed epoch
        self.val_mious = [float(v) for v in sd.get("val_mious") or []]
        bm = sd.get("best_masks")
        self.best_masks = None if bm is None else {
            k: np.array(v) if k == "ids" else v.numpy() for k, v in bm.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Atomic: a crash mid-write leaves the previous file intact."""
        state = self.state_dict()
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str | os.PathLike) -> None:
        self.load_state_dict(torch.load(path, map_location=self.levers.device, weights_only=True))

    def save_masks(self, path: str | os.PathLike) -> bool:
        """Writes the best epoch's masks (.npz, format in docs/DESIGN.md); False when there are none yet."""
        if self.best_masks is None:
            return False
        masks = self.best_masks
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, **masks))
        return True


def fit(cfg: TrainConfig, resume_from: str | os.PathLike | None = None) -> Iterator[dict[str, Any]]:
    """Train one model; yields one metrics dict per epoch (continuing after `resume_from` when given)."""
    trainer = Trainer(cfg)
    if resume_from is not None:
        trainer.load(resume_from)
    yield from trainer.epochs()
