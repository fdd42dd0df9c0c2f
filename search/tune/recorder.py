"""The driver-side Tune callback: keeps `trials/<trial_id>.json` per trial as results arrive, prints one line when a
trial starts and ends, and tells the table writer it was handed when a trial ends.

Records are keyed by segtune's trial id (`search.records.trial_key`): a trial resumed by a later run of the
command, as a new Tune trial, continues its own record, name and history. History is keyed by epoch, so an epoch
reported twice (a retry from an older checkpoint) is kept once. A record that says a trial ended is written before
the line that announces it, so nothing announced is ever missing after a crash.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ray import tune

from search import storage
from search.faults import kill_after
from search.provenance import now_iso
from search.records import (describe_end, final_status, merge_result, optuna_number, read_record, record_path,
                            split_config, trial_key, write_record)
from search.tune.layout import MASKS_FILE, RESUME_FILE, dirname_of, last_exception_line, state_location
from search.tune.run_info import RunInfo
from search.vocab import FAILED, RUNNING, SEARCHED

KEPT_CHECKPOINTS = 3  # checkpoint paths a record keeps (Tune keeps 2 per trial; one more in case it is mid-delete)
JOURNAL_PUSH_S = 30.0  # the Optuna journal is pushed at most this often (and at the end of the pass): the records
# are the truth and repair a journal that lags (search.tune.searchers.reconcile_study)


class TableSink(Protocol):
    """What the recorder needs of the tables (search.fragments.TableWriter): told of every trial that ends."""

    def trial_finished(self, rec: dict[str, Any]) -> None: ...


class TrialRecorder(tune.Callback):
    def __init__(self, exp_dir: str, pass_name: str, run: RunInfo, tables: TableSink, attempt: int = 0,
                 searched_so_far: int = 0, publish: Callable[[Path], None] = lambda path: None):
        self.exp_dir = exp_dir
        self.publish = publish  # pushes a file of the experiment folder to its storage URI (a no-op locally)
        self._journal_pushed = 0.0
        self.pass_name = pass_name
        self.run = run
        self.tables = tables
        self.attempt = attempt  # which run of the command this is for the pass (0 = the first)
        self.searched = searched_so_far  # searched trials named so far: the next is search-<searched + 1>
        self._records: dict[str, dict[str, Any]] = {}

    # Tune hooks -------------------------------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        resumed = bool(rec.get("history"))
        rec.setdefault("started_at", now_iso())
        rec["status"] = RUNNING
        self._write(rec)
        how = f"resumed after epoch {rec['history'][-1]['epoch']}" if resumed else "started"
        print(f"[segtune] {rec['name']} ({rec['trial_id']}) {how}", flush=True)
        kill_after(self.pass_name, "start")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self._record(trial)
        merge_result(rec, result)
        self._write(rec)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        rec = self._record(trial)
        epoch = (trial.last_result or {}).get("epoch")
        # as a location under the run's storage (checkpoint.path drops the URI's scheme on object storage)
        path = storage.join(self.run.run_storage, dirname_of(trial.config, trial.trial_id), Path(checkpoint.path).name)
        rec["checkpoints"] = [*rec.get("checkpoints", []), {"epoch": epoch, "path": path,
                                                           "attempt": self.attempt}][-KEPT_CHECKPOINTS:]
        self._write(rec)

    def on_trial_complete(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        if trial.last_result:
            merge_result(rec, trial.last_result)
        rec.update(final_status(rec))
        self._finish(rec, trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        # get_error() reads the copy in storage, which Tune syncs later; the local error file is written first.
        text = trial.get_error() or local_error_text(trial) or "trial errored (no error file)"
        rec.update(status=FAILED, error=last_exception_line(text), error_type="crash", error_text=text[-20000:],
                   pruned_at_epoch=None)
        self._finish(rec, trial)

    # helpers ------------------------------------------------------------------------------------------------------
    def _record(self, trial) -> dict[str, Any]:
        key = trial_key(trial.config, trial.trial_id)
        rec = self._records.get(key)
        if rec is None:
            rec = self._records[key] = read_record(record_path(self.exp_dir, key)) or {}
        name, kind, fields = split_config(trial.config)
        if "name" not in rec:  # searched trials are numbered in the order they start: search-0001, ...
            if kind == SEARCHED or not name:
                self.searched += 1
                name = f"search-{self.searched:04d}"
            rec["name"] = name
        tune_runs = rec.setdefault("tune_trials", [])  # one entry per Tune trial that ran it (one per resume)
        if not tune_runs or tune_runs[-1]["tune_trial_id"] != trial.trial_id:
            tune_runs.append({"tune_trial_id": trial.trial_id, "attempt": self.attempt, "dir": trial.local_path})
        tune_runs[-1]["num_failures"] = trial.num_failures
        rec.update(trial_id=key, kind=kind, pass_name=self.pass_name, config=fields, gpus=self.run.gpus,
                   cpus=self.run.cpus, metric=self.run.metric, trial_dir=trial.local_path,
                   num_failures=sum(t["num_failures"] for t in tune_runs))
        if optuna_number(trial.config) is not None:
            rec["optuna_trial"] = optuna_number(trial.config)
        rec.setdefault("history", [])
        return rec

    def _finish(self, rec: dict[str, Any], trial) -> None:
        rec["finished_at"] = now_iso()
        self._fetch_masks(rec, trial)
        slim_checkpoints(rec)
        self._write(rec)
        print(describe_end(rec), flush=True)
        self.tables.trial_finished(rec)
        self.push_journal()
        self._records.pop(rec["trial_id"], None)  # final: no more events; keeps the driver's memory flat
        kill_after(self.pass_name, rec["status"])

    def _write(self, rec: dict[str, Any]) -> None:
        write_record(self.exp_dir, rec)
        self.publish(record_path(self.exp_dir, rec["trial_id"]))

    def _fetch_masks(self, rec: dict[str, Any], trial) -> None:
        """The trial's best masks, from its storage folder (written on whichever node it ran) to masks/."""
        data = storage.read_bytes(storage.join(self.run.run_storage, dirname_of(trial.config, trial.trial_id),
                                               MASKS_FILE))
        if data is None:
            return
        local = Path(self.exp_dir) / "masks" / f"{rec['trial_id']}.npz"
        storage.write_bytes(str(local), data)
        self.publish(local)
        rec["masks"] = f"masks/{rec['trial_id']}.npz"
        storage.delete(storage.join(self.run.run_storage, dirname_of(trial.config, trial.trial_id), MASKS_FILE))

    def push_journal(self, force: bool = False) -> None:
        journal = Path(self.exp_dir) / "optuna-journal.log"
        if journal.is_file() and (force or time.monotonic() - self._journal_pushed > JOURNAL_PUSH_S):
            self.publish(journal)
            self._journal_pushed = time.monotonic()


def slim_checkpoints(rec: dict[str, Any]) -> None:
    """A final trial keeps what export and the report need, not what a retry would: its newest checkpoint without
    RESUME_FILE (model and optimizer state), so its STATE_FILE (search.tune.layout) holds the best weights (`best_state`), config and scores;
    the older checkpoints go. The record names what is left (`checkpoints`, `best_weights`)."""
    kept = rec.get("checkpoints") or []
    if not kept:
        return
    *older, newest = kept
    for c in older:
        storage.delete_dir(c["path"])
    storage.delete(storage.join(newest["path"], RESUME_FILE))
    rec["checkpoints"] = [{**newest, "slim": True}]
    rec["best_weights"] = state_location(newest["path"])


def local_error_text(trial) -> str | None:
    """The trial's error.txt in its local folder (written by Tune before the callback runs)."""
    try:
        return Path(trial.error_file).read_text() or None
    except (OSError, TypeError, AttributeError):
        return None
