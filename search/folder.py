"""The experiment folder: where an experiment lives (`locate`, `Location`), the names of what it holds, and the one
check every command that reads a folder goes through (`experiment_folder`), which refuses a folder that is not an
experiment and names what it found.

    location = locate(space, results=None, name=None, fresh=False)   # search.run: decided once, used by every step
    exp_dir = experiment_folder("results/quick")                      # search.leaderboard / report / export

An experiment is stored at `<storage>/<name>` (`--results` or the space's `storage:`): a local folder or a shared
mount (the same path on every node), or a URI (`s3://bucket/prefix`, `gs://...`, `file:///shared/...`). With a URI,
Tune's checkpoints go straight there, and the driver works in a local folder (`<workdir>/<name>`, default
`results/`) whose files it pushes to the URI as it writes them; a resumed run, on any machine, first pulls them back.
Ray-free.
"""
from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search import storage
from search.records import TRIALS_DIR
from search.space import Space
from search.storage import is_uri
from search.tune.layout import TUNE_DIR

EXPERIMENT_FILE = "experiment.json"
JOURNAL_FILE = "optuna-journal.log"
MASKS_DIR = "masks"
# what the driver keeps in its working folder and pushes to a URI; a resumed run pulls these back first
DRIVER_FILES = (EXPERIMENT_FILE, TRIALS_DIR, JOURNAL_FILE, MASKS_DIR)
# what makes a folder an experiment: search.run writes experiment.json first, and trials/ is what the tables read
EXPERIMENT_MARKS = (EXPERIMENT_FILE, TRIALS_DIR)
SHOWN_ENTRIES = 8  # entries of a wrong folder a refusal lists


@dataclass(frozen=True)
class Location:
    """Where an experiment lives: its name, the driver's local folder, and its storage URI (None when the local
    folder is the storage: a local disk or a shared mount)."""

    name: str
    dir: Path  # experiment.json, trials/, masks/, the journal, Parquet, report
    uri: str | None = None

    @property
    def storage(self) -> str:
        """The experiment's storage location (its URI, or its folder)."""
        return self.uri or str(self.dir)

    @property
    def tune_storage(self) -> str:
        """Where Tune keeps the trials' folders and checkpoints: `<storage>/tune`, seen by every node."""
        return storage.join(self.storage, TUNE_DIR)


def locate(space: Space, results: str | None = None, name: str | None = None, fresh: bool = False,
           workdir: str | None = None) -> Location:
    """The experiment this command starts or resumes: `<results or space.storage>/<name or space.name>`, or with
    `fresh` a new `<name>-<timestamp>` next to an existing one. For a URI, the driver's local folder is
    `<workdir or results/>/<name>`."""
    root = results or space.storage
    name = name or space.name
    if is_uri(root):
        local_root = Path(workdir or "results").expanduser().resolve()
        taken = lambda n: storage.exists(storage.join(root, n, EXPERIMENT_FILE)) or (local_root / n).exists()
    else:
        local_root = Path(root).expanduser().resolve()
        taken = lambda n: (local_root / n).exists()
    if fresh and taken(name):
        name = f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    return Location(name, local_root / name, storage.join(root, name) if is_uri(root) else None)


class NotAnExperimentError(ValueError):
    """A command was given a folder that is not a segtune experiment; the message names what it found."""


def command_folder(path: str | Path) -> Path | None:
    """For a command's main: the experiment folder, or None after printing why it is not one (exit code 2)."""
    try:
        return experiment_folder(path)
    except NotAnExperimentError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def experiment_folder(path: str | Path) -> Path:
    """`path` as an experiment folder, or NotAnExperimentError saying what is there instead."""
    path = Path(path)
    if path.is_dir() and any((path / mark).exists() for mark in EXPERIMENT_MARKS):
        return path
    if not path.exists():
        found = "it does not exist"
    elif not path.is_dir():
        found = "it is a file"
    else:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        shown = ", ".join(entries[:SHOWN_ENTRIES]) + (f" and {len(entries) - SHOWN_ENTRIES} more"
                                                      if len(entries) > SHOWN_ENTRIES else "")
        found = f"it holds {shown}" if entries else "it is empty"
        inside = [p.name for p in path.iterdir() if p.is_dir() and (p / EXPERIMENT_FILE).is_file()]
        if inside:
            found += f" (experiments inside it: {', '.join(sorted(inside)[:SHOWN_ENTRIES])})"
    raise NotAnExperimentError(f"{path} is not a segtune experiment folder: {found}, and no "
                               f"{' or '.join(EXPERIMENT_MARKS)}; pass the folder `python -m search.run` wrote, "
                               f"e.g. results/<name>")


def moved_storage(stored: dict[str, Any], current: str) -> dict[str, str]:
    """Each storage the experiment was run from before (experiment.json's `storage`, `earlier_storage`) mapped to
    `current`: the records name checkpoints by where they were written (`search.records.rebase`)."""
    earlier = [*stored.get("earlier_storage", []), stored.get("storage")]
    return {s: current for s in dict.fromkeys(earlier) if s and s != current}
