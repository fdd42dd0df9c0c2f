"""Atomic file output: every file segtune writes goes through `atomic_write`, so a reader (the report, a user's
pandas session, a resumed run) sees the old file or the whole new one, never a partial write.

The data is written to a temporary file next to the target (same folder, so the rename stays on one filesystem),
flushed to disk, then `os.replace`d over the target. A process killed before the rename leaves the old file and
a `.<name>.tmp-*` file that a later write into the same folder removes once it is stale.

Test-only fault injection: `SEGTUNE_FAULT=kill_before_rename:<file name>[:<n>]` SIGKILLs the writing process
between writing the temporary file and the rename, at the n-th write of that file name in this process (default 1).
"""
from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

_WRITES: dict[str, int] = {}  # file name -> writes so far in this process (for the fault hook)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to produce the file's content at a temporary path, then move it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(path)
    # pid in the name (a killed writer's leftovers are recognisable), plus a random part for threads; the suffix
    # is kept because some writers (np.savez) append their own extension otherwise
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(tmp)
        _fsync(tmp)
        _maybe_kill_before_rename(path.name)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


STALE_TMP_SECONDS = 600
_SCANNED: dict[str, float] = {}  # folder -> monotonic time this process last looked in it for stale tmp files


def _remove_stale_tmp(path: Path) -> None:
    """Remove `.<name>.tmp-*` files of writers that were killed (older than any write takes; another host's
    writer may be using a young one on a shared filesystem). Listing a folder costs as much as it has files (a
    10,000-trial search's trials/), so each folder is looked in at most once every STALE_TMP_SECONDS per process,
    for every stale tmp file in it: a leftover is younger than that when last seen, so none is missed for long."""
    import time

    folder = str(path.parent)
    if time.monotonic() - _SCANNED.get(folder, -STALE_TMP_SECONDS) < STALE_TMP_SECONDS:
        return
    _SCANNED[folder] = time.monotonic()
    for stale in path.parent.glob(".*.tmp-*"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_TMP_SECONDS:
                stale.unlink()
        except OSError:
            pass


def _maybe_kill_before_rename(name: str) -> None:
    for spec in os.environ.get("SEGTUNE_FAULT", "").split(";"):  # several faults are joined with ';'
        spec = spec.strip()
        if not spec.startswith("kill_before_rename:"):
            continue
        parts = spec.split(":")
        target, nth = parts[1], int(parts[2]) if len(parts) > 2 else 1
        if target != name:
            continue
        _WRITES[name] = _WRITES.get(name, 0) + 1
        if _WRITES[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
