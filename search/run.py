"""Run a search: `python -m search.run SPACE.yaml [--address ADDR] [--fresh] [--debug] [--results DIR]`.

Tune passes over one experiment folder `results/<name>/`:
  1. the fixed trials, all epochs, no scheduler (never pruned);
  2. the searched trials: Optuna TPE, seeded with the fixed trials' scores, under ASHA on the space's metric;
  3. with a `seeds:` section only: seed reruns of the best trials, never pruned (search/seeds.py).
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
    if not args.debug:  # a failed trial is one [segtune] line (its traceback stays in its record and error.txt)
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    try:
        space = load_space(args.space)
        space = apply_overrides(space, args)
        check_pretrained_weights(space, args)
        lock_experiment(space, args)  # a second run of the same experiment is refused here, before Ray starts
        sizes = prepare_data(space, None, joining_cluster=args.address is not None)  # data errors: before Ray
        cluster = start_ray(args.address, dashboard=not args.no_dashboard, num_cpus=args.num_cpus, debug=args.debug,
                            dashboard_host=args.dashboard_host)
        check_cluster_fits(space, args.address)
        exp = open_experiment(space, args, cluster)
        if sizes:
            exp.update(split_sizes=sizes)
        run = RunInfo(exp_dir=str(exp.dir.resolve()), metric=space.metric, cpus=space.resources.cpus,
                      gpus=space.resources.gpus)
        run_fixed_trials(space, exp, run, verbose=args.verbose)
        run_searched_trials(space, exp, run, verbose=args.verbose)
        from search.seeds import run_seed_trials

        run_seed_trials(space, exp, run, verbose=args.verbose)  # pass 3, only with a `seeds:` section
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
    except Exception as e:  # a bug or an environment problem: one line; the traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback; finished trials are kept "
              f"and the same command resumes)", file=sys.stderr)
        return 1
    finally:
        stop_ray()
        release_lock()


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
    ap.add_argument("--dashboard-host", default="127.0.0.1",
                    help="address the local Ray dashboard listens on (default 127.0.0.1: this machine only; reach "
                         "it from elsewhere with `ssh -L 8265:127.0.0.1:8265 host` rather than 0.0.0.0)")
    ap.add_argument("--allow-missing-weights", action="store_true",
                    help="run even if ImageNet weights that pretrained trials need are missing; those trials are "
                         "recorded as failed")
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
    name, exp_dir = experiment_location(space, args)
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


def experiment_location(space: Space, args: argparse.Namespace) -> tuple[str, Path]:
    """(name, local folder) of the experiment this command starts or resumes."""
    root = args.results or space.storage
    local_root = Path("results" if is_uri(root) else root).expanduser().resolve()
    name = args.name or space.name
    if args.fresh and (local_root / name).exists():
        name = f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    return name, local_root / name


# One run per experiment folder: an exclusive flock on <exp>/.segtune.lock, held for the life of the driver. The
# kernel drops it when the process ends in any way (SIGKILL included), so a killed run never blocks its rerun.
LOCK_NAME = ".segtune.lock"
_LOCK: dict[str, Any] = {}


def lock_experiment(space: Space, args: argparse.Namespace) -> Path:
    """Take the experiment folder's lock, or refuse (SpaceError) naming the run that holds it."""
    import fcntl
    import socket

    name, exp_dir = experiment_location(space, args)
    if args.fresh:  # open_experiment must use this same new folder
        args.name, args.fresh = name, False
    created = not exp_dir.exists()
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(exp_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SpaceError(f"results folder {exp_dir.parent}: cannot write the experiment folder {exp_dir} "
                         f"({e.strerror or e}); pass --results with a folder you can write to") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except ValueError:
            holder = {}
        os.close(fd)
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"
               if holder else "another process")
        raise SpaceError(f"{exp_dir}: experiment {name!r} is already being run by {who}; nothing was changed. "
                         f"Wait for that run to finish (or stop it, then rerun this command to resume), or pass "
                         f"--fresh or --name NAME to start a separate experiment") from None
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso(),
                       "command": sys.argv}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)
    _LOCK.update(fd=fd, dir=exp_dir, created=created)
    return exp_dir


