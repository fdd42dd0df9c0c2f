"""Losses: the paper's class-weight strategies and the cross-entropy (+ optional soft Dice) training loss.

Strategies (cfg.class_weights):
* "none"               plain cross-entropy (baseline, 4a).
* "inverse_frequency"  the paper's 4b: w_c = 2 - 1/n_c, n_c = training pixels of class c; background fixed
                       at cfg.effective_bg_weight (0.15 unless set).
* "background"         every class 1, background cfg.effective_bg_weight (0.1 unless set): the paper's 5a-5c.
Void pixels (255) never contribute. The loss is computed in float32 even under bf16 autocast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from seg.config import WEIGHTINGS
from seg.data.voc import IGNORE_INDEX, NUM_CLASSES

if TYPE_CHECKING:
    from seg.config import TrainConfig

BACKGROUND = 0  # class index of "background" (VOC's; a folder dataset lists it first)
DICE_EPS = 1e-6  # keeps a class's Dice defined when predictions and targets are both ~0


def inverse_frequency_weights(pixel_counts: torch.Tensor, bg_weight: float = 0.15) -> torch.Tensor:
    """The paper's 4b weights: w_c = 2 - 1/n_c for n_c training pixels of class c, background = bg_weight.

    A class with n_c = 0 gets 2 (the value every well-represented class approaches): a cross-entropy
    weight only multiplies pixels whose target is that class, so an absent class's weight never enters the
    loss, and 2 keeps the vector finite. Note that with pixel counts (thousands per class) every foreground
    weight is ~2, so 4b is in effect "foreground 2, background 0.15".
    """
    n = pixel_counts.detach().to(torch.float64)
    w = torch.where(n > 0, 2.0 - 1.0 / n.clamp(min=1), torch.full_like(n, 2.0))
    w[BACKGROUND] = bg_weight
    return w.to(torch.float32)


def class_weights(cfg: "TrainConfig", pixel_counts: torch.Tensor | None,
                  num_classes: int = NUM_CLASSES) -> torch.Tensor | None:
    """Per-class CE weights (float32, CPU) for cfg.class_weights, or None for "none"; class 0 is the background."""
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "inverse_frequency":
        if pixel_counts is None:
            raise ValueError("class_weights='inverse_frequency' needs the training split's pixel_counts")
        return inverse_frequency_weights(pixel_counts, cfg.effective_bg_weight)
    if cfg.class_weights == "background":
        w = torch.ones(num_classes)
        w[BACKGROUND] = cfg.effective_bg_weight
        return w
    raise ValueError(f"unknown class_weights {cfg.class_weights!r}; choose one of {list(WEIGHTINGS)}")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in `target`, pooled over the batch; void pixels excluded.

    logits (B, C, H, W) float, target (B, H, W) long. Classes absent from the batch's labels are left out of
    the mean (as segmentation_models_pytorch does): their Dice would be 0 or undefined and only add noise.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)  # (B, 1, H, W)
    probs = logits.softmax(dim=1) * valid  # (B, C, H, W), zero at void pixels
    onehot = F.one_hot(target.masked_fill(~valid.squeeze(1), 0), num_classes).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)  # (C,)
    support = onehot.sum(dims)  # (C,) label pixels per class
    dice = (2 * inter + DICE_EPS) / (probs.sum(dims) + support + DICE_EPS)
    present = (support > 0).to(dice.dtype)
    return 1 - (dice * present).sum() / present.sum().clamp(min=1)


class SegmentationLoss(nn.Module):
    """Weighted cross-entropy (ignore 255, label smoothing) + dice_weight * soft Dice.

    Called as loss(logits (B, C, H, W), target (B, H, W) long) -> scalar float32 tensor.
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 dice_weight: float = 0.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.label_smoothing = label_smoothing
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.weight is not None and self.weight.device != logits.device:
            self.weight = self.weight.to(logits.device)  # moved once, then cached
        # Autocast off and float32 logits: log-softmax over 21 classes in bf16 loses the small probabilities.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target = logits.float(), target.long()
            loss = F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                                   label_smoothing=self.label_smoothing)
            if self.dice_weight > 0:
                loss = loss + self.dice_weight * soft_dice_loss(logits, target, self.ignore_index)
        return loss


def build_loss(cfg: "TrainConfig", pixel_counts: torch.Tensor | None = None,
               num_classes: int = NUM_CLASSES) -> SegmentationLoss:
    """The training loss for cfg: CE weighted by class_weights(cfg, pixel_counts, num_classes), with
    cfg.label_smoothing, plus cfg.dice_weight * soft Dice."""
    return SegmentationLoss(class_weights(cfg, pixel_counts, num_classes), cfg.label_smoothing, cfg.dice_weight)
