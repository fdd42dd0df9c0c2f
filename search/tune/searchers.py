"""The searcher and the scheduler of the searched pass: Optuna TPE over the space (its study persisted in a journal
file beside the records), under ASHA on the space's metric, both rebuilt from segtune's records on every run.

Why not Tune's OptunaSearch and Tuner.restore: Tune saves its searcher and scheduler state only every few seconds,
and a SIGKILL skips the last save, so after a crash Tune's state can be older than what segtune had already
recorded and announced (a trial pruned, a trial started). Here the records are the truth: a resumed pass is a new
Tune run whose searcher first hands out the trials that were running at the crash (their recorded configs, under
their own names) before asking Optuna for new ones, and whose scheduler has been told every recorded result.

  * `SearchStudy`: the Optuna study in `optuna-journal.log` (Optuna's JournalStorage: `optuna-dashboard` opens it),
    created once and seeded with the fixed trials' scores, reconciled with the records at every start;
  * `RecordedFirstSearcher`: a Tune Searcher over Optuna's ask/tell;
  * `RecordedASHA`: Tune's ASHA keyed by segtune's trial ids, its rungs refilled from the recorded histories.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher

from search.records import STATUS_KEY, collect_records, trial_key
from search.space import Space
from search.space.schema import SamplerSpec
from search.space.model import OptunaSpace
from search.vocab import (COMPLETED, FAILED, FINAL_STATUSES, FIXED, OPTUNA_KEY, PRUNED, SEARCHED, TRIAL_KEY, finite,
                          objective_key)

STUDY_NAME = "segtune"
JOURNAL_FILE = "optuna-journal.log"
SEEDED_ATTR = "segtune_seeded_with_fixed_trials"


# ---------------------------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------------------------
def journal_path(exp_dir: Path) -> Path:
    return Path(exp_dir) / JOURNAL_FILE


def journal_storage(exp_dir: Path) -> optuna.storages.JournalStorage:
    path = str(journal_path(exp_dir))
    # the open-lock (O_EXCL on a lock file) rather than the default symlink lock: it also works where the
    # experiment folder is on a filesystem without symlinks
    backend = optuna.storages.journal.JournalFileBackend(path, lock_obj=optuna.storages.journal.JournalFileOpenLock(path))
    return optuna.storages.JournalStorage(backend)


def open_study(space: Space, exp_dir: Path, storage: optuna.storages.BaseStorage | None = None,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """The experiment's Optuna study (created on first use, pre-filled with the fixed trials' results)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage or journal_storage(exp_dir), study_name=STUDY_NAME,
                                direction="maximize", sampler=sampler, load_if_exists=True)
    if not study.user_attrs.get(SEEDED_ATTR):
        seeds = fixed_trial_seeds(space, exp_dir)
        for rec, point in seeds:
            study.add_trial(optuna.trial.create_trial(
                params=point, distributions=space.optuna_space.distributions(point), **told(rec),
                intermediate_values=intermediate_values(rec), user_attrs={"segtune_source": "fixed trial",
                                                                          "segtune_trial": rec["trial_id"]}))
        study.set_user_attr(SEEDED_ATTR, True)
        if seeds:
            print(f"  TPE seeded with {len(seeds)} fixed trials")
    return study


