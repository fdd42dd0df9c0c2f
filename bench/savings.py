"""What ASHA pruning saves a search, from its leaderboard (pure functions): the cumulative epochs of searched trials,
in the order they finished, until the first one reaches a target val mIoU (bench.search's second benchmark)."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from search.vocab import FINAL_STATUSES, FIXED, SEARCHED


def best_fixed_miou(board: pd.DataFrame) -> float | None:
    """The best val mIoU among the finished fixed trials (None if none scored)."""
    fixed = board[(board["kind"] == FIXED) & board["best_val_miou"].notna()]
    return float(fixed["best_val_miou"].max()) if len(fixed) else None


def finish_order(board: pd.DataFrame, kinds: tuple[str, ...] = (SEARCHED,)) -> pd.DataFrame:
    """The finished trials of the given kinds, in the order they finished (ties: earlier start first)."""
    done = board[board["kind"].isin(kinds) & board["status"].isin(FINAL_STATUSES) & board["finished_at"].notna()].copy()
    done["_end"] = pd.to_datetime(done["finished_at"], utc=True, format="ISO8601")
    done["_start"] = pd.to_datetime(done["started_at"], utc=True, format="ISO8601")
    return done.sort_values(["_end", "_start", "trial_id"], kind="stable").drop(columns=["_end", "_start"])


def epochs_to_target(board: pd.DataFrame, target: float, kinds: tuple[str, ...] = (SEARCHED,)) -> dict[str, Any]:
    """Cumulative epochs the trials of `kinds` had run, in finish order, when the first one finished with
    best_val_miou >= target (its own epochs included). `reached` is False when none did."""
    order = finish_order(board, kinds)
    epochs = order["epochs_run"].fillna(0).astype(int)
    cum = epochs.cumsum()
    hit = (order["best_val_miou"].fillna(-math.inf) >= target).to_numpy()
    out: dict[str, Any] = {"target": target, "reached": bool(hit.any()), "epochs_to_target": None,
                           "trials_to_target": None, "first_trial_at_target": None,
                           "total_epochs": int(epochs.sum()), "finished_trials": int(len(order))}
    if hit.any():
        i = int(hit.argmax())
        out.update(epochs_to_target=int(cum.iloc[i]), trials_to_target=i + 1,
                   first_trial_at_target=str(order["name"].iloc[i]))
    return out


def search_summary(board: pd.DataFrame, target: float) -> dict[str, Any]:
    """What one search run spent and found: epochs, statuses, best scores, epochs to `target`."""
    searched = board[board["kind"] == SEARCHED]
    starts = pd.to_datetime(searched["started_at"], utc=True, format="ISO8601")
    ends = pd.to_datetime(searched["finished_at"], utc=True, format="ISO8601")
    span = (ends.max() - starts.min()).total_seconds() if len(searched) and ends.notna().any() else None
    return {
        **epochs_to_target(board, target),
        "total_epochs_all_trials": int(board["epochs_run"].fillna(0).sum()),
        "status_counts": {str(k): int(v) for k, v in searched["status"].value_counts().items()},
        "best_fixed_val_miou": best_fixed_miou(board),
        "best_searched_val_miou": float(searched["best_val_miou"].max()) if searched["best_val_miou"].notna().any()
        else None,
        "search_pass_seconds": span,  # first searched start to last searched finish (1 s resolution)
    }


def efficiency_ratio(pruned: dict[str, Any], unpruned: dict[str, Any]) -> float | None:
    if not (pruned["reached"] and unpruned["reached"]) or not unpruned["epochs_to_target"]:
        return None
    return pruned["epochs_to_target"] / unpruned["epochs_to_target"]
