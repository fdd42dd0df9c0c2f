"""Warm start: `search.run SPACE --warm-start OTHER` adds another experiment's finished trials to this experiment's
Optuna study as prior knowledge, so TPE's first suggestions are already informed.

Each finished trial of OTHER (a folder or a storage URI) is projected on this space's params: its value of every
param that is active under its own values, taken from its complete config. A trial fits when every such value lies
in this space's distribution; the others are skipped and counted, and so are failed trials and trials with no
score. A completed trial is added as COMPLETE with its objective (as search.tune.searchers tells its own:
best_val_miou for val_miou), a pruned one as PRUNED
with its per-epoch values (the intermediate values Optuna's samplers read). Prior trials live only in the study
(`user_attrs.segtune_source = "warm start"`, with the experiment and trial they came from): they are no records,
so the leaderboard, the tables and the report's rows are this experiment's own; experiment.json's `warm_start`
says where the priors came from and how many were used, and the report and search.status show it.

Adding is idempotent (trials already added are recognised by their source trial id), so a crash while adding
resumes like any other run. Ray-free itself; it lives beside the searcher whose study it fills.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search import storage
from search.experiment import Experiment
from search.provenance import now_iso
from search.records import with_avg5
from search.space import Space, SpaceError
from search.space.model import OptunaSpace
from search.status import EXPERIMENT_FILE, TRIALS_DIR, list_files, read_location
from search.tune.searchers import STUDY_NAME, journal_path, journal_storage
from search.vocab import COMPLETED, PRUNED, finite, objective_key

SOURCE = "warm start"  # user_attrs.segtune_source of a prior trial (the fixed trials' seeds say "fixed trial")
FROM_ATTR, TRIAL_ATTR = "segtune_warm_from", "segtune_warm_trial"


def check_source(source: str, location: str) -> str:
    """The other experiment's location, refused (SpaceError, before Ray starts) when it is not an experiment or is
    this experiment itself."""
    src = source if storage.is_uri(source) else str(Path(source).expanduser().resolve())
    if read_location(storage.join(src, EXPERIMENT_FILE)) is None:
        raise SpaceError(f"--warm-start {source}: no {EXPERIMENT_FILE} there; pass the folder (or URI) of a finished "
                         f"experiment, such as results/<name>")
    here = location if storage.is_uri(location) else str(Path(location).resolve())
    if src.rstrip("/") == here.rstrip("/"):
        raise SpaceError(f"--warm-start {source}: that is this experiment itself; its own trials are already in its "
                         f"study. Pass another experiment, or leave --warm-start out")
    return src


def prior_records(source: str) -> list[dict[str, Any]]:
    """The other experiment's trial records (trials/<id>.json), in name order."""
    out = []
    for path in list_files(storage.join(source, TRIALS_DIR), ".json").values():
        try:
            rec = json.loads(read_location(path) or b"")
        except ValueError:
            continue
        if isinstance(rec, dict) and "trial_id" in rec:
            out.append(rec)
    return sorted(out, key=lambda r: str(r.get("name")))


def project(optuna_space: OptunaSpace, config: dict[str, Any]) -> dict[str, Any] | None:
    """The config's point in this space (every param active under the config's own values), or None when a value
    is missing or outside its distribution."""
    chosen: dict[str, Any] = {}
    for p in optuna_space.params:
        if not p.active(chosen):
            continue
        if p.name not in config or not p.contains(config[p.name]):
            return None
        chosen[p.name] = config[p.name]
    return chosen


def prior_trial(rec: dict[str, Any], space: Space, source: str) -> optuna.trial.FrozenTrial | None:
    """The Optuna trial a finished record becomes in this study, or None when it does not fit or has no score."""
    if rec.get("status") not in (COMPLETED, PRUNED):
        return None
    point = project(space.optuna_space, rec.get("config") or {})
    history = with_avg5(rec.get("history") or [])
    steps = {int(h["epoch"]): float(h[space.metric]) for h in history
             if "epoch" in h and finite(h.get(space.metric))}
    if point is None or not steps:
        return None
    attrs = {"segtune_source": SOURCE, FROM_ATTR: source, TRIAL_ATTR: rec["trial_id"], "segtune_name": rec.get("name")}
    common = dict(params=point, distributions=space.optuna_space.distributions(point), user_attrs=attrs,
                  intermediate_values=steps)
    if rec["status"] == PRUNED:
        return optuna.trial.create_trial(state=TrialState.PRUNED, **common)
    value = (history or [{}])[-1].get(objective_key(space.metric))  # what this study's own trials are told
    if not finite(value):
        return None
    return optuna.trial.create_trial(state=TrialState.COMPLETE, value=float(value), **common)


def warm_start(space: Space, exp_dir: Path, source: str) -> dict[str, Any]:
    """Adds `source`'s finished trials to the experiment's study (those not added yet); returns what
    experiment.json keeps under `warm_start`."""
    study = optuna.create_study(storage=journal_storage(exp_dir), study_name=STUDY_NAME, direction="maximize",
                                load_if_exists=True)
    have = {t.user_attrs.get(TRIAL_ATTR) for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("segtune_source") == SOURCE}
    records = prior_records(source)
    added = skipped = 0
    for rec in records:
        trial = prior_trial(rec, space, source)
        if trial is None:
            skipped += 1
            continue
        if rec["trial_id"] not in have:
            study.add_trial(trial)
        added += 1
    return {"source": source, "added": added, "skipped": skipped, "of": len(records), "at": now_iso()}


def warm_start_experiment(space: Space, exp: Experiment, source: str) -> None:
    """The warm start of an experiment before its searched pass: once per source (a rerun adds what is missing),
    kept in experiment.json. An experiment warm-started from one source refuses another."""
    stored = exp.read().get("warm_start")
    if stored and stored.get("source") != source:
        raise SpaceError(f"--warm-start {source}: experiment {exp.name!r} was warm-started from {stored['source']}; "
                         f"a study takes its priors once. Rerun with --warm-start {stored['source']} (or without "
                         f"the flag), or pass --fresh to start a new experiment")
    if space.budget.num_samples == 0:
        print(f"warm start: {space.source} searches nothing (budget.num_samples: 0); --warm-start has no effect")
        return
    info = warm_start(space, exp.dir, source)
    exp.update(warm_start=info)
    exp.store.push(journal_path(exp.dir))
    print(f"warm start: {info['added']} of the {info['of']} trials of {source} added to the study as prior knowledge "
          f"({info['skipped']} skipped: failed, unscored, or outside this space's params)")
