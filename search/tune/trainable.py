"""The trainable: one Tune trial = one `seg.trainer.Trainer`, reporting every epoch with a checkpoint.

Each epoch's result is the trainer's metrics dict plus where it ran (`segtune_*` keys), with a checkpoint of the
full trainer state, so a retried trial continues from its last epoch. Failures that would repeat on every retry
(a diverging loss, missing pretrained weights, a config the data cannot satisfy) are not retried: the trial
reports a finite score (0.0) with `segtune_status: failed` and returns, so Optuna's `tell` gets a number and the
search goes on. Anything else (a crash, a lost node) is raised and Tune retries it from the last checkpoint.
Running out of GPU memory is retried once (a trial sharing the GPU may have peaked at the same time); a second
out-of-memory fails the trial with a message to lower batch_size or give each trial more GPU. An unreadable
checkpoint falls back to an older one, or to a fresh start, with a warning in the trial's record.
"""
from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from pydantic import ValidationError
from ray import tune

from search.faults import epoch_hooks, hold_after_epoch
from search import storage
from search.records import ERROR_KEY, FAILED_AT_KEY, STATUS_KEY, split_config, trial_key
from search.tune.layout import CHECKPOINT_GLOB, MASKS_FILE, OOM_MARKER, RESUME_FILE, RESUME_KEYS, STATE_FILE
from search.tune.run_info import RunInfo
from search.vocab import COMPLETED, FAILED, FAILED_SCORE, HOST, RUNNING
from seg.atomic import atomic_write
from seg.config import ConfigError, make_config
from seg.data.voc import DataError
from seg.models.weights import PretrainedWeightsError
from seg.trainer import NonFiniteLossError, Trainer


def train_trial(config: dict[str, Any], run: RunInfo) -> None:
    """Tune function trainable: builds a Trainer, restores the last checkpoint if any, reports every epoch."""
    torch.set_num_threads(max(1, int(run.cpus)))  # the trial's CPU share, not every core of the node
    tune_trial_id = tune.get_context().get_trial_id()
    trial_id = trial_key(config, tune_trial_id)
    folder = run.trial_folder(config, tune_trial_id)
    name, kind, fields = split_config(config)
    placement = where_am_i(run)
    candidates = checkpoint_candidates(tune.get_checkpoint(), run.resume.get(trial_id, ()))
    hooks = epoch_hooks(name, restored=bool(candidates))  # test-only fault injection (SEGTUNE_FAULT)
    trainer = None
    # in the trial's storage folder: a retry on another node (or on a reused actor) sees it
    oom_marker = storage.join(folder, OOM_MARKER)
    try:
        cfg = make_config(fields, source=f"trial {name or trial_id}")
        trainer = Trainer(cfg, hooks=hooks)
        if candidates:
            trainer, warning = restore_trainer(trainer, candidates, lambda: Trainer(cfg, hooks=hooks))
            if warning:
                placement["segtune_warning"] = warning  # in the trial's record as `warning`
        placement["segtune_device_name"] = trainer.device_name
        masks = storage.join(folder, MASKS_FILE)
        if trainer.best_masks is not None:  # resumed as a new Tune trial: its folder gets the masks too
            storage.write_bytes(masks, masks_npz(trainer))
        if trainer.epoch >= cfg.epochs and trainer.last_metrics:
            # every epoch had run when the last driver stopped, before the trial's end was recorded: report the
            # last epoch again (the record keeps it once) so the trial ends with its score
            tune.report({**trainer.last_metrics, **placement, STATUS_KEY: COMPLETED})
        for metrics in trainer.epochs():
            status = COMPLETED if metrics["epoch"] >= cfg.epochs else RUNNING
            with tempfile.TemporaryDirectory(prefix="segtune-ckpt-") as d:
                save_checkpoint(trainer, Path(d))
                if metrics["best_epoch"] == metrics["epoch"] and trainer.best_masks is not None:
                    storage.write_bytes(masks, masks_npz(trainer))
                tune.report({**metrics, **placement, STATUS_KEY: status},
                            checkpoint=tune.Checkpoint.from_directory(d))
            hold_after_epoch(metrics["epoch"], trial_id)  # test-only fault injection (SEGTUNE_FAULT)
    except Exception as err:
        if isinstance(err, DataError):
            err = data_missing_on_node(err, fields, placement)
        if is_out_of_memory(err):
            err = out_of_memory(err, fields, run, oom_marker)  # raises the first time: Tune retries once
        elif not repeats_on_retry(err):
            raise  # Tune retries it (FailureConfig.max_failures) from the last checkpoint
        failed_at = (trainer.epoch + 1) if trainer is not None else 0
        tune.report({run.metric: FAILED_SCORE, **placement, STATUS_KEY: FAILED,
                     ERROR_KEY: f"{type(err).__name__}: {err}", FAILED_AT_KEY: failed_at})


def data_missing_on_node(err: DataError, fields: dict[str, Any], placement: dict[str, Any]) -> DataError:
    """The data error, naming the node: on a cluster every node must see the data at the same path."""
    return DataError(
        f"on node {placement.get(f'segtune_{HOST}')} (Ray node {str(placement.get('segtune_node_id'))[:12]}): {err}. "
        f"Every node must see the data at {fields.get('data_root')}: mount the same shared folder at that path on "
        f"every node, or copy it there with the cluster launcher's file_mounts / setup_commands (docs/cluster.md)")


def masks_npz(trainer: Trainer) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **trainer.best_masks)
    return buf.getvalue()


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "CUDA out of memory" in str(err)