def release_lock() -> None:
    """Drop the lock; a folder this run created and left empty (it failed before starting) is removed."""
    if not _LOCK:
        return
    fd, exp_dir, created = _LOCK.pop("fd"), _LOCK.pop("dir"), _LOCK.pop("created")
    try:
        if created and [p.name for p in exp_dir.iterdir()] == [LOCK_NAME]:
            (exp_dir / LOCK_NAME).unlink()
            exp_dir.rmdir()
    except OSError:
        pass
    os.close(fd)  # releases the flock


def check_pretrained_weights(space: Space, args: argparse.Namespace) -> None:
    """Refuse a local search whose pretrained trials would all fail for lack of the ImageNet weights file.
    (Joining a cluster, the weights live on the worker nodes: a trial without them is recorded as failed.)"""
    if args.address or args.allow_missing_weights:
        return
    from seg.models.resnet_fcn import hub_weights_path

    needs: dict[str, str] = {}  # trial -> the weights file it would load
    configs = {f"fixed_trials.{n}": c for n, c in space.fixed.items()}
    if space.budget.num_samples:
        params = {p.name: p for p in space.params}
        d = space.defaults
        can_pretrain = d.pretrained or ("pretrained" in params and True in params["pretrained"].values)
        can_resnet = d.arch == "resnet34_fcn" or ("arch" in params and "resnet34_fcn" in params["arch"].values)
        if can_pretrain and can_resnet:
            configs["defaults (searched trials)"] = d.model_copy(update={"pretrained": True, "arch": "resnet34_fcn"})
    for where, cfg in configs.items():
        if cfg.pretrained and cfg.arch == "resnet34_fcn":
            path = Path(cfg.resolved().pretrained_path) if cfg.pretrained_path else hub_weights_path()
            if not path.is_file():
                needs[where] = str(path)
    if needs:
        lines = "\n  ".join(f"{w}: pretrained: true, but {p} does not exist" for w, p in needs.items())
        raise SpaceError(
            f"{space.source}: ImageNet weights for resnet34_fcn are missing:\n  {lines}\n"
            f"Put torchvision's resnet34-b627a593.pth at {hub_weights_path()} (or set pretrained_path), set "
            f"pretrained: false, or pass --allow-missing-weights to run the rest and record these trials as failed")


def apply_overrides(space: Space, args: argparse.Namespace) -> Space:
    if args.gpus is not None:
        space.resources = space.resources.model_copy(update={"gpus": args.gpus})
    return space


# ---------------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------------
_STARTED_RAY = False


def start_ray(address: str | None, dashboard: bool, num_cpus: int | None, debug: bool,
              dashboard_host: str = "127.0.0.1") -> dict[str, Any]:
    """Join a cluster (`auto`, `ray://...`) or start a local Ray whose dashboard listens on 127.0.0.1 only (unless
    `dashboard_host` says otherwise). Ray's token authentication is left as Ray sets it: since Ray 2.52 a local
    `ray.init` enables it unless RAY_AUTH_MODE=disabled. Returns what experiment.json records about it."""
    global _STARTED_RAY
    import logging

    import ray

    if not debug:
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if address:
        ctx = ray.init(address=address, log_to_driver=debug)
    else:  # trial output stays in Ray's logs (and error.txt) unless --debug
        if dashboard and dashboard_host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: the Ray dashboard will listen on {dashboard_host}, reachable from other machines; "
                  f"prefer the default 127.0.0.1 and `ssh -L 8265:127.0.0.1:8265 <this host>`", file=sys.stderr)
        # address="local": always a new Ray of our own, never a cluster someone else started on this machine
        ctx = ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                       dashboard_host=dashboard_host, log_to_driver=debug)
    _STARTED_RAY = True
    auth = ray_auth_mode()
    if auth == "disabled":
        print("warning: Ray token authentication is off (RAY_AUTH_MODE=disabled): anyone who can reach this "
              "cluster's ports can run code on it; unset RAY_AUTH_MODE (or set it to token)", file=sys.stderr)
    url = getattr(ctx, "dashboard_url", None)
    if url:
        print(f"Ray dashboard: http://{url}")
    return {"hardware": hardware(ray.cluster_resources()), "ray_address": address or "local",
            "dashboard_url": f"http://{url}" if url else None, "ray_auth_mode": auth}


