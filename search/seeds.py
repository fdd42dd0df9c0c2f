"""Seed-robust ranking: rerun the best configurations with other seeds, rank by the mean over the seeds.

One seed can move test mIoU by about +-0.013 on VOC2007 (../shared/CALIBRATION.md), as much as many searched
differences. With a `seeds:` section in the space file,

    seeds: {top_k: 3, seeds: [1, 2], include_fixed: true}

`search.run` adds a third Tune pass after the search: the `top_k` best completed searched trials (by
best_val_miou) and, with `include_fixed`, every completed fixed trial, each rerun once per seed with only
`TrainConfig.seed` changed. The pass runs all epochs with no scheduler (never pruned), resumes like the other
passes, and names its trials `<original name>@seed<s>` with kind `seed`.

The leaderboard then carries, on every row of a seed group (the original and its reruns): `seed_group` (the
original's name), `n_seeds` (completed runs in the group), `val_miou_mean` / `val_miou_std` and `test_miou_mean` /
`test_miou_std` (mean and sample standard deviation of `best_val_miou` and `test_miou` over those runs), and ranks
by the mean where a row has one, so a lucky seed cannot carry a configuration to the top.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from search.run import Experiment
    from search.space import Space
    from search.trainable import RunInfo

SEED_SEP = "@seed"  # rerun names: <original name>@seed<s>; trial names never contain '@'
SEED_KIND = "seed"
SEED_COLUMNS: dict[str, tuple[str, str]] = {
    "seed_group": ("string", "name of the original trial whose seed reruns this row belongs to (the original "
                             "included); null outside seed groups"),
    "n_seeds": ("Int64", "completed runs (different seeds) in the row's seed group"),
    "val_miou_mean": ("float64", "mean best_val_miou over the seed group's completed runs"),
    "val_miou_std": ("float64", "sample standard deviation of best_val_miou over the group (null for one run)"),
    "test_miou_mean": ("float64", "mean test_miou over the seed group's completed runs"),
    "test_miou_std": ("float64", "sample standard deviation of test_miou over the group (null for one run)"),
}


def rerun_name(original: str, seed: int) -> str:
    return f"{original}{SEED_SEP}{seed}"


def original_name(name: str) -> str:
    """`search-0003@seed2` -> `search-0003`."""
    return name.rsplit(SEED_SEP, 1)[0]


# ---------------------------------------------------------------------------------------------------------------
# Pass 3: which trials to rerun, and the Tune pass that reruns them
# ---------------------------------------------------------------------------------------------------------------
def plan_reruns(space: "Space", records: dict[str, dict[str, Any]]) -> list[tuple[str, int, dict[str, Any]]]:
    """(original name, seed, TrainConfig fields) of every rerun: completed fixed trials first (in file order, with
    include_fixed), then the top_k completed searched trials by best_val_miou. A seed equal to the original's own
    seed is skipped (that run exists already)."""
    spec = space.seeds
    if spec is None:
        return []
    done = [r for r in records.values() if r.get("status") == "completed" and r.get("config")]
    originals: list[dict[str, Any]] = []
    if spec.include_fixed:
        order = {n: i for i, n in enumerate(space.fixed)}
        originals += sorted((r for r in done if r.get("kind") == "fixed"),
                            key=lambda r: order.get(r.get("name"), len(order)))
    if spec.top_k:
        searched = [r for r in done if r.get("kind") == "searched" and _finite(_best(r))]
        searched.sort(key=lambda r: (-_best(r), str(r.get("name"))))
        originals += searched[:spec.top_k]
    plan = []
    for rec in originals:
        for seed in spec.seeds:
            if seed != rec["config"].get("seed"):
                fields = {**rec["config"], "seed": seed, "fail_at_epoch": None}  # test fault injection: not rerun
                plan.append((rec["name"], seed, fields))
    return plan


def run_seed_trials(space: "Space", exp: "Experiment", run: "RunInfo", verbose: int) -> None:
    """Pass 3: the seed reruns, all epochs, no scheduler (never pruned); resumable like passes 1 and 2."""
    from ray import tune

    from search.leaderboard import collect_records
    from search.run import _trial_naming, fit_pass
    from search.trainable import FIXED_KEY, KIND_KEY, NAME_KEY

    if space.seeds is None or exp.pass_done("seeds"):
        return
    plan = plan_reruns(space, collect_records(exp.dir))
    if not plan:
        print("pass 3: no completed trial to rerun with other seeds")
        exp.mark_done("seeds")
        return
    groups = list(dict.fromkeys(name for name, _, _ in plan))
    print(f"pass 3: {len(plan)} seed reruns (seeds {space.seeds.seeds}) of {', '.join(groups)}")
    configs = [{**fields, NAME_KEY: rerun_name(name, seed), KIND_KEY: SEED_KIND} for name, seed, fields in plan]
    fit_pass("seeds", space, exp, run, {FIXED_KEY: tune.grid_search(configs)}, verbose, len(configs),
             lambda: tune.TuneConfig(num_samples=1, max_concurrent_trials=space.budget.max_concurrent,
                                     **_trial_naming()))


# ---------------------------------------------------------------------------------------------------------------
# Leaderboard: the group columns and the ranking
# ---------------------------------------------------------------------------------------------------------------
def add_seed_columns(board: pd.DataFrame) -> pd.DataFrame:
    """Fill SEED_COLUMNS on every row of a seed group (an original with at least one `seed` rerun, and those
    reruns); other rows keep nulls. Aggregates are over the group's completed rows."""
    board = board.copy()
    reruns = board["kind"] == SEED_KIND
    group = pd.Series(pd.NA, index=board.index, dtype="string")
    group[reruns] = board.loc[reruns, "name"].map(original_name)
    originals = set(group[reruns].dropna())
    is_original = ~reruns & board["name"].isin(originals)
    group[is_original] = board.loc[is_original, "name"]
    board["seed_group"] = group
    done = board[group.notna() & (board["status"] == "completed")]
    agg = done.groupby("seed_group").agg(
        n_seeds=("name", "size"), val_miou_mean=("best_val_miou", "mean"), val_miou_std=("best_val_miou", "std"),
        test_miou_mean=("test_miou", "mean"), test_miou_std=("test_miou", "std"))
    for col in agg.columns:
        board[col] = board["seed_group"].map(agg[col]).astype(SEED_COLUMNS[col][0])
    return board


def ranked(board: pd.DataFrame) -> pd.DataFrame:
    """Best first: by the seed-group mean of best_val_miou where a row has one, else its own best_val_miou. A seed
    group's rows stay together (best run first); ties by name. Works on frames without the seed columns too."""
    score = board["best_val_miou"].astype("float64")
    if "val_miou_mean" in board.columns:
        score = board["val_miou_mean"].astype("float64").fillna(score)
    group = board["name"].astype("string")
    if "seed_group" in board.columns:
        group = board["seed_group"].astype("string").fillna(group)
    keyed = board.assign(_score=score, _group=group)
    keyed = keyed.sort_values(["_score", "_group", "best_val_miou", "name"], ascending=[False, True, False, True],
                              na_position="last", kind="stable")
    return keyed.drop(columns=["_score", "_group"]).reset_index(drop=True)


def _best(rec: dict[str, Any]) -> float | None:
    hist = rec.get("history") or []
    return hist[-1].get("best_val_miou") if hist else None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


__all__ = ["SEED_COLUMNS", "SEED_KIND", "SEED_SEP", "add_seed_columns", "original_name", "plan_reruns", "ranked",
           "rerun_name", "run_seed_trials"]
