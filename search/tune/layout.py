"""Tune's folders and segtune's checkpoint files: every file name as a constant, and one reader of a trial folder.

Like Ray's own `tune/result.py` + `tune/analysis/experiment_analysis.py`: whatever knows what Tune writes under
`<experiment>/tune/<pass>/run-<k>/<trial folder>/` (params.json, result.json, error.txt, checkpoint_*/) and what
segtune's trainable writes beside it (the checkpoint files, the masks, the out-of-memory marker) lives here; the
rest of the code asks this module. Ray-free and light (no Ray, torch or pandas), so the record collection
(search.records), the tables and search.export can use it: the one module of search/tune/ they may import.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from search import storage
from search.vocab import FIXED_KEY, KIND_KEY, NAME_KEY, SEARCHED

TUNE_DIR = "tune"  # <experiment>/tune/<pass>/run-<k>/<trial folder>/
# Tune's own files in a trial folder
PARAMS_FILE = "params.json"  # the trial's config
RESULT_FILE = "result.json"  # one JSON result per line
ERROR_FILE = "error.txt"  # the traceback of a trial that errored
CHECKPOINT_GLOB = "checkpoint_*"  # Tune's checkpoint folders, numbered in order
# segtune's files inside each checkpoint folder: STATE_FILE is what a finished trial keeps (the best weights under
# `best_state`, the config, epoch, scores, masks: what search.export reads); RESUME_FILE (model and optimizer of the
# last epoch) only a retry needs, and the recorder deletes it once the trial is final.
STATE_FILE = "trainer_state.pt"
RESUME_FILE = "resume_state.pt"
RESUME_KEYS = ("model", "optimizer")  # the Trainer state keys RESUME_FILE holds
# segtune's files in the trial's storage folder (beside Tune's)
MASKS_FILE = "masks.npz"  # the best epoch's masks (docs/DESIGN.md); the recorder moves them to masks/
OOM_MARKER = "out-of-memory"  # this trial already ran out of memory once


# ---------------------------------------------------------------------------------------------------------------
# Trial folder names
# ---------------------------------------------------------------------------------------------------------------
def _dirname_prefix(config: dict[str, Any]) -> str:
    flat = config.get(FIXED_KEY) or config
    name = flat.get(NAME_KEY)
    return name if flat.get(KIND_KEY, SEARCHED) != SEARCHED and name else "search"


def trial_dirname(trial) -> str:
    """Tune trial folders named `<fixed name>_<trial id>` or `search_<trial id>` instead of a config string."""
    return dirname_of(trial.config, trial.trial_id)


def dirname_of(config: dict[str, Any], tune_trial_id: str) -> str:
    """The Tune trial folder's name, from what both the driver and the trial itself know."""
    return f"{_dirname_prefix(config)}_{tune_trial_id}"


def trial_id_from_dirname(dirname: str, config: dict[str, Any]) -> str:
    return dirname[len(_dirname_prefix(config)) + 1:]


def state_location(checkpoint: str) -> str:
    """Where a checkpoint's Trainer state is (a local path or a URI)."""
    return storage.join(checkpoint, STATE_FILE)


def checkpoint_state_files(exp_dir: str | Path) -> Iterator[Path]:
    """The Trainer state file of every checkpoint kept in a local experiment folder."""
    return Path(exp_dir).glob(f"{TUNE_DIR}/*/*/*/{CHECKPOINT_GLOB}/{STATE_FILE}")


def last_exception_line(text: str) -> str:
    """`RuntimeError: injected failure ...` out of a Ray traceback."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    pat = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)|ray\.\S+): ")
    for ln in reversed(lines):
        if pat.match(ln) and not ln.startswith(("ray.exceptions.RayTaskError", "Failure #")):
            return ln[:2000]
    return (lines[-1] if lines else "unknown error")[:2000]


# ---------------------------------------------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------------------------------------------
class TuneTrial(NamedTuple):
    """What Tune wrote for one trial, as the records need it."""

    path: Path
    pass_name: str
    tune_trial_id: str
    config: dict[str, Any]
    results: list[dict[str, Any]]  # in the order Tune logged them
    error: str | None  # the last exception line of error.txt, if the trial errored


def read_trial_folder(trial_dir: Path) -> TuneTrial | None:
    """One trial folder; None when it has no params.json (not a trial, or Tune had not started it). A folder Tune
    wrote but that cannot be read is named in a warning."""
    params, results, error = trial_dir / PARAMS_FILE, trial_dir / RESULT_FILE, trial_dir / ERROR_FILE
    if not params.is_file():
        return None
    try:
        config = json.loads(params.read_text())
        lines = results.read_text().splitlines() if results.is_file() else []
        rows = [json.loads(line) for line in lines if line.strip()]
        error_text = error.read_text() if error.is_file() else None
    except (OSError, ValueError) as e:
        warnings.warn(f"Tune's trial folder {trial_dir} could not be read ({type(e).__name__}: {e}); its epochs "
                      "are left out", RuntimeWarning, stacklevel=2)
        return None
    tune_id = next((r["trial_id"] for r in rows if "trial_id" in r), None) or trial_id_from_dirname(
        trial_dir.name, config)
    return TuneTrial(trial_dir, trial_dir.parent.parent.name, tune_id, config, rows,
                     None if error_text is None else last_exception_line(error_text))


def read_trial_folders(exp_dir: str | Path) -> Iterator[TuneTrial]:
    """Every trial folder of every run of every pass of an experiment, in a stable order."""
    for trial_dir in sorted((Path(exp_dir) / TUNE_DIR).glob("*/*/*/")):  # tune/<pass>/<run>/<trial>/
        trial = read_trial_folder(trial_dir)
        if trial is not None:
            yield trial