def fixed_trial_seeds(space: Space, exp_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(record, searched values) of each finished fixed trial, for the TPE sampler's history.

    Completed trials give their objective; diverged ones the 0.0 they reported. Trials that failed for reasons
    unrelated to their hyperparameters (missing weights, a crash) are left out, and so are trials validated on
    images they trained on (e.g. train_split trainval): their score is not comparable."""
    seeds = []
    for rec in collect_records(exp_dir).values():
        if rec.get("kind") != FIXED or rec.get("objective") is None or val_in_training(rec["config"]):
            continue
        diverged = rec.get("status") == FAILED and str(rec.get("error", "")).startswith("NonFiniteLossError")
        if rec.get("status") != COMPLETED and not diverged:
            continue
        point = space.optuna_space.point(rec["config"])
        if point:
            seeds.append(({**rec, "status": COMPLETED, "objective": float(rec["objective"])}, point))
    return seeds


def val_in_training(cfg: dict[str, Any]) -> bool:
    """Whether a config validates on images it trains on (its score then says little about generalisation)."""
    train, val = cfg.get("train_split", "train"), cfg.get("val_split", "val")
    return val in ("train", "trainval") or (train == "trainval" and val == "val")


def reconcile_study(study: optuna.Study, space: Space, searched: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Bring the study in line with the records of the searched pass (the records win), and return the records of
    the trials that were running when the last driver stopped, to be resumed first, in the order they started.

    A recorded outcome the study lacks is told (the driver died between the record and the tell), its per-epoch
    values first, or, if the journal never had the trial, added. An Optuna trial still RUNNING that no record names
    is failed: it was asked, and the driver died before Tune started it."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    named: set[int] = set()
    resume = []
    for rec in sorted(searched.values(), key=lambda r: str(r.get("name"))):
        ot = trials.get(rec.get("optuna_trial"))
        if ot is not None:
            named.add(ot.number)
        if rec.get("status") not in FINAL_STATUSES:
            running = ot is not None and ot.state == TrialState.RUNNING
            resume.append({**rec, "optuna_trial": ot.number if running else None})
        elif ot is None:
            point = space.optuna_space.point(rec["config"])
            study.add_trial(optuna.trial.create_trial(
                params=point, distributions=space.optuna_space.distributions(point), **told(rec),
                intermediate_values=intermediate_values(rec), user_attrs={"segtune_trial": rec["trial_id"]}))
        elif ot.state == TrialState.RUNNING:
            trial = optuna.trial.Trial(study, ot._trial_id)  # noqa: SLF001 (Optuna has no public handle by number)
            for step, value in intermediate_values(rec).items():
                if step not in ot.intermediate_values:
                    trial.report(value, step)
            study.tell(ot.number, **told(rec))
    for ot in trials.values():
        if ot.state == TrialState.RUNNING and ot.number not in named:
            study.tell(ot.number, state=TrialState.FAIL)
    return resume


def intermediate_values(rec: dict[str, Any]) -> dict[int, float]:
    """A record's per-epoch values of its metric, as Optuna's intermediate values (step = epoch)."""
    metric = rec.get("metric", "val_miou")
    return {int(h["epoch"]): float(h[metric]) for h in rec.get("history", []) if finite(h.get(metric))}


def told(rec: dict[str, Any]) -> dict[str, Any]:
    """What the study is told of a finished trial record: COMPLETE with its objective, PRUNED (Optuna then takes
    the last intermediate value, and TPE ranks pruned trials by the epoch they reached), or FAIL."""
    if rec.get("status") == PRUNED:
        return {"state": TrialState.PRUNED}
    return _value(rec.get("objective"))


def _value(value: Any) -> dict[str, Any]:
    if finite(value):
        return {"state": TrialState.COMPLETE, "values": [float(value)]}
    return {"state": TrialState.FAIL}  # Optuna refuses NaN; a failed trial without a score says nothing


# ---------------------------------------------------------------------------------------------------------------
# The searcher
# ---------------------------------------------------------------------------------------------------------------
class RecordedFirstSearcher(Searcher):
    """Tune Searcher over an Optuna study's ask/tell: hands out the recorded running trials first (same config,
    same segtune id, their Optuna trial if the journal still has it running), then the sampler's suggestions.

    Optuna's pruning protocol: each epoch's `metric` is reported as an intermediate value (step = epoch), a trial
    ASHA stopped before its epochs is told PRUNED, a completed one COMPLETE with its objective (`objective_key`:
    best_val_miou for val_miou), one that errored FAIL. `prune_aware=False` is the older protocol, kept for
    bench.efficiency's comparison: no intermediate values, and a pruned trial told its last score as COMPLETE, as
    Tune's OptunaSearch does (TPE then models a 1-epoch score as a full-budget result)."""

    def __init__(self, optuna_space: OptunaSpace, study: optuna.Study, metric: str, resume: list[dict[str, Any]],
                 default_epochs: int, prune_aware: bool = True):
        super().__init__(metric=metric, mode="max")
        self.optuna_space = optuna_space
        self.study = study
        self.default_epochs = default_epochs
        self.prune_aware = prune_aware
        self._resume = list(resume)
        self._trials: dict[str, optuna.Trial] = {}  # Tune trial id -> its Optuna trial
        self._epochs: dict[str, int] = {}  # Tune trial id -> the epochs it was given
        self._steps: dict[str, set[int]] = {}  # Tune trial id -> epochs already reported to the study

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the space is the optuna_space; metric and mode are fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._resume:
            rec = self._resume.pop(0)
            number = rec["optuna_trial"]
            if number is None:  # the journal lost its trial: a new one with the recorded values
                self.study.enqueue_trial(self.optuna_space.point(rec["config"]))
                ot = self.study.ask()
                self.optuna_space(ot)
            else:
                frozen = self.study.get_trials(deepcopy=False)[number]
                ot = optuna.trial.Trial(self.study, frozen._trial_id)  # noqa: SLF001 (no public handle by number)
                self._steps[trial_id] = set(frozen.intermediate_values)
            self._keep(trial_id, ot, rec["config"])
            return {**rec["config"], TRIAL_KEY: rec["trial_id"], OPTUNA_KEY: ot.number}
        ot = self.study.ask()
        self.optuna_space(ot)  # define-by-run: suggests the active params on `ot`
        self._keep(trial_id, ot, ot.params)
        return {**ot.params, OPTUNA_KEY: ot.number}

    def _keep(self, trial_id: str, ot: optuna.Trial, config: dict[str, Any]) -> None:
        self._trials[trial_id] = ot
        self._epochs[trial_id] = int(config.get("epochs", self.default_epochs))

    # Tune's searcher checkpoint is not needed: the journal and the records are this searcher's state, rebuilt
    # by `build_searcher` on every run (saying so also keeps Tune from warning that save is not implemented).
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        ot = self._trials.get(trial_id)
        value, step = result.get(self.metric), result.get("epoch")
        if not self.prune_aware or ot is None or not finite(value) or step is None:
            return
        steps = self._steps.setdefault(trial_id, set())
        if int(step) not in steps:  # a retried trial reports its resumed epochs again: once is enough
            ot.report(float(value), int(step))
            steps.add(int(step))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot = self._trials.get(trial_id)
        epochs = self._epochs.get(trial_id, self.default_epochs)
        if ot is None:
            return
        if error or not result:
            outcome = {"state": TrialState.FAIL}
        elif not self.prune_aware or result.get(STATUS_KEY) == FAILED:  # a failure that retrying cannot fix
            outcome = _value(result.get(self.metric))  # (diverged, ...): told the FAILED_SCORE it reported
            outcome = _value(result.get(self.metric))
        else:
            # Tune hands the last result (the one ASHA stopped on, or the final epoch's) to on_trial_complete
            # alone, never to on_trial_result
            self.on_trial_result(trial_id, result)
            pruned = int(result.get("epoch", 0)) < epochs
            outcome = {"state": TrialState.PRUNED} if pruned else _value(result.get(objective_key(self.metric)))
        self.study.tell(ot.number, **outcome, skip_if_finished=True)
        for kept in (self._trials, self._epochs, self._steps):
            kept.pop(trial_id, None)


