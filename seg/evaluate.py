"""Evaluation: a model's loss and scores over a whole split, the reusable piece that training, predict and the
search share without pulling in the training loop (as torchvision's references keep `evaluate` in utils.py)."""
from __future__ import annotations

from typing import Any

import torch

from seg.config import TrainConfig
from seg.data.augment import normalize
from seg.data.cache import SplitData
from seg.data.classes import IGNORE_INDEX, VOC
from seg.levers import Levers, autocast
from seg.metrics import SplitScores


def eval_batch_size(cfg: TrainConfig) -> int:
    """Images per forward pass when a split is evaluated (what `evaluate` uses for the Trainer's splits)."""
    step = cfg.paper_metric_batch
    return -(-max(cfg.batch_size, 32) // step) * step


@torch.inference_mode()
def evaluate(model, loss_fn, data: SplitData, levers: Levers, batch_size: int, keep: int = 0,
             paper_batch: int = 16, num_classes: int = VOC.num_classes) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Loss and scores over a whole split; also the predictions of its first `keep` images.

    `miou`/`pixel_acc` are dataset-level (one confusion matrix for the split); `miou_paper`/`pixel_acc_paper`
    the paper's per-batch mean over batches of `paper_batch` images (BatchMeanScores), from the same predictions.
    """
    model.eval()
    scores = SplitScores(num_classes, paper_batch, IGNORE_INDEX, device=levers.device)
    batch_size = -(-batch_size // paper_batch) * paper_batch  # whole paper batches in each evaluation batch
    loss_sum = torch.zeros((), device=levers.device, dtype=torch.float32)
    kept = []
    for start in range(0, len(data), batch_size):
        x = normalize(data.images[start:start + batch_size])  # (B, 3, S, S)
        y = data.masks[start:start + batch_size].long()  # (B, S, S)
        if levers.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(levers):
            logits = model(x)  # (B, C, S, S)
        loss_sum += loss_fn(logits.float(), y) * len(y)
        pred = logits.argmax(1)
        scores.update(pred, y)
        if start < keep:
            kept.append(pred[: keep - start].to(torch.uint8))
    metrics = {"loss": (loss_sum / len(data)).item(), **scores.compute()}
    return metrics, (torch.cat(kept).cpu() if kept else None)
