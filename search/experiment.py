"""The experiment's state: `experiment.json` (provenance, passes done, Tune runs per pass), opened once per run.

    location = locate(space, ...)                                     # search.folder: where it lives
    with ExperimentLock(location):                                    # search.lock: a second driver is refused
        exp = open_experiment(space, location, cluster_info)          # new, or resumed (space unchanged)

Ray-free.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import storage
from search.grow import budget_change, describe as describe_growth
from search.provenance import git_commit, now_iso, versions
from search.folder import DRIVER_FILES, EXPERIMENT_FILE, Location, moved_storage
from search.records import write_json_atomic
from search.space import Space, SpaceError, changed_keys
from search.space.model import read_with_current_code
from search.storage import Store


class PassInterrupted(Exception):
    """A Tune pass stopped early (a signal); its state is saved and the same command resumes it."""


@dataclass
class Experiment:
    """An opened experiment: its location and the state in experiment.json (passes done, provenance, ...)."""

    name: str
    dir: Path
    tune_storage: str
    store: Store = field(default=None)  # type: ignore[assignment]
    moved: dict[str, str] = field(default_factory=dict)  # earlier storage -> current (`moved_storage`)

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = Store(None, self.dir)

    @property
    def json_path(self) -> Path:
        return self.dir / EXPERIMENT_FILE

    def read(self) -> dict[str, Any]:
        return json.loads(self.json_path.read_text())

    def update(self, **kw: Any) -> None:
        data = self.read() if self.json_path.is_file() else {}
        data.update(kw)
        write_json_atomic(self.json_path, data)
        self.store.push(self.json_path)

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
        return storage.join(self.tune_storage, pass_name)


def check_same_space(exp: Experiment, stored: dict[str, Any], space: Space, resolved: dict[str, Any]) -> None:
    """Refuse a space file edited since the experiment started; accept one that differs only by fields an older
    segtune did not know (read with their defaults, they compute the same), and store it as this version writes it."""
    diff = changed_keys(read_with_current_code(stored.get("space", {})), resolved)
    if diff:
        raise SpaceError(
            f"{space.source}: differs from the space experiment {exp.name!r} was started with "
            f"({exp.json_path}):\n  " + "\n  ".join(diff) +
            "\nA resumed search cannot change its space, only its budget: undo the other edits, or pass --fresh "
            "to start a new experiment (the old one is kept).")
    print(f"experiment {exp.name!r} was started by an older segtune; its space, with this version's defaults for "
          f"the fields added since, is unchanged")
    exp.update(space=resolved, space_hash=space.hash)


def open_experiment(space: Space, location: Location, cluster: dict[str, Any] | None = None) -> Experiment:
    """A new experiment at `location`, or the existing one to resume (refused if the space file changed since)."""
    exp = Experiment(location.name, location.dir, location.tune_storage, Store(location.uri, location.dir))
    if exp.store.remote:  # storage's copy is the one the last driver wrote, wherever it ran
        pulled = exp.store.pull(DRIVER_FILES)
        if pulled:
            print(f"pulled {pulled} files of experiment {exp.name!r} from {location.uri}")
    resolved = space.to_json()
    if exp.json_path.is_file():
        stored = exp.read()
        grown = budget_change(stored, space, exp.dir) if stored.get("space_hash") != space.hash else None
        if grown is not None:  # only `budget` changed: the search grows (search/grow.py)
            exp.update(**grown)
            print(describe_growth(grown))
            stored = exp.read()
        elif stored.get("space_hash") != space.hash:
            check_same_space(exp, stored, space, resolved)
        print(f"resuming experiment {exp.name!r} in {exp.dir} (passes done: "
              f"{[p for p, s in stored.get('passes', {}).items() if s == 'done'] or 'none'})")
        exp.moved = moved_storage(stored, location.storage)
        if stored.get("storage", location.storage) != location.storage:
            print(f"experiment {exp.name!r} was run from {stored['storage']} before; its checkpoints are read "
                  f"from {location.storage} now")
        exp.update(resumed_at=[*stored.get("resumed_at", []), now_iso()], finished_at=None, **(cluster or {}),
                   storage=location.storage, tune_storage=exp.tune_storage, earlier_storage=list(exp.moved))
        return exp
    exp.dir.mkdir(parents=True, exist_ok=True)
    defaults = space.defaults.resolved()
    exp.update(
        name=exp.name, space_file=str(Path(space.source).resolve()), space_hash=space.hash, space=resolved,
        resources=space.resources.model_dump(), dataset=defaults.dataset, year=defaults.year,
        data_root=defaults.data_root, image_size=defaults.image_size, metric=space.metric, mode="max",
        storage=location.storage, tune_storage=exp.tune_storage, started_at=now_iso(), finished_at=None, passes={},
        git_commit=git_commit(), versions=versions(), command=sys.argv, **(cluster or {}),
    )
    print(f"experiment {exp.name!r} in {exp.dir}")
    return exp
