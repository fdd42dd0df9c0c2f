"""Seed-robust ranking: rerun the best configurations with other seeds, rank by the mean over the seeds.

One seed can move test mIoU by about +-0.013 on VOC2007 (../shared/CALIBRATION.md), as much as many searched
differences. With a `seeds:` section in the space file,

    seeds: {top_k: 3, seeds: [1, 2], include_fixed: true}

`search.run` adds a third Tune pass after the search: the `top_k` best completed searched trials (by
their objective, what the leaderboard ranks by) and, with `include_fixed`, every completed fixed trial, each rerun
once per seed with only `TrainConfig.seed` changed. The pass runs all epochs with no scheduler (never pruned), resumes like the other
passes, and names its trials `<original name>@seed<s>` with kind `seed`.

This module plans the reruns (Ray-free); search.tune.passes runs them, search.tables ranks them. The leaderboard
then carries, on every row of a seed group (the original and its reruns): `seed_group` (the
original's name), `n_seeds` (completed runs in the group), `val_miou_mean` / `val_miou_std` and `test_miou_mean` /
`test_miou_std` (mean and sample standard deviation of `best_val_miou` and `test_miou` over those runs) and
`objective_mean`, and ranks by that mean where a row has one, so a lucky seed cannot carry a configuration to
the top.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search.vocab import COMPLETED, FIXED, SEARCHED, finite, original_name, rerun_name

if TYPE_CHECKING:
    from search.space import Space

__all__ = ["original_name", "plan_reruns", "rerun_name"]


def plan_reruns(space: "Space", records: dict[str, dict[str, Any]]) -> list[tuple[str, int, dict[str, Any]]]:
    """(original name, seed, TrainConfig fields) of every rerun: completed fixed trials first (in file order, with
    include_fixed), then the top_k completed searched trials by their objective (what the leaderboard ranks by).
    A seed equal to the original's own seed is skipped (that run exists already)."""
    spec = space.seeds
    if spec is None:
        return []
    done = [r for r in records.values() if r.get("status") == COMPLETED and r.get("config")]
    originals: list[dict[str, Any]] = []
    if spec.include_fixed:
        order = {n: i for i, n in enumerate(space.fixed)}
        originals += sorted((r for r in done if r.get("kind") == FIXED),
                            key=lambda r: order.get(r.get("name"), len(order)))
    if spec.top_k:
        searched = [r for r in done if r.get("kind") == SEARCHED and finite(r.get("objective"))]
        searched.sort(key=lambda r: (-r["objective"], str(r.get("name"))))
        originals += searched[:spec.top_k]
    plan = []
    for rec in originals:
        for seed in spec.seeds:
            if seed != rec["config"].get("seed"):
                plan.append((rec["name"], seed, {**rec["config"], "seed": seed}))
    return plan
