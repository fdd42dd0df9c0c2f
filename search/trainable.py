"""What runs under Ray Tune: the trainable (one trial = one `seg.train.Trainer`) and the driver-side recorder.

The trainable reports one result per epoch (the trainer's metrics dict plus where it ran) with a checkpoint of the
full trainer state, so a retried trial continues from its last epoch. Failures that would repeat on every retry
(a diverging loss, missing pretrained weights, a config the data cannot satisfy) are not retried: the trial
reports a finite score (0.0) with `segtune_status: failed` and returns, so Optuna's `tell` gets a number and the
search goes on. Anything else (a crash, a lost node) is raised and Tune retries it from the last checkpoint.
Running out of GPU memory is retried once (a trial sharing the GPU may have peaked at the same time); a second
out-of-memory fails the trial with a message to lower batch_size or give each trial more GPU. An unreadable
checkpoint falls back to an older one, or to a fresh start, with a warning in the trial's record.

`TrialRecorder` is a Tune callback in the driver. It keeps `trials/<trial_id>.json` per trial (config, placement,
per-epoch history, final status) and rewrites the leaderboard after every finished trial.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from search.faults import hold_after_epoch
from search.provenance import now_iso

STATE_FILE = "trainer_state.pt"  # inside each Tune checkpoint directory
FIXED, SEARCHED, SEED = "fixed", "searched", "seed"  # kinds; seed: a rerun of another trial with another seed
FIXED_KEY = "segtune_fixed"  # fixed-pass param_space: {FIXED_KEY: grid_search([complete config + name, ...])}
NAME_KEY, KIND_KEY = "segtune_name", "segtune_kind"
FAILED_SCORE = 0.0  # what Optuna is told for a trial that cannot train: the floor of mIoU / pixel accuracy


@dataclass(frozen=True)
class RunInfo:
    """What every trial needs from the driver (absolute paths: Tune changes the working directory)."""

    exp_dir: str
    metric: str
    cpus: float
    gpus: float


# ---------------------------------------------------------------------------------------------------------------
# Trial configs: flat TrainConfig fields plus the trial's name and kind
# ---------------------------------------------------------------------------------------------------------------
def fixed_trial_config(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, NAME_KEY: name, KIND_KEY: FIXED}


def split_config(config: dict[str, Any]) -> tuple[str | None, str, dict[str, Any]]:
    """(name, kind, TrainConfig fields) of a Tune trial config of either pass."""
    flat = dict(config.get(FIXED_KEY) or config)
    name, kind = flat.pop(NAME_KEY, None), flat.pop(KIND_KEY, SEARCHED)
    return name, kind, flat


def trial_name(trial_id: str, config: dict[str, Any]) -> str:
    """The fixed trial's name; for a searched trial a provisional `search-<trial id>` (the recorder numbers them)."""
    name, kind, _ = split_config(config)
    return name if kind != SEARCHED and name else f"search-{trial_id}"


def trial_dirname(trial) -> str:
    """Tune trial folders named `<fixed name>_<trial id>` or `search_<trial id>` instead of a config string."""
    name, kind, _ = split_config(trial.config)
    return f"{name if kind != SEARCHED and name else 'search'}_{trial.trial_id}"


def trial_id_from_dirname(dirname: str, config: dict[str, Any]) -> str:
    name, kind, _ = split_config(config)
    prefix = name if kind != SEARCHED and name else "search"
    return dirname[len(prefix) + 1:]


