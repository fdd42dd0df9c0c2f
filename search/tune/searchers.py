"""The searcher and the scheduler of the searched pass: Optuna TPE over the space, seeded with the fixed trials'
scores, under ASHA on the space's metric."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search.records import collect_records
from search.space import Space
from search.vocab import COMPLETED, FAILED, FIXED

STUDY_NAME = "segtune"


def fixed_trial_seeds(space: Space, exp_dir: Path) -> list[tuple[dict[str, Any], float]]:
    """(searched values, score) of each finished fixed trial, for the TPE sampler's history.

    Completed trials give their last reported metric; diverged ones the 0.0 they reported. Trials that failed for
    reasons unrelated to their hyperparameters (missing weights, a crash) are left out, and so are trials validated
    on images they trained on (e.g. train_split trainval): their score is not comparable."""
    seeds = []
    for rec in collect_records(exp_dir).values():
        if rec.get("kind") != FIXED or rec.get("objective") is None or val_in_training(rec["config"]):
            continue
        diverged = rec.get("status") == FAILED and str(rec.get("error", "")).startswith("NonFiniteLossError")
        if rec.get("status") != COMPLETED and not diverged:
            continue
        point = space.optuna_space.point(rec["config"])
        if point:
            seeds.append((point, float(rec["objective"])))
    return seeds


def val_in_training(cfg: dict[str, Any]) -> bool:
    """Whether a config validates on images it trains on (its score then says little about generalisation)."""
    train, val = cfg.get("train_split", "train"), cfg.get("val_split", "val")
    return val in ("train", "trainval") or (train == "trainval" and val == "val")


def build_searcher(space: Space, seeds: list[tuple[dict[str, Any], float]]) -> OptunaSearch:
    """OptunaSearch over the space's define-by-run params, its study pre-filled with the fixed trials' results."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()  # pickled with the searcher in Tune's experiment checkpoint
    sampler = optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=space.sampler.n_startup_trials)
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="maximize", sampler=sampler)
    for point, value in seeds:
        study.add_trial(optuna.trial.create_trial(params=point, distributions=space.optuna_space.distributions(point),
                                                  value=value))
    if seeds:
        print(f"  TPE seeded with {len(seeds)} fixed trials")
    return OptunaSearch(space=space.optuna_space, metric=space.metric, mode="max", sampler=sampler,
                        storage=storage, study_name=STUDY_NAME)


def build_scheduler(space: Space) -> ASHAScheduler | None:
    if space.scheduler is None:
        return None
    # time_attr "epoch": the trainer's own counter survives retries and restores (training_iteration restarts)
    return ASHAScheduler(time_attr="epoch", max_t=space.max_epochs, grace_period=space.scheduler.grace_period,
                         reduction_factor=space.scheduler.reduction_factor)
