"""ConfusionMatrix: pixel accuracy, per-class IoU and mIoU from one (C, C) count matrix kept on the device.

As in torchvision's segmentation reference, counts are accumulated over a whole split and the scores computed
once at the end; pixels labelled ignore_index (255, void) are not counted.
"""
from __future__ import annotations

import torch

from seg.data.voc import IGNORE_INDEX, NUM_CLASSES


class ConfusionMatrix:
    """Rows = target class, columns = predicted class. `update` never synchronises with the host."""

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 device: torch.device | str | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # One extra bin collects void pixels, so update needs no boolean indexing (which would sync on CUDA).
        self._counts = torch.zeros(num_classes * num_classes + 1, dtype=torch.int64, device=device)

    @property
    def matrix(self) -> torch.Tensor:
        """(C, C) int64 counts, rows = target, cols = prediction."""
        return self._counts[:-1].view(self.num_classes, self.num_classes)

    def reset(self) -> None:
        self._counts.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: pred (B, H, W) long class indices, target (B, H, W) with ignore_index for void."""
        c = self.num_classes
        pred = pred.to(self._counts.device, torch.int64).flatten()
        target = target.to(self._counts.device, torch.int64).flatten()
        valid = (target >= 0) & (target < c)  # ignore_index (and anything else out of range) -> the void bin
        idx = torch.where(valid, target * c + pred, c * c)
        if idx.is_cuda:
            # torch.bincount reads the max/min of its input back to the host on CUDA; scatter_add_ does not.
            self._counts.scatter_add_(0, idx, torch.ones_like(idx))
        else:
            self._counts += torch.bincount(idx, minlength=c * c + 1)

    def compute(self) -> dict:
        """{"pixel_acc": float, "miou": float, "iou": (C,) float32 CPU tensor}.

        IoU is NaN where a class's union is empty (in neither labels nor predictions); mIoU averages the rest.
        """
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        total = m.sum()
        pixel_acc = (tp.sum() / total).item() if total > 0 else float("nan")
        miou = iou.nanmean().item() if (union > 0).any() else float("nan")
        return {"pixel_acc": pixel_acc, "miou": miou, "iou": iou.float().cpu()}
