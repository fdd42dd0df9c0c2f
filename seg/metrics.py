"""ConfusionMatrix: pixel accuracy, per-class IoU and mIoU from one (C, C) count matrix kept on the device;
BatchMeanScores: the paper's per-batch mean of the same; SplitScores: both over one split, the one accumulator that
evaluation (seg.evaluate) and the background floor (`constant_prediction_scores`) share.

As in torchvision's segmentation reference, counts are accumulated over a whole split and the scores computed
once at the end; pixels labelled ignore_index (255, void) are not counted.
"""
from __future__ import annotations

import torch

from seg.data.classes import IGNORE_INDEX, NUM_CLASSES


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


class BatchMeanScores:
    """The paper's reading of mIoU and pixel accuracy: scored per batch, then averaged over the batches.

    The paper never defines its IoU; its Table 4 fits this (docs/DESIGN.md, "two mIoUs"): each batch of
    `batch_size` images in split-file order gets its own mIoU (the NaN-mean of IoU over the classes present in
    that batch's labels or predictions, void excluded) and pixel accuracy; the split's score is the plain mean over
    batches, the last (smaller) batch counting as one. It rewards a constant "background" prediction (a batch
    missing most classes has few terms to average), so searches never rank on it: it is reported beside the
    dataset-level ConfusionMatrix scores only to compare with the paper like with like.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, batch_size: int = 16, ignore_index: int = IGNORE_INDEX,
                 device: torch.device | str | None = None):
        self.num_classes, self.batch_size, self.ignore_index = num_classes, batch_size, ignore_index
        # Kept on the device so update never syncs: sum over batches of (mIoU, pixel accuracy), and the batch count.
        self._sums = torch.zeros(3, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Score pred/target (N, H, W) as consecutive batches of `batch_size` images (N a multiple of it, except
        for a split's last call). No host sync."""
        c, n = self.num_classes, len(target)
        batch = torch.arange(n, device=target.device).div(self.batch_size, rounding_mode="floor")  # (N,)
        nb = int((n + self.batch_size - 1) // self.batch_size)
        pred, target = pred.to(torch.int64), target.to(torch.int64)
        valid = (target >= 0) & (target < c)
        idx = batch.view(-1, 1, 1) * (c * c) + target * c + pred  # (N, H, W) -> one (C, C) block per batch
        idx = torch.where(valid, idx, nb * c * c).flatten()
        counts = torch.zeros(nb * c * c + 1, dtype=torch.int64, device=target.device)
        counts.scatter_add_(0, idx, torch.ones_like(idx))
        m = counts[:-1].view(nb, c, c).double()  # (B, C, C)
        tp = m.diagonal(dim1=1, dim2=2)  # (B, C)
        union = m.sum(1) + m.sum(2) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        total = m.sum((1, 2))
        scores = torch.stack([iou.nanmean(1), tp.sum(1) / total.clamp(min=1)], 1)  # (B, 2)
        keep = (total > 0).double().view(-1, 1)  # a batch of void pixels only has no score
        scored = torch.cat([scores.nan_to_num(0.0) * keep, keep], 1).sum(0)  # (3,)
        self._sums += scored.to(self._sums.device)

    def compute(self) -> dict:
        """{"miou": float, "pixel_acc": float}: means over the batches seen (NaN before any)."""
        miou_sum, acc_sum, batches = self._sums.cpu().tolist()
        if batches == 0:
            return {"miou": float("nan"), "pixel_acc": float("nan")}
        return {"miou": miou_sum / batches, "pixel_acc": acc_sum / batches}


class SplitScores:
    """A split's scores as evaluation reports them: dataset-level (ConfusionMatrix) and the paper's per-batch mean
    (BatchMeanScores over batches of `paper_batch` images) of the same predictions. No host sync in `update`."""

    def __init__(self, num_classes: int = NUM_CLASSES, paper_batch: int = 16, ignore_index: int = IGNORE_INDEX,
                 device: torch.device | str | None = None):
        self.matrix = ConfusionMatrix(num_classes, ignore_index, device=device)
        self.paper = BatchMeanScores(num_classes, paper_batch, ignore_index, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target (N, H, W); N a multiple of `paper_batch` except for a split's last call."""
        self.matrix.update(pred, target)
        self.paper.update(pred, target)

    def compute(self) -> dict:
        """{"miou", "pixel_acc", "miou_paper", "pixel_acc_paper"} (seg.epoch_metrics.SCORE_NAMES) and "iou" (a
        list, one per class)."""
        out, by_batch = self.matrix.compute(), self.paper.compute()
        return {"miou": out["miou"], "pixel_acc": out["pixel_acc"], "miou_paper": by_batch["miou"],
                "pixel_acc_paper": by_batch["pixel_acc"], "iou": out["iou"].tolist()}


def constant_prediction_scores(masks: torch.Tensor, label: int = 0, num_classes: int = NUM_CLASSES,
                               paper_batch: int = 16, ignore_index: int = IGNORE_INDEX) -> dict:
    """Scores of predicting `label` (0: background) for every pixel of `masks` (N, H, W): the floor a model must
    beat. {"miou", "pixel_acc", "miou_paper", "pixel_acc_paper"}, dataset-level and per-batch as in `evaluate`."""
    scores = SplitScores(num_classes, paper_batch, ignore_index, device=masks.device)
    scores.update(torch.full_like(masks, label, dtype=torch.int64), masks)
    out = scores.compute()
    del out["iou"]
    return out