# ---------------------------------------------------------------------------------------------------------------
# The trainable
# ---------------------------------------------------------------------------------------------------------------
def train_trial(config: dict[str, Any], run: RunInfo) -> None:
    """Tune function trainable: builds a Trainer, restores the last checkpoint if any, reports every epoch."""
    import torch

    from seg.config import make_config
    from seg.train import Trainer

    torch.set_num_threads(max(1, int(run.cpus)))  # the trial's CPU share, not every core of the node
    trial_id = tune.get_context().get_trial_id()
    name, kind, fields = split_config(config)
    placement = where_am_i(run)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None and fields.get("fail_kind") != "oom":
        fields["fail_at_epoch"] = None  # test fault injection fires once (an injected OOM repeats, as a real one)
    trainer = None
    # next to the trial's record (not in Tune's per-actor working dir, which a retry on a reused actor does not see)
    oom_marker = Path(run.exp_dir) / "trials" / f".{trial_id}.{OOM_MARKER}"
    try:
        cfg = make_config(fields, source=f"trial {name or trial_id}")
        trainer = Trainer(cfg)
        if checkpoint is not None:
            trainer, warning = restore_trainer(trainer, checkpoint, lambda: Trainer(cfg))
            if warning:
                placement["segtune_warning"] = warning  # in the trial's record as `warning`
        placement["segtune_device_name"] = trainer.device_name
        masks = Path(run.exp_dir) / "masks" / f"{trial_id}.npz"
        for metrics in trainer.epochs():
            status = "completed" if metrics["epoch"] >= cfg.epochs else "running"
            with tempfile.TemporaryDirectory(prefix="segtune-ckpt-") as d:
                trainer.save(Path(d) / STATE_FILE)
                if metrics["best_epoch"] == metrics["epoch"]:
                    trainer.save_masks(masks)
                tune.report({**metrics, **placement, "segtune_status": status},
                            checkpoint=tune.Checkpoint.from_directory(d))
            hold_after_epoch(metrics["epoch"], trial_id)  # test-only fault injection (SEGTUNE_FAULT)
    except Exception as err:
        if is_out_of_memory(err):
            err = out_of_memory(err, fields, run, oom_marker)  # raises the first time: Tune retries once
        elif not repeats_on_retry(err):
            raise  # Tune retries it (FailureConfig.max_failures) from the last checkpoint
        failed_at = (trainer.epoch + 1) if trainer is not None else 0
        tune.report({run.metric: FAILED_SCORE, **placement, "segtune_status": "failed",
                     "segtune_error": f"{type(err).__name__}: {err}", "segtune_failed_at_epoch": failed_at})


OOM_MARKER = "out-of-memory"  # trials/.<trial_id>.out-of-memory: this trial already ran out of memory once


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "CUDA out of memory" in str(err)


class TrialOutOfMemoryError(RuntimeError):
    """The trial ran out of GPU memory (retried once; the second time it is failed)."""


