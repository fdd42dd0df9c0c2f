"""The three passes of a search, each run as Tune experiments under `<experiment>/tune/<pass>/run-<k>/`:

  1. `fixed`: the named fixed trials, all epochs, no scheduler (never pruned);
  2. `search`: Optuna TPE (seeded with the fixed trials' scores) under ASHA on the space's metric;
  3. `seeds`: with a `seeds:` section only, reruns of the best trials with other seeds (search.seeds plans them).

segtune's records decide what is left to do, not Tune's saved state: every run of the command starts a new Tune
run (`run-<k>`) for each unfinished pass with only the trials that have no final record. A trial recorded
completed, pruned or failed is never run again; one that was running when the driver stopped continues from its
last recorded checkpoint under its own name and id; the searcher and the scheduler are rebuilt from the records
(search.tune.searchers). We never `Tuner.restore`, so how often Tune saves its own experiment state
(`TUNE_GLOBAL_CHECKPOINT_S`, default "auto") does not matter for correctness and is left at Tune's default.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ray import tune

from search import storage
from search.experiment import Experiment, PassInterrupted
from search.fragments import TableWriter
from search.records import collect_records, named_trial_config, pass_records, resume_checkpoints
from search.tune.layout import trial_dirname
from search.seeds import plan_reruns
from search.space import Space
from search.tune.cost import CostMeter
from search.tune.recorder import TrialRecorder
from search.tune.searchers import build_scheduler, build_searcher
from search.tune.run_info import RunInfo
from search.tune.synthetic import synthetic_trial
from search.tune.trainable import train_trial
from search.vocab import (FINAL_STATUSES, FIXED, FIXED_KEY, FIXED_PASS, KIND_KEY, NAME_KEY, SEARCH_PASS, SEARCHED,
                          SEED, SEEDS_PASS, TRIAL_KEY, objective_key, rerun_name)


SAMPLER_NAMES = {"tpe": "TPE", "random": "random sampling"}  # sampler.kind, as the console says it


def run_fixed_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 1: the fixed trials with their full budget, no scheduler (never pruned)."""
    if not space.fixed or exp.pass_done(FIXED_PASS):
        return
    print(f"pass 1: {len(space.fixed)} fixed trials: {', '.join(space.fixed)}")
    configs = {n: c.resolved().model_dump(mode="json") for n, c in space.fixed.items()}
    run_named_pass(FIXED_PASS, configs, FIXED, space, exp, run, verbose)


def run_searched_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 2: Optuna TPE (seeded with the fixed trials) under ASHA on the space's metric."""
    if space.budget.num_samples == 0 or exp.pass_done(SEARCH_PASS):
        return
    print(f"pass 2: {space.budget.num_samples} searched trials over {', '.join(space.searched_names)} "
          f"({SAMPLER_NAMES[space.sampler.kind]}{', ASHA' if space.scheduler else ''} on {space.metric})")
    final, unfinished = pass_records(exp.dir, SEARCH_PASS)
    remaining = space.budget.num_samples - len(final)
    if remaining > 0:
        if final or unfinished:
            print(f"  {len(final)} already finished; {len(unfinished)} to resume, "
                  f"{remaining - len(unfinished)} still to start")
        recorded = {**final, **unfinished}
        param_space = {**space.defaults.resolved().model_dump(mode="json"), KIND_KEY: SEARCHED}
        fit_pass(SEARCH_PASS, space, exp, run, param_space, tune.TuneConfig(
            search_alg=build_searcher(space, exp.dir, recorded), scheduler=build_scheduler(space, recorded),
            num_samples=remaining, max_concurrent_trials=space.budget.max_concurrent, **trial_naming()),
            resume={t: resume_checkpoints(r, exp.moved) for t, r in unfinished.items()}, verbose=verbose,
            searched_so_far=len(recorded))
    final, _ = pass_records(exp.dir, SEARCH_PASS)
    finish_pass(exp, SEARCH_PASS, len(final), space.budget.num_samples)