# ---------------------------------------------------------------------------------------------------------------
# The scheduler
# ---------------------------------------------------------------------------------------------------------------
class _Keyed:
    """A Tune trial as ASHA sees it: only `trial_id`, here segtune's id, the same across resumes."""

    def __init__(self, key: str):
        self.trial_id = key


class RecordedASHA(ASHAScheduler):
    """ASHA whose rungs are keyed by segtune's trial ids and refilled from the recorded histories (`replay`), so a
    resumed pass compares new results against every result recorded before the crash, and a resumed trial keeps
    its own rung entries."""

    def replay(self, records: dict[str, dict[str, Any]], metric: str) -> None:
        for key, rec in records.items():
            trial = _Keyed(key)
            super().on_trial_add(None, trial)
            for h in rec.get("history", []):
                value = h.get(metric)
                if value is not None and math.isfinite(value):
                    self._trial_info[key].on_result(trial, h["epoch"], self._metric_op * value)
            if rec.get("status") in FINAL_STATUSES:
                del self._trial_info[key]

    def on_trial_add(self, tune_controller, trial) -> None:
        key = trial_key(trial.config, trial.trial_id)
        if key not in self._trial_info:  # a resumed trial keeps the bracket its replay gave it
            super().on_trial_add(tune_controller, _Keyed(key))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return super().on_trial_result(tune_controller, _Keyed(trial_key(trial.config, trial.trial_id)), result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, _Keyed(trial_key(trial.config, trial.trial_id)), result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._trial_info.pop(trial_key(trial.config, trial.trial_id), None)


def build_scheduler(space: Space, records: dict[str, dict[str, Any]]) -> RecordedASHA | None:
    """ASHA on the space's metric, told every recorded result of the pass; None with `scheduler: none`."""
    if space.scheduler is None:
        return None
    # time_attr "epoch": the trainer's own counter survives retries and resumes (training_iteration restarts)
    asha = RecordedASHA(time_attr="epoch", metric=space.metric, mode="max", max_t=space.max_epochs,
                        grace_period=space.scheduler.grace_period, reduction_factor=space.scheduler.reduction_factor)
    asha.replay(records, space.metric)
    return asha


def build_sampler(spec: SamplerSpec, max_concurrent: int, seed: int) -> optuna.samplers.BaseSampler:
    """A space's Optuna sampler: random, or TPE with a constant liar while trials run in parallel (explicit, since
    Optuna's own default changed between releases: off in 4.x, on in 5.x)."""
    if spec.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    liar = spec.constant_liar if spec.constant_liar is not None else max_concurrent > 1
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.n_startup_trials, constant_liar=liar)


def build_searcher(space: Space, exp_dir: Path, searched: dict[str, dict[str, Any]]) -> RecordedFirstSearcher:
    """The searcher of one run of the searched pass: the persisted study, reconciled with the records, with a fresh
    TPE sampler whose seed moves on with the study's size (a restarted RNG with the first run's seed would propose
    that run's random start-up points again)."""
    storage = journal_storage(exp_dir)
    study = open_study(space, exp_dir, storage)
    resume = reconcile_study(study, space, searched)
    study = open_study(space, exp_dir, storage, build_sampler(space.sampler, space.budget.max_concurrent,
                                                                  seed=space.seed + len(study.trials)))
    return RecordedFirstSearcher(space.optuna_space, study, space.metric, resume, space.defaults.epochs)


__all__ = ["JOURNAL_FILE", "SEARCHED", "RecordedASHA", "RecordedFirstSearcher", "build_scheduler", "build_searcher",
           "fixed_trial_seeds", "journal_path", "open_study", "reconcile_study", "val_in_training"]
