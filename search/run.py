"""Run a search: `python -m search.run SPACE.yaml [--address ADDR] [--fresh] [--debug] [--results DIR]`.

Two Tune passes over one experiment folder `results/<name>/`:
  1. the fixed trials, all epochs, no scheduler (never pruned);
  2. the searched trials: Optuna TPE, seeded with the fixed trials' scores, under ASHA on the space's metric.
Rerunning the same command resumes whatever did not finish (per pass, `Tuner.restore`); `--fresh` starts a new
experiment next to the old one; a space file edited since the experiment started is refused, naming the keys.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.provenance import git_commit, hardware, now_iso, versions
from search.space import Space, SpaceError, changed_keys, load_space
from search.trainable import KIND_KEY, SEARCHED, RunInfo, write_json_atomic

STUDY_NAME = "segtune"
FINAL_STATUSES = ("completed", "pruned", "failed")


def main(argv: list[str] | None = None) -> int:
    # Checkpointing every epoch of short trials trips Tune's "snapshotting may become a bottleneck" warning; at a
    # few trials per minute it is not one.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    args = parse_args(argv)
    try:
        space = load_space(args.space)
        space = apply_overrides(space, args)
        cluster = start_ray(args.address, dashboard=not args.no_dashboard, num_cpus=args.num_cpus, debug=args.debug)
        check_cluster_fits(space, args.address)
        exp = open_experiment(space, args, cluster)
        prepare_data(space, exp, joining_cluster=args.address is not None)
        run = RunInfo(exp_dir=str(exp.dir.resolve()), metric=space.metric, cpus=space.resources.cpus,
                      gpus=space.resources.gpus)
        run_fixed_trials(space, exp, run, verbose=args.verbose)
        run_searched_trials(space, exp, run, verbose=args.verbose)
        finish_experiment(exp)
        return 0
    except SpaceError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, PassInterrupted) as e:
        print(f"\ninterrupted{': ' + str(e) if str(e) else ''}; rerun the same command to resume the experiment",
              file=sys.stderr)
        return 130
    finally:
        stop_ray()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("space", help="search space YAML, e.g. spaces/quick.yaml")
    ap.add_argument("--address", default=None,
                    help="join a running Ray cluster: 'auto' or 'ray://host:10001' (default: start a local Ray)")
    ap.add_argument("--fresh", action="store_true",
                    help="start a new experiment (<name>-<timestamp>) even if results/<name> exists; "
                         "the old one is kept")
    ap.add_argument("--results", default=None, help="results root (default: the space's storage, e.g. results/)")
    ap.add_argument("--name", default=None, help="experiment folder name (default: the space's name)")
    ap.add_argument("--gpus", type=float, default=None, help="override resources.gpus per trial (e.g. 0 on a CPU box)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a locally started Ray (default: all)")
    ap.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard (local Ray only)")
    ap.add_argument("--debug", action="store_true", help="tracebacks and Tune's detailed progress output")
    args = ap.parse_args(argv)
    args.verbose = 2 if args.debug else 0  # Tune's own tables with --debug; segtune prints one line per trial
    return args


# ---------------------------------------------------------------------------------------------------------------
# The experiment folder
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Experiment:
    name: str
    dir: Path  # local: experiment.json, trials/, masks/, Parquet, report
    tune_storage: str  # Tune's storage_path: <dir>/tune, or <URI>/<name> for cloud storage

    @property
    def json_path(self) -> Path:
        return self.dir / "experiment.json"

    def read(self) -> dict[str, Any]:
        return json.loads(self.json_path.read_text())

    def update(self, **kw: Any) -> None:
        data = self.read() if self.json_path.is_file() else {}
        data.update(kw)
        write_json_atomic(self.json_path, data)

    def pass_done(self, name: str) -> bool:
        return self.json_path.is_file() and self.read().get("passes", {}).get(name) == "done"

    def mark_done(self, name: str) -> None:
        passes = self.read().get("passes", {})
        self.update(passes={**passes, name: "done"})

    def tune_path(self, pass_name: str) -> str:
        return f"{self.tune_storage.rstrip('/')}/{pass_name}"


def is_uri(path: str) -> bool:
    return "://" in path


def open_experiment(space: Space, args: argparse.Namespace, cluster: dict[str, Any] | None = None) -> Experiment:
    """New experiment folder, or the existing one to resume (refused if the space file changed since)."""
    root = args.results or space.storage
    local_root = Path("results" if is_uri(root) else root).expanduser().resolve()
    name = args.name or space.name
    exp_dir = local_root / name
    if args.fresh and exp_dir.exists():
        name = f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        exp_dir = local_root / name
    tune_storage = f"{root.rstrip('/')}/{name}" if is_uri(root) else str(exp_dir / "tune")
    exp = Experiment(name, exp_dir, tune_storage)
    resolved = space.to_json()
    if exp.json_path.is_file():
        stored = exp.read()
        if stored.get("space_hash") != space.hash:
            diff = changed_keys(stored.get("space", {}), resolved)
            raise SpaceError(
                f"{space.source}: differs from the space experiment {name!r} was started with "
                f"({exp.json_path}):\n  " + "\n  ".join(diff or ["(hash differs)"]) +
                "\nA resumed search cannot change its space: undo the edits, or pass --fresh to start a new "
                "experiment (the old one is kept).")
        print(f"resuming experiment {name!r} in {exp_dir} (passes done: "
              f"{[p for p, s in stored.get('passes', {}).items() if s == 'done'] or 'none'})")
        exp.update(resumed_at=[*stored.get("resumed_at", []), now_iso()], finished_at=None, **(cluster or {}))
        return exp
    exp_dir.mkdir(parents=True, exist_ok=True)
    defaults = space.defaults.resolved()
    exp.update(
        name=name, space_file=str(Path(space.source).resolve()), space_hash=space.hash, space=resolved,
        resources=space.resources.model_dump(), dataset=defaults.dataset, year=defaults.year,
        data_root=defaults.data_root, image_size=defaults.image_size, metric=space.metric, mode="max",
        tune_storage=tune_storage, started_at=now_iso(), finished_at=None, passes={},
        git_commit=git_commit(), versions=versions(), command=sys.argv, **(cluster or {}),
    )
    print(f"experiment {name!r} in {exp_dir}")
    return exp


def apply_overrides(space: Space, args: argparse.Namespace) -> Space:
    if args.gpus is not None:
        space.resources = space.resources.model_copy(update={"gpus": args.gpus})
    return space


# ---------------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------------
_STARTED_RAY = False


def start_ray(address: str | None, dashboard: bool, num_cpus: int | None, debug: bool) -> dict[str, Any]:
    """Join a cluster (`auto`, `ray://...`) or start a local Ray whose dashboard listens on 127.0.0.1 only.
    Returns what experiment.json records about it."""
    global _STARTED_RAY
    import logging

    import ray

    if not debug:
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if address:
        ctx = ray.init(address=address, log_to_driver=debug)
    else:  # trial output stays in Ray's logs (and error.txt) unless --debug
        ctx = ray.init(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                       log_to_driver=debug)
    _STARTED_RAY = True
    url = getattr(ctx, "dashboard_url", None)
    if url:
        print(f"Ray dashboard: http://{url}")
    return {"hardware": hardware(ray.cluster_resources()), "ray_address": address or "local",
            "dashboard_url": f"http://{url}" if url else None}


def stop_ray() -> None:
    if _STARTED_RAY:
        import ray

        ray.shutdown()


def check_cluster_fits(space: Space, address: str | None) -> None:
    """Refuse trials that can never be placed (Tune would wait for them forever)."""
    import ray

    res = ray.cluster_resources()
    want = space.resources
    if want.gpus > 0 and res.get("GPU", 0) == 0:
        msg = (f"{space.source}: resources.gpus: each trial asks for {want.gpus:g} GPU but the Ray cluster has none; "
               f"run with --gpus 0 to train on CPU, or on a machine/cluster with GPUs")
        if address is None:
            raise SpaceError(msg)
        print(f"warning: {msg} (waiting in case an autoscaler adds GPU nodes)")
    if want.cpus > res.get("CPU", 0) and address is None:
        raise SpaceError(f"{space.source}: resources.cpus: each trial asks for {want.cpus:g} CPUs but Ray has "
                         f"{res.get('CPU', 0):g}; lower resources.cpus")


def prepare_data(space: Space, exp: Experiment, joining_cluster: bool) -> None:
    """Generate / decode the data once in the driver, so trials start from the cache instead of racing to build it,
    and data problems are reported before any trial starts. Cluster nodes prepare their own copy."""
    if joining_cluster:
        return
    from seg.data.cache import load_split

    configs = {_data_key(c): c for c in (space.defaults, *space.fixed.values())}
    sizes: dict[str, int] = {}
    for i, cfg in enumerate(configs.values()):
        cfg = cfg.resolved()
        for split in (cfg.train_split, cfg.val_split, cfg.test_split):
            if split:
                try:
                    n = len(load_split(cfg, split, "cpu"))
                except (OSError, ValueError, RuntimeError) as e:
                    raise SpaceError(f"{space.source}: data: cannot load the {split!r} split from {cfg.data_root}: "
                                     f"{e}") from None
                if i == 0:
                    sizes[split] = n
    exp.update(split_sizes=sizes)
    print(f"data: {space.defaults.dataset} at {space.defaults.resolved().data_root}, "
          f"{space.defaults.image_size}px, splits {sizes}")


def _data_key(cfg) -> tuple:
    return (cfg.dataset, cfg.data_root, cfg.image_size, tuple(cfg.synthetic_counts), cfg.synthetic_size,
            cfg.train_split, cfg.val_split, cfg.test_split, cfg.cache_dir)


# ---------------------------------------------------------------------------------------------------------------
# The two passes
# ---------------------------------------------------------------------------------------------------------------
def run_fixed_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 1: the fixed trials with their full budget, no scheduler (never pruned)."""
    from ray import tune

    from search.trainable import FIXED_KEY, fixed_trial_config

    if not space.fixed or exp.pass_done("fixed"):
        return
    print(f"pass 1: {len(space.fixed)} fixed trials: {', '.join(space.fixed)}")
    configs = [fixed_trial_config(n, c.resolved().model_dump(mode="json")) for n, c in space.fixed.items()]
    param_space = {FIXED_KEY: tune.grid_search(configs)}
    fit_pass("fixed", space, exp, run, param_space, verbose, len(space.fixed), lambda: tune.TuneConfig(
        num_samples=1, max_concurrent_trials=space.budget.max_concurrent, **_trial_naming()))


