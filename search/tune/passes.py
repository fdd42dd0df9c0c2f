"""The three Tune passes of a search, each one Tune experiment under `<experiment>/tune/<pass>`:

  1. `fixed`: the named fixed trials, all epochs, no scheduler (never pruned);
  2. `search`: Optuna TPE (seeded with the fixed trials' scores) under ASHA on the space's metric;
  3. `seeds`: with a `seeds:` section only, reruns of the best trials with other seeds (search.seeds plans them).

A pass already marked done in experiment.json is skipped; an unfinished one is restored where the last run of the
same command left it (`Tuner.restore`: the searcher and scheduler come back from Tune's experiment checkpoint).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ray import tune

from search.experiment import Experiment, PassInterrupted
from search.records import (collect_records, named_trial_config, read_record, record_path, trial_dirname,
                            trial_id_from_dirname)
from search.seeds import plan_reruns
from search.space import Space
from search.tables import TableWriter
from search.tune.recorder import TrialRecorder
from search.tune.searchers import build_scheduler, build_searcher, fixed_trial_seeds
from search.tune.trainable import RunInfo, train_trial
from search.vocab import FINAL_STATUSES, FIXED_KEY, KIND_KEY, SEARCHED, SEED, rerun_name


def run_fixed_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 1: the fixed trials with their full budget, no scheduler (never pruned)."""
    if not space.fixed or exp.pass_done("fixed"):
        return
    print(f"pass 1: {len(space.fixed)} fixed trials: {', '.join(space.fixed)}")
    configs = [named_trial_config(n, c.resolved().model_dump(mode="json")) for n, c in space.fixed.items()]
    fit_pass("fixed", space, exp, run, {FIXED_KEY: tune.grid_search(configs)}, verbose, len(configs),
             lambda: tune.TuneConfig(num_samples=1, max_concurrent_trials=space.budget.max_concurrent,
                                     **trial_naming()))


def run_searched_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 2: Optuna TPE (seeded with the fixed trials) under ASHA on the space's metric."""
    if space.budget.num_samples == 0 or exp.pass_done("search"):
        return
    print(f"pass 2: {space.budget.num_samples} searched trials over {', '.join(space.searched_names)} "
          f"(TPE{', ASHA' if space.scheduler else ''} on {space.metric})")
    param_space = {**space.defaults.resolved().model_dump(mode="json"), KIND_KEY: SEARCHED}
    fit_pass("search", space, exp, run, param_space, verbose, space.budget.num_samples, lambda: tune.TuneConfig(
        search_alg=build_searcher(space, fixed_trial_seeds(space, exp.dir)), scheduler=build_scheduler(space),
        metric=space.metric, mode="max", num_samples=space.budget.num_samples,
        max_concurrent_trials=space.budget.max_concurrent, **trial_naming()))


def run_seed_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 3: the seed reruns, all epochs, no scheduler (never pruned); resumable like passes 1 and 2."""
    if space.seeds is None or exp.pass_done("seeds"):
        return
    plan = plan_reruns(space, collect_records(exp.dir))
    if not plan:
        print("pass 3: no completed trial to rerun with other seeds")
        exp.mark_done("seeds")
        return
    groups = list(dict.fromkeys(name for name, _, _ in plan))
    print(f"pass 3: {len(plan)} seed reruns (seeds {space.seeds.seeds}) of {', '.join(groups)}")
    configs = [named_trial_config(rerun_name(name, seed), fields, kind=SEED) for name, seed, fields in plan]
    fit_pass("seeds", space, exp, run, {FIXED_KEY: tune.grid_search(configs)}, verbose, len(configs),
             lambda: tune.TuneConfig(num_samples=1, max_concurrent_trials=space.budget.max_concurrent,
                                     **trial_naming()))


def fit_pass(pass_name: str, space: Space, exp: Experiment, run: RunInfo, param_space: dict, verbose: int,
             expected_trials: int, make_tune_config: Callable[[], tune.TuneConfig]) -> None:
    """Start the pass, or restore it where an earlier run of the same command left off (the searcher and
    scheduler state come back from Tune's experiment checkpoint, so `make_tune_config` is only called for a start)."""
    trainable = tune.with_resources(tune.with_parameters(train_trial, run=run),
                                    {"cpu": space.resources.cpus, "gpu": space.resources.gpus})
    path = exp.tune_path(pass_name)
    if tune.Tuner.can_restore(path):
        print(f"  restoring {pass_name} pass from {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        run_config = tune.RunConfig(
            name=pass_name, storage_path=exp.tune_storage, verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=space.budget.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[TrialRecorder(str(exp.dir.resolve()), pass_name, run, TableWriter(exp.dir))],
        )
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=make_tune_config(),
                           run_config=run_config)
    grid = tuner.fit()
    ids = [trial_id_from_dirname(Path(r.path).name, r.config or {}) for r in grid if r.path]
    # Tune returns normally after Ctrl+C / SIGTERM (its state saved, the in-memory trial statuses unreliable):
    # the pass is done only when the recorder saw every trial end.
    finished = [t for t in ids if (read_record(record_path(exp.dir, t)) or {}).get("status") in FINAL_STATUSES]
    if len(finished) < max(len(ids), expected_trials):
        raise PassInterrupted(f"the {pass_name} pass stopped with {len(finished)} of {expected_trials} trials "
                              f"finished")
    # The trials Tune finished this pass with. A driver killed after starting a trial but before Tune saved its
    # state leaves a record of a trial the restored pass never heard of (it re-created that work under a new id);
    # the leaderboard leaves such orphans out.
    exp.update(trial_ids={**exp.read().get("trial_ids", {}), pass_name: ids})
    exp.mark_done(pass_name)


def trial_naming() -> dict[str, Any]:
    # reuse_actors: a finished trial's worker process (torch and seg already imported) takes the next trial
    return {"trial_dirname_creator": trial_dirname, "trial_name_creator": trial_dirname, "reuse_actors": True}
