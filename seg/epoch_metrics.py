"""The per-epoch metrics dict: its keys, in order, and the one builder of it. Torch-free, so the search's
vocabulary (search.vocab) takes its names from here instead of spelling them again.

`val_*` is this epoch; `best_*`, `test_*` and `iou_*` belong to the best-val-mIoU checkpoint so far. `*_paper` are
the paper's per-batch-mean scores of the same predictions (seg.metrics.BatchMeanScores), kept only to compare with
its Table 4; searches rank on the dataset-level `val_miou` / `best_val_miou`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# What seg.evaluate.evaluate scores a split with (seg.metrics.SplitScores): a prefix makes them a split's keys.
SCORE_NAMES = ("miou", "pixel_acc", "miou_paper", "pixel_acc_paper")
IOU_PREFIX = "iou_"

EPOCH_KEYS = ("epoch", "train_loss", "val_loss", *(f"val_{s}" for s in SCORE_NAMES), "lr", "images_per_s",
              "seconds", "compile_seconds")
BEST_KEYS = ("best_epoch", *(f"best_val_{s}" for s in SCORE_NAMES), *(f"test_{s}" for s in SCORE_NAMES))
# The whole dict, in order; `iou_<class>` follow.
METRIC_KEYS = (*EPOCH_KEYS, *BEST_KEYS, "pretrained")


def prefixed(prefix: str, scores: Mapping[str, Any]) -> dict[str, Any]:
    """`{"miou": .., ...}` -> `{"<prefix>_miou": .., ...}` for every score name."""
    return {f"{prefix}_{s}": scores[s] for s in SCORE_NAMES}


def best_metrics(epoch: int, val: Mapping[str, Any], test: Mapping[str, Any] | None,
                 class_columns: Sequence[str]) -> dict[str, Any]:
    """The best checkpoint's keys: its epoch, its validation scores, its test scores and per-class test IoU (NaN
    without a test split)."""
    nan = float("nan")
    iou = test["iou"] if test is not None else [nan] * len(class_columns)
    return {"best_epoch": epoch, **prefixed("best_val", val),
            **prefixed("test", test if test is not None else dict.fromkeys(SCORE_NAMES, nan)),
            **{f"{IOU_PREFIX}{name}": v for name, v in zip(class_columns, iou)}}


def epoch_metrics(epoch: int, train_loss: float, val: Mapping[str, Any], best: Mapping[str, Any], lr: float,
                  images_per_s: float, seconds: float, compile_seconds: float, pretrained: bool) -> dict[str, Any]:
    """One epoch's dict (METRIC_KEYS, then `iou_<class>`): this epoch's scores, then the best checkpoint's."""
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"], **prefixed("val", val), "lr": lr,
            "images_per_s": images_per_s, "seconds": seconds, "compile_seconds": compile_seconds, **best,
            "pretrained": pretrained}