def run_seed_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 3: the seed reruns, all epochs, no scheduler (never pruned). The plan is made once, from the records
    of the finished search, and kept in experiment.json, so a resumed pass reruns the same trials."""
    if space.seeds is None or exp.pass_done(SEEDS_PASS):
        return
    plan = exp.read().get("seed_plan")
    if plan is None:
        plan = [[name, seed, fields] for name, seed, fields in plan_reruns(space, collect_records(exp.dir))]
        exp.update(seed_plan=plan)
    if not plan:
        print("pass 3: no completed trial to rerun with other seeds")
        exp.mark_done(SEEDS_PASS)
        return
    groups = list(dict.fromkeys(name for name, _, _ in plan))
    print(f"pass 3: {len(plan)} seed reruns (seeds {space.seeds.seeds}) of {', '.join(groups)}")
    configs = {rerun_name(name, seed): fields for name, seed, fields in plan}
    run_named_pass(SEEDS_PASS, configs, SEED, space, exp, run, verbose)


def run_named_pass(pass_name: str, configs: dict[str, dict[str, Any]], kind: str, space: Space, exp: Experiment,
                   run: RunInfo, verbose: int) -> None:
    """A pass of named trials (fixed, seed reruns): a grid of the configs that have no final record yet."""
    final, unfinished = pass_records(exp.dir, pass_name)
    by_name = {r.get("name"): r for r in (*final.values(), *unfinished.values())}
    todo = [n for n in configs if by_name.get(n, {}).get("status") not in FINAL_STATUSES]
    if todo:
        if len(todo) < len(configs):
            print(f"  {len(configs) - len(todo)} already finished; running {', '.join(todo)}")
        grid = [{**named_trial_config(n, configs[n], kind),
                 **({TRIAL_KEY: by_name[n]["trial_id"]} if n in by_name else {})} for n in todo]
        fit_pass(pass_name, space, exp, run, {FIXED_KEY: tune.grid_search(grid)}, tune.TuneConfig(
            num_samples=1, max_concurrent_trials=space.budget.max_concurrent, **trial_naming()),
            resume={by_name[n]["trial_id"]: resume_checkpoints(by_name[n], exp.moved) for n in todo
                    if n in by_name},
            verbose=verbose)
    final, _ = pass_records(exp.dir, pass_name)
    finish_pass(exp, pass_name, len({r.get("name") for r in final.values()} & set(configs)), len(configs))


def fit_pass(pass_name: str, space: Space, exp: Experiment, run: RunInfo, param_space: dict,
             tune_config: tune.TuneConfig, resume: dict[str, tuple[str, ...]], verbose: int,
             searched_so_far: int = 0) -> None:
    """One Tune run of a pass: `tune/<pass>/run-<k>/`, k counting the runs of this pass so far."""
    attempt = exp.next_attempt(pass_name)
    run = dataclasses.replace(run, resume=resume, run_storage=storage.join(exp.tune_path(pass_name), f"run-{attempt}"))
    fn = synthetic_trial if run.synthetic else train_trial  # synthetic: bench.scale, no model
    trainable = tune.with_resources(tune.with_parameters(fn, run=run),
                                    {"cpu": space.resources.cpus, "gpu": space.resources.gpus})
    tables = TableWriter(exp.dir, exp.store.push, exp.store.remove)
    recorder = TrialRecorder(str(exp.dir.resolve()), pass_name, run, tables, attempt=attempt,
                             searched_so_far=searched_so_far, publish=exp.store.push)
    reporter = progress_table(space, pass_name)
    run_config = tune.RunConfig(
        name=f"run-{attempt}", storage_path=exp.tune_path(pass_name), verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=space.budget.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[recorder, *tracking_callbacks(space, pass_name)], progress_reporter=reporter,
    )
    meter = metered(CostMeter(), recorder, tables, reporter, tune_config)
    try:
        tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config).fit()
    finally:
        recorder.push_journal(force=True)
        tables.close()  # the pass's fragments compacted into leaderboard.parquet / history.parquet
        cost = meter.summary(pass_name=pass_name, run=attempt, trials_finished=meter.calls["tables.trial_finished"],
                             tables_wall_s=round(tables.seconds, 3))
        exp.update(driver_cost=[*exp.read().get("driver_cost", []), cost])


def metered(meter: CostMeter, recorder: TrialRecorder, tables: TableWriter, reporter: tune.ProgressReporter,
            tune_config: tune.TuneConfig) -> CostMeter:
    """Time the calls Tune makes into segtune's parts, the searcher and the scheduler (search.tune.cost)."""
    meter.wrap(recorder, "records", ("on_trial_start", "on_trial_result", "on_checkpoint", "on_trial_complete",
                                     "on_trial_error"))
    meter.wrap(tables, "tables", ("trial_finished", "close"))
    meter.wrap(reporter, "progress", ("should_report", "report"))
    if tune_config.search_alg is not None:
        meter.wrap(tune_config.search_alg, "searcher", ("suggest", "on_trial_result", "on_trial_complete"))
    if tune_config.scheduler is not None:
        meter.wrap(tune_config.scheduler, "scheduler", ("on_trial_add", "on_trial_result", "on_trial_complete",
                                                        "on_trial_remove", "choose_trial_to_run"))
    return meter