def run_searched_trials(space: Space, exp: Experiment, run: RunInfo, verbose: int) -> None:
    """Pass 2: Optuna TPE (seeded with the fixed trials) under ASHA on the space's metric."""
    from ray import tune

    if space.budget.num_samples == 0 or exp.pass_done("search"):
        return
    print(f"pass 2: {space.budget.num_samples} searched trials over {', '.join(space.searched_names)} "
          f"(TPE{', ASHA' if space.scheduler else ''} on {space.metric})")
    param_space = {**space.defaults.resolved().model_dump(mode="json"), KIND_KEY: SEARCHED}
    fit_pass("search", space, exp, run, param_space, verbose, space.budget.num_samples, lambda: tune.TuneConfig(
        search_alg=build_searcher(space, fixed_trial_seeds(space, exp)), scheduler=build_scheduler(space),
        metric=space.metric, mode="max", num_samples=space.budget.num_samples,
        max_concurrent_trials=space.budget.max_concurrent, **_trial_naming()))


class PassInterrupted(Exception):
    """Tune stopped a pass early (a signal); its state is saved and the same command resumes it."""


def fit_pass(pass_name: str, space: Space, exp: Experiment, run: RunInfo, param_space: dict, verbose: int,
             expected_trials: int, make_tune_config) -> None:
    """Start the pass, or restore it where an earlier run of the same command left off (the searcher and
    scheduler state come back from Tune's experiment checkpoint, so `make_tune_config` is only called for a start)."""
    from ray import tune

    from search.trainable import TrialRecorder, read_record, record_path, train_trial, trial_id_from_dirname

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
            callbacks=[TrialRecorder(str(exp.dir.resolve()), pass_name, run)],
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