def out_of_memory(err: BaseException, fields: dict[str, Any], run: RunInfo,
                  marker: Path) -> TrialOutOfMemoryError:
    """Out of memory is retried once (another trial sharing the GPU may have been at its peak); if it happens
    again the trial is failed with what to change. Raises the first time, returns the error to report the second."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    share = f"{run.gpus:g} GPU per trial" if run.gpus else "on the CPU"
    fix = (f"lower batch_size (now {fields.get('batch_size')}) or image_size, or give each trial more of a GPU "
           f"(raise resources.gpus, now {run.gpus:g}, so fewer trials share one)")
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{type(err).__name__}: {err}\n")
        raise TrialOutOfMemoryError(f"out of memory ({share}): {err}; retrying once from the last checkpoint "
                               f"(if budget.max_failures allows); if it repeats: {fix}") from err
    return TrialOutOfMemoryError(f"out of memory again after a retry ({share}): {fix}. Last error: {err}")


def restore_trainer(trainer, checkpoint, make_trainer) -> tuple[Any, str | None]:
    """Load the trial's last checkpoint; if it is unreadable (a node died mid-write, a disk filled up), the older
    checkpoints Tune kept beside it (CheckpointConfig.num_to_keep), newest first; if none loads, start from
    scratch. Returns the trainer and, after a fallback, a warning that says what happened."""
    import warnings

    failed: list[str] = []
    with checkpoint.as_directory() as d:
        newest = Path(d)
        try:
            trainer.load(newest / STATE_FILE)
            return trainer, None
        except Exception as e:
            failed.append(f"{newest.name}: {type(e).__name__}: {str(e)[:200]}")
    older = []
    if _is_local(checkpoint) and newest.parent.is_dir():
        older = sorted((p for p in newest.parent.glob("checkpoint_*") if p.is_dir() and p.name < newest.name),
                       reverse=True)
    resumed = None
    for ckpt in older:
        trainer = make_trainer()  # a failed load may have left part of the state behind
        try:
            trainer.load(ckpt / STATE_FILE)
            resumed = ckpt
            break
        except Exception as e:
            failed.append(f"{ckpt.name}: {type(e).__name__}: {str(e)[:200]}")
    if resumed is None:
        trainer = make_trainer()
    where = f"resumed from {resumed.name} (epoch {trainer.epoch})" if resumed else "restarted from scratch"
    warning = (f"checkpoint could not be loaded ({'; '.join(failed)}); {where}")
    warnings.warn(warning, RuntimeWarning, stacklevel=2)
    return trainer, warning


def _is_local(checkpoint) -> bool:
    fs = getattr(checkpoint, "filesystem", None)
    return fs is None or type(fs).__name__ == "LocalFileSystem"


def repeats_on_retry(err: BaseException) -> bool:
    """Failures a retry cannot fix: reported as `failed` at once instead of burning retries."""
    from pydantic import ValidationError

    from seg.config import ConfigError
    from seg.data.voc import DataError
    from seg.models.resnet_fcn import PretrainedWeightsError
    from seg.train import NonFiniteLossError

    return isinstance(err, (NonFiniteLossError, PretrainedWeightsError, ConfigError, DataError, ValidationError))


def where_am_i(run: RunInfo) -> dict[str, Any]:
    """Host, Ray node, GPU ids and the GPU share this trial was given (Ray sets CUDA_VISIBLE_DEVICES to them)."""
    import ray

    ctx = ray.get_runtime_context()
    gpu_ids = [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]
    assigned = ctx.get_assigned_resources()
    return {"segtune_host": socket.gethostname(), "segtune_node_id": ctx.get_node_id(), "segtune_pid": os.getpid(),
            "segtune_gpu_ids": ",".join(gpu_ids), "segtune_gpu_fraction": run.gpus,
            "segtune_assigned_gpus": float(assigned.get("GPU", 0.0)), "segtune_assigned": json.dumps(assigned),
            "segtune_cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "segtune_device_name": ""}


# ---------------------------------------------------------------------------------------------------------------
# Driver side: one JSON record per trial, the leaderboard after every finished trial
# ---------------------------------------------------------------------------------------------------------------
class TrialRecorder(tune.Callback):
    """Writes `trials/<trial_id>.json` as results arrive and rebuilds the Parquet tables when a trial ends.

    Records are merged with what is on disk (history keyed by epoch), so a trial that is re-run after the driver
    was killed, or that reports an epoch twice after a restore, still has each epoch once.
    """

    def __init__(self, exp_dir: str, pass_name: str, run: RunInfo):
        self.exp_dir = exp_dir
        self.pass_name = pass_name
        self.run = run

    # Tune hooks -------------------------------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        rec.setdefault("started_at", now_iso())
        rec["status"] = "running"
        self._write(rec)
        print(f"[segtune] {rec['name']} ({trial.trial_id}) started", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self._record(trial)
        merge_result(rec, result)
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
        rec.update(status="failed", error=last_exception_line(text), error_type="crash", error_text=text[-20000:],
                   pruned_at_epoch=None)
        self._finish(rec, trial)

    # helpers ------------------------------------------------------------------------------------------------------
    def _record(self, trial) -> dict[str, Any]:
        path = record_path(self.exp_dir, trial.trial_id)
        rec = read_record(path) or {}
        name, kind, fields = split_config(trial.config)
        if "name" not in rec:  # searched trials are numbered in the order they start: search-0001, ...
            rec["name"] = name if kind != SEARCHED and name else f"search-{self._searched_count() + 1:04d}"
        rec.update(trial_id=trial.trial_id, kind=kind,
                   pass_name=self.pass_name, config=fields, gpus=self.run.gpus, cpus=self.run.cpus,
                   metric=self.run.metric, trial_dir=trial.local_path, num_failures=trial.num_failures)
        rec.setdefault("history", [])
        return rec

    def _searched_count(self) -> int:
        return sum(1 for p in (Path(self.exp_dir) / "trials").glob("*.json")
                   if (read_record(p) or {}).get("kind") == SEARCHED)

    def _finish(self, rec: dict[str, Any], trial) -> None:
        rec["finished_at"] = now_iso()
        rec["num_failures"] = trial.num_failures
        self._write(rec)
        print(describe_end(rec), flush=True)
        from search.leaderboard import write_tables

        try:
            write_tables(Path(self.exp_dir))
        except Exception as e:  # a leaderboard problem must not stop the search; it is regenerated at the end
            print(f"[segtune] could not update the leaderboard: {type(e).__name__}: {e}")

    def _write(self, rec: dict[str, Any]) -> None:
        write_json_atomic(record_path(self.exp_dir, rec["trial_id"]), rec)


def describe_end(rec: dict[str, Any]) -> str:
    """One line per finished trial for the console."""
    hist = rec.get("history", [])
    best = hist[-1].get("best_val_miou") if hist else None
    score = f"best val mIoU {best:.4f}" if finite(best) else "no score"
    what = {"completed": f"completed {len(hist)} epochs",
            "pruned": f"pruned by ASHA after epoch {rec.get('pruned_at_epoch')}",
            "failed": f"FAILED: {rec.get('error')}"}.get(rec.get("status"), rec.get("status"))
    retries = f", {rec['num_failures']} retried crash(es)" if rec.get("num_failures") else ""
    return f"[segtune] {rec['name']} ({rec['trial_id']}) {what}; {score}{retries}"


NON_METRIC_RESULT_KEYS = ("segtune_status", "segtune_error", "segtune_failed_at_epoch")


def merge_result(rec: dict[str, Any], result: dict[str, Any]) -> None:
    """Fold one Tune result into a trial record: placement, the objective, and the epoch's metrics."""
    for k, v in result.items():
        if k.startswith("segtune_") and k not in NON_METRIC_RESULT_KEYS:
            rec[k.removeprefix("segtune_")] = v
    metric = rec.get("metric", "val_miou")
    if metric in result:
        rec["objective"] = result[metric]  # the value Optuna is told (its last report)
    if result.get("segtune_status") == "failed":
        rec.update(status="failed", error=result.get("segtune_error"), error_type="no-retry",
                   failed_at_epoch=result.get("segtune_failed_at_epoch"))
        return
    if "epoch" not in result:
        return
    row = {k: v for k, v in result.items() if k in METRIC_KEYS or k.startswith("iou_")}
    history = {int(h["epoch"]): h for h in rec.get("history", [])}
    history[int(row["epoch"])] = row
    rec["history"] = [history[e] for e in sorted(history)]


