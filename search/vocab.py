"""The search's vocabulary: trial statuses and kinds, the keys a trial config carries, the metric names.

A leaf module: it imports nothing heavy (no Ray, torch, pandas), so every other module of `search` can use it and
one word means one thing everywhere: the metrics dict, the trial records, the Parquet columns and the report.
"""
from __future__ import annotations

import math
from typing import Any

from seg.data.classes import VOC_CLASSES
from seg.epoch_metrics import IOU_PREFIX, METRIC_KEYS  # noqa: F401 (the search's vocabulary: re-exported)

# Trial statuses. A trial ends completed (all its epochs), pruned (stopped early by ASHA) or failed.
COMPLETED, PRUNED, FAILED, RUNNING = "completed", "pruned", "failed", "running"
FINAL_STATUSES = (COMPLETED, PRUNED, FAILED)
STATUSES = (*FINAL_STATUSES, RUNNING)

# Trial kinds: a named fixed trial, a searched one (Optuna), or a seed rerun of another trial.
FIXED, SEARCHED, SEED = "fixed", "searched", "seed"
KINDS = (FIXED, SEARCHED, SEED)
SEED_SEP = "@seed"  # seed rerun names: <original name>@seed<s>; trial names never contain '@'

# Tune passes, in the order they run; each is one Tune experiment under <experiment>/tune/<pass>.
FIXED_PASS, SEARCH_PASS, SEEDS_PASS = "fixed", "search", "seeds"
PASSES = (FIXED_PASS, SEARCH_PASS, SEEDS_PASS)

# Keys a Tune trial config carries besides the TrainConfig fields.
FIXED_KEY = "segtune_fixed"  # passes of named trials: {FIXED_KEY: grid_search([complete config + name, ...])}
NAME_KEY, KIND_KEY = "segtune_name", "segtune_kind"
# segtune's id of a trial: its first Tune trial id, kept when a later run resumes it as a new Tune trial
TRIAL_KEY = "segtune_trial"
OPTUNA_KEY = "segtune_optuna_trial"  # the Optuna trial number a searched trial's values came from
FAILED_SCORE = 0.0  # what Optuna is told for a trial that cannot train: the floor of mIoU / pixel accuracy

# The per-epoch metrics dict's keys (METRIC_KEYS, then iou_<class>) are seg.epoch_metrics's, which builds it
# (docs/DESIGN.md): `val_*` this epoch, `best_*`, `test_*` and `iou_*` the best-val-mIoU checkpoint so far.


def iou_columns(class_names: tuple[str, ...] | list[str] = VOC_CLASSES) -> tuple[str, ...]:
    """`iou_<class>` column names: the test IoU of each class at the best checkpoint. Pass column-safe names
    (seg.data.classes.column_names; VOC's are); an experiment's own come from its experiment.json."""
    return tuple(f"{IOU_PREFIX}{c}" for c in class_names)


IOU_COLUMNS = iou_columns()  # VOC's; search.tables.experiment_iou_columns gives an experiment's own

def objective_key(metric: str) -> str:
    """The result key a finished trial is judged by (what the leaderboard ranks by and Optuna is told), for the
    space's `metric`: the highest 5-epoch mean so far for `val_miou_avg5`, the best checkpoint's score for
    `val_miou`, else the metric itself. ASHA and the Optuna study's intermediate values follow `metric` epoch by
    epoch."""
    return {"val_miou": "best_val_miou", "val_miou_avg5": "max_val_miou_avg5"}.get(metric, metric)


# Where a trial ran: one name, `host`, in the result, the record and the leaderboard.
HOST = "host"

# leaderboard.parquet / history.parquet layout version (docs/DESIGN.md); bump when a column changes meaning.
# 2: the leaderboard's best-checkpoint pixel accuracy is `best_val_pixel_acc` (was `val_pixel_acc`), the host
#    column is `host` (was `hostname`), fault-injection fields are gone, `schema_version` added.
# 3: the paper-style per-batch scores (`*_paper`) and the `paper_metric_batch` config column added.
# 4: `max_val_miou_avg5` (leaderboard, history), `val_miou_avg5` (history) and `objective_mean` (seed groups) added;
#    the leaderboard ranks on `objective` (was best_val_miou).
SCHEMA_VERSION = 4


def finite(x: Any) -> bool:
    """A real number that is not NaN or infinite (bools are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def rerun_name(original: str, seed: int) -> str:
    return f"{original}{SEED_SEP}{seed}"


def original_name(name: str) -> str:
    """`search-0003@seed2` -> `search-0003`."""
    return name.rsplit(SEED_SEP, 1)[0]
