"""`RunInfo`: what every trial of a Tune run needs from the driver. Its own light module (no torch, no seg.trainer),
because it is pickled into every trial: a worker that unpickles it imports only this (the synthetic trials of
bench.scale stay as light as they are meant to be)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from search import storage
from search.tune.layout import dirname_of


@dataclass(frozen=True)
class RunInfo:
    """What every trial needs from the driver (absolute paths: Tune changes the working directory)."""

    exp_dir: str
    metric: str
    cpus: float
    gpus: float
    # segtune trial id -> its recorded checkpoints, newest first: trials a later run of the command resumes
    resume: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # this run of the pass in Tune's storage (`<storage>/tune/<pass>/run-<k>`): each trial writes what it produces
    # into its own folder there, which every node and the driver see (never into the driver's own folder)
    run_storage: str = ""
    synthetic: bool = False  # trials train no model and report made-up curves (search.tune.synthetic, bench.scale)

    def trial_folder(self, config: dict[str, Any], tune_trial_id: str) -> str:
        return storage.join(self.run_storage, dirname_of(config, tune_trial_id))