def _trial_naming() -> dict[str, Any]:
    from search.trainable import trial_dirname

    # reuse_actors: a finished trial's worker process (torch and seg already imported) takes the next trial
    return {"trial_dirname_creator": trial_dirname, "trial_name_creator": trial_dirname, "reuse_actors": True}


def fixed_trial_seeds(space: Space, exp: Experiment) -> list[tuple[dict[str, Any], float]]:
    """(searched values, score) of each finished fixed trial, for the TPE sampler's history.

    Completed trials give their last reported metric; diverged ones the 0.0 they reported. Trials that failed for
    reasons unrelated to their hyperparameters (missing weights, a crash) are left out."""
    from search.leaderboard import collect_records

    seeds = []
    for rec in collect_records(exp.dir).values():
        if rec.get("kind") != "fixed" or rec.get("objective") is None:
            continue
        diverged = rec.get("status") == "failed" and str(rec.get("error", "")).startswith("NonFiniteLossError")
        if rec.get("status") != "completed" and not diverged:
            continue
        point = space.optuna_space.point(rec["config"])
        if point:
            seeds.append((point, float(rec["objective"])))
    return seeds


def build_searcher(space: Space, seeds: list[tuple[dict[str, Any], float]]):
    """OptunaSearch over the space's define-by-run params, its study pre-filled with the fixed trials' results."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

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


def build_scheduler(space: Space):
    from ray.tune.schedulers import ASHAScheduler

    if space.scheduler is None:
        return None
    # time_attr "epoch": the trainer's own counter survives retries and restores (training_iteration restarts)
    return ASHAScheduler(time_attr="epoch", max_t=space.max_epochs, grace_period=space.scheduler.grace_period,
                         reduction_factor=space.scheduler.reduction_factor)


# ---------------------------------------------------------------------------------------------------------------
# The end
# ---------------------------------------------------------------------------------------------------------------
def finish_experiment(exp: Experiment) -> None:
    """Final tables, the HTML report (its failure is logged, not fatal), and the top of the leaderboard."""
    from search.leaderboard import format_top, write_tables

    exp.update(finished_at=now_iso())
    board_path, _ = write_tables(exp.dir)
    try:
        from search.report import write_report

        print(f"report: {write_report(exp.dir)}")
    except Exception as e:  # the search itself succeeded; the report can be rebuilt from the folder
        print(f"warning: could not write the report ({type(e).__name__}: {e})", file=sys.stderr)
    import pandas as pd

    board = pd.read_parquet(board_path)
    counts = board["status"].value_counts().to_dict()
    print(f"\nleaderboard ({len(board)} trials: {counts}) -> {board_path}\n")
    print(format_top(board))


if __name__ == "__main__":
    sys.exit(main())
