"""Trial records: the format of `trials/<trial_id>.json` and how an experiment folder's records are collected.

One JSON record per trial, kept by the driver as Tune results arrive (search.tune.recorder): the trial's name, kind,
pass, resolved TrainConfig fields, where it ran, its per-epoch history (keyed by epoch, so a result reported twice
after a restore counts once) and its final status. For a trial the driver never recorded (it was killed first),
or whose record cannot be read, `collect_records` rebuilds the record from what Tune wrote (read by
search.tune.layout, the one reader of Tune's folders). Ray-free: the tables, the report and the seed planner read
records without importing Ray.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from search.vocab import (COMPLETED, FAILED, FINAL_STATUSES, FIXED, FIXED_KEY, KIND_KEY, METRIC_KEYS, NAME_KEY,
                          OPTUNA_KEY, PRUNED, RUNNING, SEARCHED, TRIAL_KEY, finite, objective_key)
from search.tune.layout import TuneTrial, read_trial_folders
from seg.epoch_metrics import avg5_curve

TRIALS_DIR = "trials"
# Result keys segtune adds to the trainer's metrics: `segtune_<field>` lands in the record as `<field>`, except these,
# which steer the record instead (a no-retry failure).
STATUS_KEY, ERROR_KEY, FAILED_AT_KEY = "segtune_status", "segtune_error", "segtune_failed_at_epoch"
NON_METRIC_RESULT_KEYS = (STATUS_KEY, ERROR_KEY, FAILED_AT_KEY)


# ---------------------------------------------------------------------------------------------------------------
# Trial configs: flat TrainConfig fields plus the trial's name and kind
# ---------------------------------------------------------------------------------------------------------------
def named_trial_config(name: str, fields: dict[str, Any], kind: str = FIXED) -> dict[str, Any]:
    """The Tune config of a named trial (fixed, or a seed rerun): its TrainConfig fields plus name and kind."""
    return {**fields, NAME_KEY: name, KIND_KEY: kind}


def split_config(config: dict[str, Any]) -> tuple[str | None, str, dict[str, Any]]:
    """(name, kind, TrainConfig fields) of a Tune trial config of any pass."""
    flat = dict(config.get(FIXED_KEY) or config)
    name, kind = flat.pop(NAME_KEY, None), flat.pop(KIND_KEY, SEARCHED)
    flat.pop(TRIAL_KEY, None)
    flat.pop(OPTUNA_KEY, None)
    return name, kind, flat


def trial_key(config: dict[str, Any], tune_trial_id: str) -> str:
    """segtune's id of a Tune trial: the id of the trial it resumes, else its own Tune trial id."""
    return (config.get(FIXED_KEY) or config).get(TRIAL_KEY) or tune_trial_id


def optuna_number(config: dict[str, Any]) -> int | None:
    return (config.get(FIXED_KEY) or config).get(OPTUNA_KEY)


def trial_name(trial_id: str, config: dict[str, Any]) -> str:
    """A named trial's name; for a searched trial a provisional `search-<trial id>` (the recorder numbers them)."""
    name, kind, _ = split_config(config)
    return name if kind != SEARCHED and name else f"search-{trial_id}"


# ---------------------------------------------------------------------------------------------------------------
# Folding results into a record
# ---------------------------------------------------------------------------------------------------------------
def merge_result(rec: dict[str, Any], result: dict[str, Any]) -> None:
    """Fold one Tune result into a trial record: placement, the objective, and the epoch's metrics."""
    for k, v in result.items():
        if k.startswith("segtune_") and k not in NON_METRIC_RESULT_KEYS:
            rec[k.removeprefix("segtune_")] = v
    metric = rec.get("metric", "val_miou")
    key = metric if result.get(STATUS_KEY) == FAILED else objective_key(metric)  # a failure reports FAILED_SCORE
    if key in result:
        rec["objective"] = result[key]  # what Optuna is told when the trial ends
    if result.get(STATUS_KEY) == FAILED:
        rec.update(status=FAILED, error=result.get(ERROR_KEY), error_type="no-retry",
                   failed_at_epoch=result.get(FAILED_AT_KEY))
        return
    if "epoch" not in result:
        return
    row = {k: v for k, v in result.items() if k in METRIC_KEYS or k.startswith("iou_")}
    history = {int(h["epoch"]): h for h in rec.get("history", [])}
    history[int(row["epoch"])] = row
    rec["history"] = [history[e] for e in sorted(history)]


def epochs_run(rec: dict[str, Any]) -> int:
    return max((int(h["epoch"]) for h in rec.get("history", [])), default=0)


def final_status(rec: dict[str, Any]) -> dict[str, Any]:
    """completed | pruned (stopped by ASHA before its epochs, no error) | failed."""
    if rec.get("status") == FAILED:
        return {"status": FAILED, "pruned_at_epoch": None}
    run = epochs_run(rec)
    if run >= int(rec["config"].get("epochs", 0)):
        return {"status": COMPLETED, "pruned_at_epoch": None, "error": None}
    return {"status": PRUNED, "pruned_at_epoch": run, "error": None}