def ray_auth_mode() -> str:
    """`token` or `disabled`: whether this Ray requires its auth token (Ray >= 2.52; `unknown` on older Ray)."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:
        return "unknown"
    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"


def stop_ray() -> None:
    if _STARTED_RAY:
        import ray

        ray.shutdown()


def check_cluster_fits(space: Space, address: str | None) -> None:
    """Refuse trials that can never be placed (Tune would wait for them forever)."""
    import ray

    res = ray.cluster_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    want = space.resources
    if want.gpus > 0 and res.get("GPU", 0) == 0:
        msg = (f"{space.source}: resources.gpus: each trial asks for {want.gpus:g} GPU but the Ray cluster has none; "
               f"run with --gpus 0 to train on CPU, or on a machine/cluster with GPUs")
        if address is None:
            raise SpaceError(msg)
        print(f"warning: {msg} (waiting in case an autoscaler adds GPU nodes)")
    elif want.gpus > most_gpus:  # a trial runs on one node: its GPUs must fit on one
        msg = (f"{space.source}: resources.gpus: each trial asks for {want.gpus:g} GPUs but the largest node has "
               f"{most_gpus:g}; lower resources.gpus (or --gpus) to at most {most_gpus:g}")
        if address is None:
            raise SpaceError(msg)
        print(f"warning: {msg} (waiting in case an autoscaler adds larger nodes)")
    if want.cpus > most_cpus and address is None:
        raise SpaceError(f"{space.source}: resources.cpus: each trial asks for {want.cpus:g} CPUs but Ray has "
                         f"{most_cpus:g} on a node; lower resources.cpus (or raise --num-cpus)")


def prepare_data(space: Space, exp: Experiment | None, joining_cluster: bool) -> dict[str, int]:
    """Generate / decode the data once in the driver, so trials start from the cache instead of racing to build it,
    and data problems are reported (one message, SpaceError) before Ray or any trial starts. Cluster nodes prepare
    their own copy. Returns the split sizes (also written to experiment.json when `exp` is given)."""
    if joining_cluster:
        return {}
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
    if exp is not None:
        exp.update(split_sizes=sizes)
    print(f"data: {space.defaults.dataset} at {space.defaults.resolved().data_root}, "
          f"{space.defaults.image_size}px, splits {sizes}")
    return sizes


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
    reasons unrelated to their hyperparameters (missing weights, a crash) are left out, and so are trials validated
    on images they trained on (e.g. train_split trainval): their score is not comparable."""
    from search.leaderboard import collect_records

    seeds = []
    for rec in collect_records(exp.dir).values():
        if rec.get("kind") != "fixed" or rec.get("objective") is None or _val_in_training(rec["config"]):
            continue
        diverged = rec.get("status") == "failed" and str(rec.get("error", "")).startswith("NonFiniteLossError")
        if rec.get("status") != "completed" and not diverged:
            continue
        point = space.optuna_space.point(rec["config"])
        if point:
            seeds.append((point, float(rec["objective"])))
    return seeds


def _val_in_training(cfg: dict[str, Any]) -> bool:
    train, val = cfg.get("train_split", "train"), cfg.get("val_split", "val")
    return val in ("train", "trainval") or (train == "trainval" and val == "val")


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
