"""The per-epoch metrics dict: its keys, in order, and the one builder of it. Torch-free, so the search's
vocabulary (search.vocab) takes its names from here instead of spelling them again.

`val_*` is this epoch; `best_*`, `test_*` and `iou_*` belong to the best-val-mIoU checkpoint so far. `*_paper` are
the paper's per-batch-mean scores of the same predictions (seg.metrics.BatchMeanScores), kept only to compare with
its Table 4. `val_miou_avg5` is the mean val mIoU of the last AVG_EPOCHS epochs (fewer before then) and
`max_val_miou_avg5` its maximum so far: a run's score that one lucky epoch cannot make (on 213 validation images a
single epoch's mIoU swings by more than the gap between good configurations; README "Search efficiency"). Searches
rank on the dataset-level scores: `max_val_miou_avg5` or `best_val_miou`, as the space's `metric` says.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# What seg.evaluate.evaluate scores a split with (seg.metrics.SplitScores): a prefix makes them a split's keys.
SCORE_NAMES = ("miou", "pixel_acc", "miou_paper", "pixel_acc_paper")
IOU_PREFIX = "iou_"

AVG_EPOCHS = 5  # the window of val_miou_avg5
EPOCH_KEYS = ("epoch", "train_loss", "val_loss", *(f"val_{s}" for s in SCORE_NAMES), "val_miou_avg5",
              "max_val_miou_avg5", "lr", "images_per_s", "seconds", "compile_seconds")
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


def avg5_curve(val_mious: Sequence[float]) -> list[tuple[float, float]]:
    """(`val_miou_avg5`, `max_val_miou_avg5`) after each epoch whose val mIoU `val_mious` lists, in order: the mean
    of the last AVG_EPOCHS (of all of them before then), and the maximum of that mean over the full windows so far
    (before epoch AVG_EPOCHS: the mean itself, since a shorter window would let an early lucky epoch count more)."""
    out: list[tuple[float, float]] = []
    for i in range(len(val_mious)):
        window = val_mious[max(0, i + 1 - AVG_EPOCHS):i + 1]
        mean = sum(window) / len(window)
        out.append((mean, mean if i < AVG_EPOCHS or mean > out[-1][1] else out[-1][1]))
    return out


def avg5(val_mious: Sequence[float]) -> tuple[float, float]:
    """(`val_miou_avg5`, `max_val_miou_avg5`) after the last epoch of `val_mious` (`avg5_curve`)."""
    return avg5_curve(val_mious)[-1]


def epoch_metrics(epoch: int, train_loss: float, val: Mapping[str, Any], val_mious: Sequence[float],
                  best: Mapping[str, Any], lr: float, images_per_s: float, seconds: float, compile_seconds: float,
                  pretrained: bool) -> dict[str, Any]:
    """One epoch's dict (METRIC_KEYS, then `iou_<class>`): this epoch's scores, the val mIoU of every epoch so far
    averaged (`val_mious`, this one last), then the best checkpoint's."""
    avg, top = avg5(val_mious)
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"], **prefixed("val", val),
            "val_miou_avg5": avg, "max_val_miou_avg5": top, "lr": lr,
            "images_per_s": images_per_s, "seconds": seconds, "compile_seconds": compile_seconds, **best,
            "pretrained": pretrained}

