"""One driver per experiment: `ExperimentLock(location)`, a context manager that holds the experiment's lock or
refuses with a LockError naming the run that holds it.

Locally: an exclusive flock on `<folder>/.segtune.lock`, held for the life of the driver; the kernel drops it when
the process ends in any way (SIGKILL included), so a killed run never blocks its rerun. On a URI, object storage
has no locks: a lease object `<uri>/.segtune.lock` (owner, host, pid, heartbeat) that the driver refreshes every
HEARTBEAT_S seconds; another driver is refused while the lease is younger than LEASE_S, unless its holder is a
process on this same host that no longer exists. Two drivers starting within the same second can both pass the
check; each then reads the lease back and the one that lost the race stops, which narrows the window to the
storage's read-after-write delay (immediate on S3 and GCS today). Ray-free.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from search import storage
from search.folder import Location
from search.provenance import now_iso

LOCK_NAME = ".segtune.lock"
LEASE_S = 120.0  # seconds a URI lock stays valid without a heartbeat
HEARTBEAT_S = 30.0


class LockError(RuntimeError):
    """The experiment cannot be locked: another driver holds it, or its folder cannot be written."""


class ExperimentLock:
    """Holds the experiment folder's lock for a `with` block, or refuses (LockError) naming the run that holds it.
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
            raise LockError(f"results folder {exp_dir.parent}: cannot write the experiment folder {exp_dir} "
                             f"({e.strerror or e}); pass --results with a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"
                   if holder else "another process")
            raise LockError(f"{exp_dir}: experiment {name!r} is already being run by {who}; nothing was changed. "
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
            raise LockError(_held_message(location, name, held))
        self._write()
        back = self._read()
        if back.get("owner") != self.me["owner"]:  # another driver wrote after us: it won the race
            raise LockError(_held_message(location, name, back))
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


