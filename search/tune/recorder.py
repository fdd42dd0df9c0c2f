"""The driver-side Tune callback: keeps `trials/<trial_id>.json` per trial as results arrive, prints one line when a
trial starts and ends, and tells the table writer it was handed when a trial ends.

Records are merged with what is on disk (history keyed by epoch), so a trial that is re-run after the driver
was killed, or that reports an epoch twice after a restore, still has each epoch once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ray import tune

from search.provenance import now_iso
from search.records import (TRIALS_DIR, describe_end, final_status, last_exception_line, merge_result, read_record,
                            record_path, split_config, write_record)
from search.tune.trainable import RunInfo
from search.vocab import FAILED, RUNNING, SEARCHED


class TableSink(Protocol):
    """What the recorder needs of the tables (search.tables.TableWriter): told of every trial that ends."""

    def trial_finished(self, rec: dict[str, Any]) -> None: ...


class TrialRecorder(tune.Callback):
    def __init__(self, exp_dir: str, pass_name: str, run: RunInfo, tables: TableSink):
        self.exp_dir = exp_dir
        self.pass_name = pass_name
        self.run = run
        self.tables = tables

    # Tune hooks -------------------------------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        rec.setdefault("started_at", now_iso())
        rec["status"] = RUNNING
        write_record(self.exp_dir, rec)
        print(f"[segtune] {rec['name']} ({trial.trial_id}) started", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self._record(trial)
        merge_result(rec, result)
        write_record(self.exp_dir, rec)

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
        rec = read_record(record_path(self.exp_dir, trial.trial_id)) or {}
        name, kind, fields = split_config(trial.config)
        if "name" not in rec:  # searched trials are numbered in the order they start: search-0001, ...
            rec["name"] = name if kind != SEARCHED and name else f"search-{self._searched_count() + 1:04d}"
        rec.update(trial_id=trial.trial_id, kind=kind,
                   pass_name=self.pass_name, config=fields, gpus=self.run.gpus, cpus=self.run.cpus,
                   metric=self.run.metric, trial_dir=trial.local_path, num_failures=trial.num_failures)
        rec.setdefault("history", [])
        return rec

    def _searched_count(self) -> int:
        return sum(1 for p in (Path(self.exp_dir) / TRIALS_DIR).glob("*.json")
                   if (read_record(p) or {}).get("kind") == SEARCHED)

    def _finish(self, rec: dict[str, Any], trial) -> None:
        rec["finished_at"] = now_iso()
        rec["num_failures"] = trial.num_failures
        write_record(self.exp_dir, rec)
        print(describe_end(rec), flush=True)
        self.tables.trial_finished(rec)


def local_error_text(trial) -> str | None:
    """The trial's error.txt in its local folder (written by Tune before the callback runs)."""
    try:
        return Path(trial.error_file).read_text() or None
    except (OSError, TypeError, AttributeError):
        return None