def with_avg5(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's history with `val_miou_avg5` / `max_val_miou_avg5` on every epoch: recorded ones as they are,
    derived from `val_miou` (seg.epoch_metrics.avg5_curve) for records written before those keys existed, so an older
    experiment can warm-start a search on that metric."""
    if all("val_miou_avg5" in h for h in history):
        return history
    vals = [float(h["val_miou"]) if finite(h.get("val_miou")) else math.nan for h in history]
    return [{"val_miou_avg5": avg, "max_val_miou_avg5": top, **h} for h, (avg, top) in zip(history, avg5_curve(vals))]


def best_val_miou(rec: dict[str, Any]) -> float | None:
    hist = rec.get("history") or []
    return hist[-1].get("best_val_miou") if hist else None


def describe_end(rec: dict[str, Any]) -> str:
    """One line per finished trial for the console."""
    best = best_val_miou(rec)
    score = f"best val mIoU {best:.4f}" if finite(best) else "no score"
    what = {COMPLETED: f"completed {len(rec.get('history', []))} epochs",
            PRUNED: f"pruned by ASHA after epoch {rec.get('pruned_at_epoch')}",
            FAILED: f"FAILED: {rec.get('error')}"}.get(rec.get("status"), rec.get("status"))
    retries = f", {rec['num_failures']} retried crash(es)" if rec.get("num_failures") else ""
    return f"[segtune] {rec['name']} ({rec['trial_id']}) {what}; {score}{retries}"


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
def record_path(exp_dir: str | Path, trial_id: str) -> Path:
    return Path(exp_dir) / TRIALS_DIR / f"{trial_id}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_record(exp_dir: str | Path, rec: dict[str, Any]) -> None:
    write_json_atomic(record_path(exp_dir, rec["trial_id"]), rec)


def write_json_atomic(path: Path, obj: Any) -> None:
    from seg.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default, allow_nan=True))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


# ---------------------------------------------------------------------------------------------------------------
# Collecting an experiment's records
# ---------------------------------------------------------------------------------------------------------------
def collect_records(exp_dir: Path) -> dict[str, dict[str, Any]]:
    """trial_id -> record, from segtune's records and Tune's trial folders (history merged by epoch).

    The records are the truth about what was decided; Tune's folders only add epochs that reached Tune's log after
    the driver's last record write, and trials the driver never recorded (it died before the trial's start was
    written). A record that cannot be read is named in a warning and rebuilt from Tune's folder when there is one;
    nothing is left out silently."""
    exp_dir = Path(exp_dir)
    records: dict[str, dict[str, Any]] = {}
    damaged: dict[str, str] = {}  # trial id -> why its record could not be read
    for path in sorted((exp_dir / TRIALS_DIR).glob("*.json")):
        rec, why = _read_record_or_why(path)
        if rec is not None:
            records[rec["trial_id"]] = rec
        else:
            damaged[path.stem] = why
    for trial in read_trial_folders(exp_dir):
        tune_rec = record_from_tune(trial)
        rec = records.get(tune_rec["trial_id"])
        if rec is None:
            records[tune_rec["trial_id"]] = tune_rec
        else:
            merged = {int(h["epoch"]): h for h in (*tune_rec["history"], *rec.get("history", []))}
            rec["history"] = [merged[e] for e in sorted(merged)]
    for trial_id, why in damaged.items():
        outcome = (f"rebuilt from Tune's folder {records[trial_id]['trial_dir']}" if trial_id in records
                   else "no Tune folder holds it, so it is left out of the tables")
        warnings.warn(f"trial record {record_path(exp_dir, trial_id)} could not be read ({why}); {outcome}",
                      RuntimeWarning, stacklevel=2)
    return records


def _read_record_or_why(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"
    if not isinstance(rec, dict) or "trial_id" not in rec:
        return None, "not a trial record: no trial_id"
    return rec, ""


def pass_records(exp_dir: Path, pass_name: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(final, unfinished) records of one pass, by trial id: what was decided, and what was running when the last
    driver stopped."""
    recs = {t: r for t, r in collect_records(exp_dir).items() if r.get("pass_name") == pass_name}
    final = {t: r for t, r in recs.items() if r.get("status") in FINAL_STATUSES}
    return final, {t: r for t, r in recs.items() if t not in final}


def resume_checkpoints(rec: dict[str, Any], moved: dict[str, str] | None = None) -> tuple[str, ...]:
    """The checkpoints a resumed trial may continue from, newest first (the recorder keeps the last few).

    Records name checkpoints by the location they were written at; `moved` maps an experiment's earlier storage
    to its current one (`search.folder.moved_storage`), so a folder that was moved, copied or restored
    elsewhere resumes from its own checkpoints instead of training its running trials again from scratch."""
    paths = (c["path"] for c in reversed(rec.get("checkpoints", [])) if c.get("path"))
    return tuple(rebase(p, moved or {}) for p in paths)


def rebase(location: str, moved: dict[str, str]) -> str:
    """`location` under an earlier storage root, read from the root that replaced it (unchanged otherwise)."""
    for old, new in moved.items():
        old = old.rstrip("/")
        if location == old or location.startswith(old + "/"):
            return new.rstrip("/") + location[len(old):]
    return location


def record_from_tune(trial: TuneTrial) -> dict[str, Any]:
    """The record of a trial as far as Tune's folder tells it (search.tune.layout reads the folder)."""
    trial_id = trial_key(trial.config, trial.tune_trial_id)
    name, kind, fields = split_config(trial.config)
    rec: dict[str, Any] = {"trial_id": trial_id, "name": trial_name(trial_id, trial.config), "kind": kind,
                           "config": fields, "history": [], "metric": "val_miou", "status": RUNNING,
                           "pass_name": trial.pass_name, "trial_dir": str(trial.path)}
    for row in trial.results:
        merge_result(rec, row)
    if trial.error is not None:
        rec.update(status=FAILED, error=trial.error, error_type="crash")
    elif rec["status"] != FAILED and final_status(rec)["status"] == COMPLETED:
        rec.update(final_status(rec))
    # else: no driver record and not finished: still running, or the driver died before recording its end
    return rec
