"""The synthetic trainable: a Tune trial that trains no model and reports made-up learning curves
(search.synthetic) with a tiny checkpoint per epoch, as fast as Tune takes them. `search.run --synthetic-trials`
runs a whole search of them through the real passes, recorder, tables and report, which is how bench.scale
measures what the search itself costs per trial. Imports neither torch nor seg.trainer, so its workers stay light.
"""
from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from search.faults import hold_after_epoch
from search.records import STATUS_KEY, split_config, trial_key
from search.synthetic import synthetic_epochs
from search.tune.run_info import RunInfo
from search.vocab import COMPLETED, HOST, RUNNING
from seg.atomic import atomic_write_text

CHECKPOINT_FILE = "synthetic_state.json"  # inside each Tune checkpoint: the epoch reached


def synthetic_trial(config: dict[str, Any], run: RunInfo) -> None:
    """Reports epochs 1..epochs (after a restore: from the checkpoint's next epoch), each with a checkpoint."""
    trial_id = trial_key(config, tune.get_context().get_trial_id())
    _, _, fields = split_config(config)
    start = 1 + _restored_epoch(tune.get_checkpoint())
    placement = {f"segtune_{HOST}": socket.gethostname(), "segtune_device_name": "synthetic",
                 "segtune_gpu_fraction": run.gpus}
    epochs = int(fields["epochs"])
    for metrics in synthetic_epochs(fields, trial_id, epochs, start):
        status = COMPLETED if metrics["epoch"] >= epochs else RUNNING
        with tempfile.TemporaryDirectory(prefix="segtune-syn-") as d:
            atomic_write_text(Path(d) / CHECKPOINT_FILE, json.dumps({"epoch": metrics["epoch"]}))
            tune.report({**metrics, **placement, STATUS_KEY: status}, checkpoint=tune.Checkpoint.from_directory(d))
        hold_after_epoch(metrics["epoch"], trial_id)  # test-only fault injection (SEGTUNE_FAULT), as train_trial


def _restored_epoch(checkpoint: tune.Checkpoint | None) -> int:
    if checkpoint is None:
        return 0
    try:
        with checkpoint.as_directory() as d:
            return int(json.loads((Path(d) / CHECKPOINT_FILE).read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0