def final_status(rec: dict[str, Any]) -> dict[str, Any]:
    """completed | pruned (stopped by ASHA before its epochs, no error) | failed."""
    if rec.get("status") == "failed":
        return {"status": "failed", "pruned_at_epoch": None}
    epochs_run = max((int(h["epoch"]) for h in rec.get("history", [])), default=0)
    if epochs_run >= int(rec["config"].get("epochs", 0)):
        return {"status": "completed", "pruned_at_epoch": None, "error": None}
    return {"status": "pruned", "pruned_at_epoch": epochs_run, "error": None}


def local_error_text(trial) -> str | None:
    """The trial's error.txt in its local folder (written by Tune before the callback runs)."""
    try:
        return Path(trial.error_file).read_text() or None
    except (OSError, TypeError, AttributeError):
        return None


def last_exception_line(text: str) -> str:
    """`RuntimeError: injected failure ...` out of a Ray traceback."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    pat = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)|ray\.\S+): ")
    for ln in reversed(lines):
        if pat.match(ln) and not ln.startswith(("ray.exceptions.RayTaskError", "Failure #")):
            return ln[:2000]
    return (lines[-1] if lines else "unknown error")[:2000]


def record_path(exp_dir: str | Path, trial_id: str) -> Path:
    return Path(exp_dir) / "trials" / f"{trial_id}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, obj: Any) -> None:
    from seg.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default, allow_nan=True))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


# The per-epoch metrics of docs/DESIGN.md (iou_<class> follow after test_pixel_acc)
METRIC_KEYS = ("epoch", "train_loss", "val_loss", "val_miou", "val_pixel_acc", "lr", "images_per_s", "seconds",
               "compile_seconds", "best_epoch", "best_val_miou", "best_val_pixel_acc", "test_miou",
               "test_pixel_acc", "pretrained")


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