def finish_pass(exp: Experiment, pass_name: str, finished: int, expected: int) -> None:
    """Mark the pass done when every trial it plans has a final record. Tune returns normally after Ctrl+C /
    SIGTERM, so a pass that returned is not necessarily finished: then the same command resumes it."""
    if finished < expected:
        raise PassInterrupted(f"the {pass_name} pass stopped with {finished} of {expected} trials finished")
    exp.mark_done(pass_name)


def progress_table(space: Space, pass_name: str) -> tune.CLIReporter:
    """Every `tracking.progress_s` seconds while trials train: each trial's searched values (a named trial's name),
    epoch, this epoch's val mIoU and the best so far, the space's metric and its objective (Tune's CLIReporter;
    `search.run` selects Tune's classic console output for it)."""
    columns = ({p: p for p in space.searched_names} if pass_name == SEARCH_PASS else
               {f"{FIXED_KEY}/{NAME_KEY}": "name", f"{FIXED_KEY}/arch": "arch", f"{FIXED_KEY}/lr": "lr"})
    return tune.CLIReporter(
        parameter_columns=columns,
        metric_columns={k: k for k in ("epoch", "val_miou", "best_val_miou", space.metric,
                                        objective_key(space.metric))},
        max_report_frequency=space.tracking.progress_s, metric=space.metric, mode="max", sort_by_metric=True,
        max_progress_rows=25, print_intermediate_tables=True)


def tracking_callbacks(space: Space, pass_name: str) -> list[tune.Callback]:
    """MLflow (`tracking: {mlflow: {tracking_uri, experiment_name}}`): one MLflow run per Tune trial, its config as
    params and every epoch's metrics."""
    if space.tracking.mlflow is None:
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback  # imports mlflow: only when asked for

    uri = space.tracking.mlflow.tracking_uri
    if "://" not in uri:  # a local SQLite file, absolute (Tune changes the working directory)
        uri = f"sqlite:///{Path(uri).expanduser().resolve()}"
    return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=space.tracking.mlflow.experiment_name or space.name,
                                 tags={"segtune_pass": pass_name}, save_artifact=False)]


def trial_naming() -> dict[str, Any]:
    # reuse_actors: a finished trial's worker process (torch and seg already imported) takes the next trial
    return {"trial_dirname_creator": trial_dirname, "trial_name_creator": trial_dirname, "reuse_actors": True}
