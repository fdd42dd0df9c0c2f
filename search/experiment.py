"""The experiment: where it is stored, its lock, and `experiment.json`.

    location = locate(space, results=None, name=None, fresh=False)   # decided once, used by every step
    with ExperimentLock(location):                                    # a second driver is refused here
        exp = open_experiment(space, location, cluster_info)          # new, or resumed (space unchanged)

An experiment is stored at `<storage>/<name>` (`--results` or the space's `storage:`): a local folder or a shared
mount (the same path on every node), or a URI (`s3://bucket/prefix`, `gs://...`, `file:///shared/...`). With a URI,
Tune's checkpoints go straight there, and the driver works in a local folder (`<workdir>/<name>`, default
`results/`) whose files it pushes to the URI as it writes them; a resumed run, on any machine, first pulls them back.

One driver per experiment. Locally: an exclusive flock on `<folder>/.segtune.lock`, held for the life of the
driver; the kernel drops it when the process ends in any way (SIGKILL included), so a killed run never blocks its
rerun. On a URI, object storage has no locks: a lease object `<uri>/.segtune.lock` (owner, host, pid, heartbeat)
that the driver refreshes every HEARTBEAT_S seconds; another driver is refused while the lease is younger than
LEASE_S, unless its holder is a process on this same host that no longer exists. Two drivers starting within the
same second can both pass the check; each then reads the lease back and the one that lost the race stops, which
narrows the window to the storage's read-after-write delay (immediate on S3 and GCS today). Ray-free.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import storage
from search.grow import budget_change, describe as describe_growth
from search.provenance import git_commit, now_iso, versions
from search.records import TRIALS_DIR, write_json_atomic
from search.space import Space, SpaceError, changed_keys
from search.storage import Store, is_uri

LOCK_NAME = ".segtune.lock"
EXPERIMENT_FILE = "experiment.json"
LEASE_S = 120.0  # seconds a URI lock stays valid without a heartbeat
HEARTBEAT_S = 30.0
# what the driver keeps in its working folder and pushes to a URI; a resumed run pulls these back first
DRIVER_FILES = (EXPERIMENT_FILE, TRIALS_DIR, "optuna-journal.log", "masks")


class PassInterrupted(Exception):
    """A Tune pass stopped early (a signal); its state is saved and the same command resumes it."""


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
        return storage.join(self.storage, "tune")


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


class ExperimentLock:
    """Holds the experiment folder's lock for a `with` block, or refuses (SpaceError) naming the run that holds it.
    On exit the lock is dropped, and a folder this run created and left empty (it failed before starting) is
    removed."""

    def __init__(self, location: Location):
        self.location = location
        self._fd: int | None = None
        self._created = False
        self._lease: _Lease | None = None

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
        if self.location.uri:
            try:
                self._lease = _Lease(storage.join(self.location.uri, LOCK_NAME), name)
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None
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


class _Lease:
    """The lock of an experiment on a URI: a lease object refreshed by a background thread (see the module doc)."""

    def __init__(self, location: str, name: str):
        self.location = location
        self.me = {"owner": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(),
                   "started_at": now_iso(), "command": sys.argv}
        held = self._read()
        if held and held.get("owner") != self.me["owner"] and not _expired(held):
            raise SpaceError(_held_message(location, name, held))
        self._write()
        back = self._read()
        if back.get("owner") != self.me["owner"]:  # another driver wrote after us: it won the race
            raise SpaceError(_held_message(location, name, back))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="segtune-lease", daemon=True)
        self._thread.start()

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(storage.read_bytes(self.location) or b"{}")
        except ValueError:
            return {}

    def _write(self) -> None:
        storage.write_bytes(self.location, json.dumps({**self.me, "heartbeat": time.time()}).encode())

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError as e:  # storage unreachable for a moment: the next beat tries again
                print(f"warning: could not refresh the experiment lock {self.location}: {e}", file=sys.stderr)

    def release(self) -> None:
        self._stop.set()
        if self._read().get("owner") == self.me["owner"]:
            storage.delete(self.location)


def _expired(held: dict[str, Any]) -> bool:
    if time.time() - float(held.get("heartbeat", 0)) > LEASE_S:
        return True
    if held.get("host") == socket.gethostname():  # a holder on this machine that no longer runs (SIGKILL)
        try:
            os.kill(int(held.get("pid", -1)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return False


def _held_message(location: str, name: str, held: dict[str, Any]) -> str:
    age = time.time() - float(held.get("heartbeat", 0))
    return (f"{location}: experiment {name!r} is already being run by pid {held.get('pid')} on {held.get('host')} "
            f"(started {held.get('started_at')}, last heartbeat {age:.0f} s ago; the lock expires {LEASE_S:.0f} s "
            f"after the last one); nothing was changed. Wait for that run to finish, or pass --fresh or --name NAME "
            f"to start a separate experiment")


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
    store: Store = field(default=None)  # type: ignore[assignment]

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
            diff = changed_keys(stored.get("space", {}), resolved)
            raise SpaceError(
                f"{space.source}: differs from the space experiment {exp.name!r} was started with "
                f"({exp.json_path}):\n  " + "\n  ".join(diff or ["(hash differs)"]) +
                "\nA resumed search cannot change its space, only its budget: undo the other edits, or pass --fresh "
                "to start a new experiment (the old one is kept).")
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
        storage=location.storage, tune_storage=exp.tune_storage, started_at=now_iso(), finished_at=None, passes={},
        git_commit=git_commit(), versions=versions(), command=sys.argv, **(cluster or {}),
    )
    print(f"experiment {exp.name!r} in {exp.dir}")
    return exp
