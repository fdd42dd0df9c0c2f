"""One storage location for a whole experiment: a local path, a shared mount, or a URI (`s3://`, `gs://`, `file://`)
read and written through `pyarrow.fs`, as Ray Tune itself does.

Trials write what they produce (checkpoints, masks, an out-of-memory marker) into their Tune trial folder under
this location, from whichever node they run on. The driver keeps its own files (experiment.json, trials/, the
Optuna journal, masks/, the Parquet files, report.html) in a local working folder and, when the location is a URI,
pushes each file there as it is written (`Store.push`), so the experiment can be resumed from any machine that
sees the same URI (`Store.pull`). Ray-free and torch-free.
"""
from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs as pafs

from seg.atomic import atomic_write_bytes


def is_uri(location: str) -> bool:
    return "://" in str(location)


def join(location: str, *parts: str) -> str:
    """`location/part/...` for a path or a URI."""
    return posixpath.join(str(location).rstrip("/"), *parts) if is_uri(location) else str(Path(location, *parts))


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path on it) of a local path or URI. Local paths are made absolute first."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    return pafs.FileSystem.from_uri(str(location))


def write_bytes(location: str, data: bytes) -> None:
    """A whole file at `location`; atomic on a local disk (tmp + rename), one PUT on object storage."""
    fs, path = filesystem(location)
    if isinstance(fs, pafs.LocalFileSystem):
        atomic_write_bytes(path, data)
        return
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(data)


def read_bytes(location: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    fs, path = filesystem(location)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except (FileNotFoundError, OSError):
        return None


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def delete(location: str) -> None:
    """A file (nothing when it is not there)."""
    _remove(location, pafs.FileSystem.delete_file)


def delete_dir(location: str) -> None:
    """A folder and everything in it (nothing when it is not there)."""
    _remove(location, pafs.FileSystem.delete_dir)


def _remove(location: str, remove) -> None:
    fs, path = filesystem(location)
    try:
        remove(fs, path)
    except OSError:  # FileNotFoundError included: already gone is what the caller wanted
        pass


class Store:
    """The experiment's storage location beside its local working folder. For a local location the two are the
    same folder and push/pull do nothing."""

    def __init__(self, uri: str | None, local: Path):
        self.uri = uri  # None: the experiment lives in `local` itself
        self.local = Path(local)

    @property
    def remote(self) -> bool:
        return self.uri is not None

    def location(self, rel: str) -> str:
        """Where `rel` (a path inside the experiment) lives in storage."""
        return join(self.uri, rel) if self.uri else str(self.local / rel)

    def push(self, path: str | os.PathLike) -> None:
        """Copy one file of the local folder to storage (after each write of it)."""
        if not self.uri:
            return
        rel = Path(path).resolve().relative_to(self.local.resolve()).as_posix()
        write_bytes(join(self.uri, rel), Path(path).read_bytes())

    def remove(self, path: str | os.PathLike) -> None:
        """Delete storage's copy of a file the driver deleted locally (a compacted table fragment)."""
        if not self.uri:
            return
        delete(join(self.uri, Path(path).resolve().relative_to(self.local.resolve()).as_posix()))

    def push_all(self, rels: Iterable[str]) -> None:
        for rel in rels:
            for p in sorted(self.local.glob(rel)):
                if p.is_file():
                    self.push(p)

    def pull(self, prefixes: Iterable[str]) -> int:
        """Copy what storage holds under `prefixes` (files or folders) into the local folder; returns the number of
        files copied. A resumed experiment starts from storage's copy, which is the one the last driver wrote."""
        if not self.uri:
            return 0
        fs, root = filesystem(self.uri)
        copied = 0
        for prefix in prefixes:
            info = fs.get_file_info(posixpath.join(root, prefix))
            if info.type == pafs.FileType.NotFound:
                continue
            files = [info] if info.type == pafs.FileType.File else [
                f for f in fs.get_file_info(pafs.FileSelector(info.path, recursive=True))
                if f.type == pafs.FileType.File]
            for f in files:
                rel = posixpath.relpath(f.path, root)
                with fs.open_input_stream(f.path) as src:
                    atomic_write_bytes(self.local / rel, src.read())
                copied += 1
        return copied