class TrialOutOfMemoryError(RuntimeError):
    """The trial ran out of GPU memory (retried once; the second time it is failed)."""


def out_of_memory(err: BaseException, fields: dict[str, Any], run: RunInfo,
                  marker: str) -> TrialOutOfMemoryError:
    """Out of memory is retried once (another trial sharing the GPU may have been at its peak); if it happens
    again the trial is failed with what to change. Raises the first time, returns the error to report the second."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    share = f"{run.gpus:g} GPU per trial" if run.gpus else "on the CPU"
    fix = (f"lower batch_size (now {fields.get('batch_size')}) or image_size, or give each trial more of a GPU "
           f"(raise resources.gpus, now {run.gpus:g}, so fewer trials share one)")
    if not storage.exists(marker):
        storage.write_bytes(marker, f"{type(err).__name__}: {err}\n".encode())
        raise TrialOutOfMemoryError(f"out of memory ({share}): {err}; retrying once from the last checkpoint "
                               f"(if budget.max_failures allows); if it repeats: {fix}") from err
    return TrialOutOfMemoryError(f"out of memory again after a retry ({share}): {fix}. Last error: {err}")


def save_checkpoint(trainer: Trainer, folder: Path) -> None:
    """The trainer's state as STATE_FILE + RESUME_FILE (search.tune.layout), each written atomically."""
    state = trainer.state_dict()
    resume = {k: state.pop(k) for k in RESUME_KEYS}
    atomic_write(folder / RESUME_FILE, lambda tmp: torch.save(resume, tmp))
    atomic_write(folder / STATE_FILE, lambda tmp: torch.save(state, tmp))


def load_checkpoint(trainer: Trainer, folder: Path) -> None:
    """Load a checkpoint folder: the two files, or a single full STATE_FILE (as Trainer.save writes it)."""
    load = lambda name: torch.load(folder / name, map_location=trainer.levers.device, weights_only=True)  # noqa: E731
    state = load(STATE_FILE)
    if not all(k in state for k in RESUME_KEYS):
        state.update(load(RESUME_FILE))  # a slimmed (final) checkpoint has none: it is never resumed
    trainer.load_state_dict(state)


def checkpoint_candidates(checkpoint: tune.Checkpoint | None, recorded: tuple[str, ...]) -> list[tune.Checkpoint]:
    """Where a trial continues from, best first: Tune's own checkpoint (a retry within this run) and the older ones
    Tune kept beside it (CheckpointConfig.num_to_keep); else, for a trial that a later run of the command resumes
    as a new Tune trial, the checkpoints its record names (local paths or URIs)."""
    if checkpoint is not None:
        return [checkpoint, *_older_siblings(checkpoint)]
    return [tune.Checkpoint(p) for p in recorded]


def _older_siblings(checkpoint: tune.Checkpoint) -> list[tune.Checkpoint]:
    fs = getattr(checkpoint, "filesystem", None)
    if fs is not None and type(fs).__name__ != "LocalFileSystem":
        return []  # listing object storage for leftovers is not worth it: a retry falls back to scratch
    newest = Path(checkpoint.path)
    if not newest.parent.is_dir():
        return []
    older = sorted((p for p in newest.parent.glob(CHECKPOINT_GLOB) if p.is_dir() and p.name < newest.name),
                   reverse=True)
    return [tune.Checkpoint(str(p)) for p in older]


def restore_trainer(trainer, candidates: list[tune.Checkpoint], make_trainer) -> tuple[Any, str | None]:
    """Load the first readable checkpoint of `candidates` (a node died mid-write, a disk filled up: the next one);
    if none loads, start from scratch. Returns the trainer and, after a fallback, a warning saying what happened."""
    failed: list[str] = []
    for i, ckpt in enumerate(candidates):
        if i:
            trainer = make_trainer()  # a failed load may have left part of the state behind
        try:
            with ckpt.as_directory() as d:
                load_checkpoint(trainer, Path(d))
        except Exception as e:
            failed.append(f"{Path(ckpt.path).name}: {type(e).__name__}: {str(e)[:200]}")
            continue
        if not failed:
            return trainer, None
        warning = (f"checkpoint could not be loaded ({'; '.join(failed)}); resumed from {Path(ckpt.path).name} "
                   f"(epoch {trainer.epoch})")
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
        return trainer, warning
    trainer = make_trainer()
    warning = f"checkpoint could not be loaded ({'; '.join(failed)}); restarted from scratch"
    warnings.warn(warning, RuntimeWarning, stacklevel=2)
    return trainer, warning


def repeats_on_retry(err: BaseException) -> bool:
    """Failures a retry cannot fix: reported as `failed` at once instead of burning retries."""
    return isinstance(err, (NonFiniteLossError, PretrainedWeightsError, ConfigError, DataError, ValidationError))


def where_am_i(run: RunInfo) -> dict[str, Any]:
    """Host, Ray node, GPU ids and the GPU share this trial was given (Ray sets CUDA_VISIBLE_DEVICES to them)."""
    ctx = ray.get_runtime_context()
    gpu_ids = [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]
    assigned = ctx.get_assigned_resources()
    return {f"segtune_{HOST}": socket.gethostname(), "segtune_node_id": ctx.get_node_id(), "segtune_pid": os.getpid(),
            "segtune_gpu_ids": ",".join(gpu_ids), "segtune_gpu_fraction": run.gpus,
            "segtune_assigned_gpus": float(assigned.get("GPU", 0.0)), "segtune_assigned": json.dumps(assigned),
            "segtune_cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "segtune_device_name": ""}
