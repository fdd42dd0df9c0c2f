"""The experiment folder `results/<name>/`: where it is, its lock, and `experiment.json`.

    location = locate(space, results=None, name=None, fresh=False)   # decided once, used by every step
    with ExperimentLock(location):                                    # a second driver is refused here
        exp = open_experiment(space, location, cluster_info)          # new, or resumed (space unchanged)

One run per experiment folder: an exclusive flock on `<exp>/.segtune.lock`, held for the life of the driver. The
kernel drops it when the process ends in any way (SIGKILL included), so a killed run never blocks its rerun.
Ray-free.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.provenance import git_commit, now_iso, versions
from search.records import write_json_atomic
from search.space import Space, SpaceError, changed_keys

LOCK_NAME = ".segtune.lock"
EXPERIMENT_FILE = "experiment.json"


class PassInterrupted(Exception):
    """A Tune pass stopped early (a signal); its state is saved and the same command resumes it."""


def is_uri(path: str) -> bool:
    return "://" in path


@dataclass(frozen=True)
class Location:
    """Where an experiment lives: its name, its local folder and Tune's storage path for it."""

    name: str
    dir: Path  # local: experiment.json, trials/, masks/, Parquet, report
    tune_storage: str  # Tune's storage_path: <dir>/tune, or <URI>/<name> for cloud storage


def locate(space: Space, results: str | None = None, name: str | None = None, fresh: bool = False) -> Location:
    """The experiment this command starts or resumes: `<results or space.storage>/<name or space.name>`, or with
    `fresh` a new `<name>-<timestamp>` next to an existing one."""
    root = results or space.storage
    local_root = Path("results" if is_uri(root) else root).expanduser().resolve()
    name = name or space.name
    if fresh and (local_root / name).exists():
        name = f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    exp_dir = local_root / name
    tune_storage = f"{root.rstrip('/')}/{name}" if is_uri(root) else str(exp_dir / "tune")
    return Location(name, exp_dir, tune_storage)


class ExperimentLock:
    """Holds the experiment folder's lock for a `with` block, or refuses (SpaceError) naming the run that holds it.
    On exit the lock is dropped, and a folder this run created and left empty (it failed before starting) is
    removed."""

    def __init__(self, location: Location):
        self.location = location
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> "ExperimentLock":
        exp_dir, name = self.location.dir, self.location.name
        self._created = not exp_dir.exists()
        try:
            exp_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(exp_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SpaceError(f"results folder {exp_dir.parent}: cannot write the experiment folder {exp_dir} "
                             f"({e.strerror or e}); pass --results with a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"
                   if holder else "another process")
            raise SpaceError(f"{exp_dir}: experiment {name!r} is already being run by {who}; nothing was changed. "
                             f"Wait for that run to finish (or stop it, then rerun this command to resume), or pass "
                             f"--fresh or --name NAME to start a separate experiment") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso(),
                           "command": sys.argv}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        exp_dir = self.location.dir
        try:
            if self._created and [p.name for p in exp_dir.iterdir()] == [LOCK_NAME]:
                (exp_dir / LOCK_NAME).unlink()
                exp_dir.rmdir()
        except OSError:
            pass
        os.close(self._fd)  # releases the flock
        self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        return {}


@dataclass
class Experiment:
    """An opened experiment: its location and the state in experiment.json (passes done, provenance, ...)."""

    name: str
    dir: Path
    tune_storage: str

    @property
    def json_path(self) -> Path:
        return self.dir / EXPERIMENT_FILE

    def read(self) -> dict[str, Any]:
        return json.loads(self.json_path.read_text())

    def update(self, **kw: Any) -> None:
        data = self.read() if self.json_path.is_file() else {}
        data.update(kw)
        write_json_atomic(self.json_path, data)

    def pass_done(self, name: str) -> bool:
        return self.json_path.is_file() and self.read().get("passes", {}).get(name) == "done"

    def mark_done(self, name: str) -> None:
        passes = self.read().get("passes", {})
        self.update(passes={**passes, name: "done"})

    def next_attempt(self, pass_name: str) -> int:
        """Count one more run of a pass (0 for its first): each run of the command is its own Tune run."""
        attempts = self.read().get("attempts", {})
        n = int(attempts.get(pass_name, -1)) + 1
        self.update(attempts={**attempts, pass_name: n})
        return n

    def tune_path(self, pass_name: str) -> str:
        return f"{self.tune_storage.rstrip('/')}/{pass_name}"


def open_experiment(space: Space, location: Location, cluster: dict[str, Any] | None = None) -> Experiment:
    """A new experiment at `location`, or the existing one to resume (refused if the space file changed since)."""
    exp = Experiment(location.name, location.dir, location.tune_storage)
    resolved = space.to_json()
    if exp.json_path.is_file():
        stored = exp.read()
        if stored.get("space_hash") != space.hash:
            diff = changed_keys(stored.get("space", {}), resolved)
            raise SpaceError(
                f"{space.source}: differs from the space experiment {exp.name!r} was started with "
                f"({exp.json_path}):\n  " + "\n  ".join(diff or ["(hash differs)"]) +
                "\nA resumed search cannot change its space: undo the edits, or pass --fresh to start a new "
                "experiment (the old one is kept).")
        print(f"resuming experiment {exp.name!r} in {exp.dir} (passes done: "
              f"{[p for p, s in stored.get('passes', {}).items() if s == 'done'] or 'none'})")
        exp.update(resumed_at=[*stored.get("resumed_at", []), now_iso()], finished_at=None, **(cluster or {}))
        return exp
    exp.dir.mkdir(parents=True, exist_ok=True)
    defaults = space.defaults.resolved()
    exp.update(
        name=exp.name, space_file=str(Path(space.source).resolve()), space_hash=space.hash, space=resolved,
        resources=space.resources.model_dump(), dataset=defaults.dataset, year=defaults.year,
        data_root=defaults.data_root, image_size=defaults.image_size, metric=space.metric, mode="max",
        tune_storage=exp.tune_storage, started_at=now_iso(), finished_at=None, passes={},
        git_commit=git_commit(), versions=versions(), command=sys.argv, **(cluster or {}),
    )
    print(f"experiment {exp.name!r} in {exp.dir}")
    return exp
