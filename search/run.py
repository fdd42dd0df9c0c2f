"""Run a search: `python -m search.run SPACE.yaml [--address ADDR] [--fresh] [--debug] [--results DIR]`.

Tune passes over one experiment folder `results/<name>/`:
  1. the fixed trials, all epochs, no scheduler (never pruned);
  2. the searched trials: Optuna TPE, seeded with the fixed trials' scores, under ASHA on the space's metric;
  3. with a `seeds:` section only: seed reruns of the best trials, never pruned (search/seeds.py).
Rerunning the same command resumes whatever did not finish (from the trial records, never `Tuner.restore`);
`--fresh` starts a new experiment next to the old one; a space file edited since the experiment started is refused,
naming the keys, unless only its `budget` changed: then the search grows (search/grow.py); a second run of an
experiment that is running is refused, naming the run that holds it. `--warm-start OTHER` gives the study another
experiment's finished trials as priors (search/tune/warmstart.py). While the passes run, report.html is rebuilt in
a child process (search/report/live.py); `python -m search.status` says how far along it is.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any

import pandas as pd

from search.experiment import Experiment, PassInterrupted, open_experiment
from search.folder import Location, locate
from search.lock import ExperimentLock, LockError
from search.preflight import check_pretrained_weights, data_classes, prepare_data
from search.provenance import now_iso
from search.report import write_report
from search.report.live import LiveReport
from search.space import Space, SpaceError, load_space
from search.tables import format_top, write_tables
from search.tune.passes import run_fixed_trials, run_searched_trials, run_seed_trials
from search.tune.session import RaySession
from search.tune.run_info import RunInfo
from search.tune.warmstart import check_source, warm_start_experiment


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tune(args.debug)
    try:
        space = with_overrides(load_space(args.space), args)
        joining = args.address is not None
        check_pretrained_weights(space, args.allow_missing_weights or args.synthetic_trials, joining)
        location = locate(space, args.results, args.name, args.fresh, args.workdir)
        if args.warm_start:  # refused before Ray starts when it is not an experiment
            args.warm_start = check_source(args.warm_start, location.storage)
        with ExperimentLock(location):  # a second run of the same experiment is refused here, before Ray starts
            # data errors: before Ray starts (synthetic trials read no data)
            facts = {} if args.synthetic_trials else prepare_data(space, joining)
            search(space, location, facts, args)
        return 0
    except (SpaceError, LockError) as e:
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


def search(space: Space, location: Location, facts: dict[str, Any], args: argparse.Namespace) -> None:
    """The passes inside one Ray session, then the tables and the report."""
    with RaySession(args.address, dashboard=not args.no_dashboard, num_cpus=args.num_cpus, debug=args.debug,
                    dashboard_host=args.dashboard_host, num_gpus=args.num_gpus) as ray_session:
        ray_session.check_fits(space)
        exp = open_experiment(space, location, ray_session.info)
        if facts:  # split sizes and the background-everywhere floor (preflight.prepare_data)
            exp.update(**facts)
        classes = data_classes(space, args.address is not None)
        if classes:  # the leaderboard's iou_<class> columns and the report's legend follow them
            exp.update(classes=classes)
        run = RunInfo(exp_dir=str(exp.dir.resolve()), metric=space.metric, cpus=space.resources.cpus,
                      gpus=space.resources.gpus, synthetic=args.synthetic_trials)
        # report.html rebuilt in a child process while the passes run; stopped before the final one is written
        with LiveReport(exp.dir, space.tracking.report_s, exp.store.push) as live:
            run_fixed_trials(space, exp, run, verbose=args.verbose)
            live.request()
            if args.warm_start:  # another experiment's finished trials into the study, before TPE asks
                warm_start_experiment(space, exp, args.warm_start)
            run_searched_trials(space, exp, run, verbose=args.verbose)
            live.request()
            run_seed_trials(space, exp, run, verbose=args.verbose)  # pass 3, only with a `seeds:` section
    finish_experiment(exp)


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
    ap.add_argument("--workdir", default=None,
                    help="with a URI as storage (s3://, gs://, file://): the local folder the driver works in "
                         "(default: results/); its files are pushed to the URI as they are written")
    ap.add_argument("--warm-start", default=None, metavar="EXPERIMENT",
                    help="add the finished trials of another experiment (its folder or URI) to this one's Optuna "
                         "study as prior knowledge, projected on this space's params; they are not rows of this "
                         "experiment's leaderboard")
    ap.add_argument("--gpus", type=float, default=None, help="override resources.gpus per trial (e.g. 0 on a CPU box)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a locally started Ray (default: all)")
    ap.add_argument("--num-gpus", type=int, default=None,
                    help="GPUs a locally started Ray declares (default: those it finds); more than there are are "
                         "logical only, as bench.scale uses with --synthetic-trials")
    ap.add_argument("--synthetic-trials", action="store_true",
                    help="train no model: every trial reports made-up learning curves (search/synthetic.py); "
                         "measures the search's own cost per trial (bench.scale)")
    ap.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard (local Ray only)")
    ap.add_argument("--dashboard-host", default="127.0.0.1",
                    help="address the local Ray dashboard listens on (default 127.0.0.1: this machine only; reach "
                         "it from elsewhere with `ssh -L 8265:127.0.0.1:8265 host` rather than 0.0.0.0)")
    ap.add_argument("--allow-missing-weights", action="store_true",
                    help="run even if ImageNet weights that pretrained trials need are missing; those trials are "
                         "recorded as failed")
    ap.add_argument("--debug", action="store_true", help="tracebacks and Tune's detailed progress output")
    args = ap.parse_args(argv)
    # Tune's progress table (1), and its per-result detail with --debug (3); segtune prints one line per trial event
    args.verbose = 3 if args.debug else 1
    return args


def quiet_tune(debug: bool) -> None:
    # Checkpointing every epoch of short trials trips Tune's "snapshotting may become a bottleneck" warning; at a
    # few trials per minute it is not one.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's classic console output: the only one that takes a progress reporter (search.tune.passes.progress_table)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not debug:  # a failed trial is one [segtune] line (its traceback stays in its record and error.txt)
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


def with_overrides(space: Space, args: argparse.Namespace) -> Space:
    """The space with the command line's overrides applied (--gpus)."""
    if args.gpus is not None:
        space.resources = space.resources.model_copy(update={"gpus": args.gpus})
    return space


def finish_experiment(exp: Experiment) -> None:
    """Final tables, the HTML report (its failure is logged, not fatal), and the top of the leaderboard."""
    exp.update(finished_at=now_iso())
    board_path, hist_path = write_tables(exp.dir)
    exp.store.push(board_path)
    exp.store.push(hist_path)
    try:
        report = write_report(exp.dir)
        exp.store.push(report)
        print(f"report: {exp.store.location(report.name) if exp.store.remote else report}")
    except Exception as e:  # the search itself succeeded; the report can be rebuilt from the folder
        print(f"warning: could not write the report ({type(e).__name__}: {e})", file=sys.stderr)
    board = pd.read_parquet(board_path)
    counts = board["status"].value_counts().to_dict()
    print(f"\nleaderboard ({len(board)} trials: {counts}) -> {board_path}\n")
    print(format_top(board))


if __name__ == "__main__":
    sys.exit(main())
