"""Synthetic trials: made-up learning curves and trial records, with no model, for measuring what the search itself
costs (bench.scale) and for tests that need many trials fast.

`synthetic_epochs(fields, key, epochs)` yields one metrics dict per epoch in the trainer's vocabulary
(docs/DESIGN.md): a saturating val mIoU whose ceiling depends on the architecture and on how far lr is from 1e-3,
seeded noise, and the best-val-mIoU checkpoint's fields (best_*, test_*, iou_<class>) carried forward.
`synthetic_record` builds the record the driver would keep for such a trial (search.records), so the tables and
the report can be driven at any size without Ray. Ray-free and torch-free.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from collections.abc import Iterator
from typing import Any

from search.records import final_status
from search.vocab import FAILED, HOST, IOU_COLUMNS, SEARCH_PASS, SEARCHED, objective_key
from seg.epoch_metrics import avg5

ARCH_CEILING = {"fcn": 0.35, "fcn_dilated": 0.40, "resnet34_fcn": 0.55, "unet": 0.50}  # val mIoU reached slowly
EPOCH_SECONDS = 30.0  # the wall time each synthetic epoch claims (it takes none)
IMAGES_PER_S = 200.0
NOISE = 0.01  # sd of the per-epoch val mIoU noise
PAPER_SHARE = 0.8  # the paper-style (per-batch mean) mIoU as a share of the dataset-level one


def _rng(key: str) -> random.Random:
    return random.Random(int(hashlib.sha1(key.encode()).hexdigest()[:12], 16))


def synthetic_epochs(fields: dict[str, Any], key: str, epochs: int, start: int = 1) -> Iterator[dict[str, Any]]:
    """Metrics dicts for epochs `start`..`epochs` of a trial with TrainConfig `fields` (same key: same curve)."""
    rng = _rng(key)
    lr = float(fields.get("lr") or 1e-3)
    ceiling = ARCH_CEILING.get(str(fields.get("arch")), 0.3) * math.exp(-0.5 * (math.log10(lr) + 3) ** 2)
    tau = 2.0 + rng.random() * 4.0  # epochs to reach 63% of the ceiling
    class_share = [rng.uniform(0.2, 1.6) for _ in IOU_COLUMNS]
    best: dict[str, Any] = {}
    vals: list[float] = []
    for epoch in range(1, epochs + 1):
        val = max(0.0, ceiling * (1 - math.exp(-epoch / tau)) + rng.gauss(0, NOISE))
        vals.append(val)
        avg, top = avg5(vals)
        m = {"epoch": epoch, "train_loss": 0.3 + 2.2 * math.exp(-epoch / tau), "val_loss": 0.5 + 2.0 *
             math.exp(-epoch / tau), "val_miou": val, "val_pixel_acc": 0.7 + 0.25 * val, "lr": lr,
             "val_miou_avg5": avg, "max_val_miou_avg5": top,
             "val_miou_paper": PAPER_SHARE * val, "val_pixel_acc_paper": 0.7 + 0.25 * val,
             "images_per_s": IMAGES_PER_S, "seconds": EPOCH_SECONDS, "compile_seconds": 0.0, "pretrained": False}
        if not best or val > best["best_val_miou"]:
            best = {"best_epoch": epoch, "best_val_miou": val, "best_val_pixel_acc": m["val_pixel_acc"],
                    "best_val_miou_paper": m["val_miou_paper"], "best_val_pixel_acc_paper": m["val_pixel_acc_paper"],
                    "test_miou": 0.95 * val, "test_pixel_acc": 0.7 + 0.24 * val,
                    "test_miou_paper": PAPER_SHARE * 0.95 * val, "test_pixel_acc_paper": 0.7 + 0.24 * val,
                    **{c: min(1.0, val * s) for c, s in zip(IOU_COLUMNS, class_share)}}
        if epoch >= start:
            yield {**m, **best}


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


def synthetic_record(i: int, fields: dict[str, Any], epochs_run: int, kind: str = SEARCHED,
                     name: str | None = None, failed: bool = False, t0: float = 1.8e9) -> dict[str, Any]:
    """The final record of synthetic trial number `i`: `epochs_run` of its `fields["epochs"]` epochs (fewer:
    pruned), or failed after them."""
    trial_id = f"syn{i:06d}"
    rec: dict[str, Any] = {
        "trial_id": trial_id, "name": name or f"search-{i + 1:04d}", "kind": kind, "pass_name": SEARCH_PASS,
        "config": dict(fields), "gpus": 0.25, "cpus": 1.0, "metric": "val_miou",
        "history": list(synthetic_epochs(fields, trial_id, epochs_run)), HOST: "node-0",
        "device_name": "synthetic", "started_at": iso(t0 + 10 * i), "finished_at": iso(t0 + 10 * i + 30 * epochs_run),
        "tune_trials": [{"tune_trial_id": trial_id, "attempt": 0, "num_failures": 0}], "num_failures": 0,
        "checkpoints": [], "optuna_trial": i,
    }
    rec["objective"] = rec["history"][-1][objective_key("val_miou")] if rec["history"] else 0.0
    if failed:
        rec.update(status=FAILED, error="RuntimeError: synthetic failure", error_type="crash", pruned_at_epoch=None)
    else:
        rec.update(final_status(rec))
    return rec
