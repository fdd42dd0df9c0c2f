"""search.storage and the experiment's location: one storage location (a path or a URI) for the whole experiment,
the driver's files pushed to it and pulled back, and the lease lock that stands in for flock on a URI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import minimal_space
from search import storage
from search.folder import Location, locate
from search.lock import LOCK_NAME, ExperimentLock, LockError
from search.space import load_space

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_write_read_exists_delete(tmp_path, scheme):
    loc = f"{scheme}{tmp_path}/a/b/c.bin"
    assert storage.read_bytes(loc) is None and not storage.exists(loc)
    storage.write_bytes(loc, b"123")
    assert storage.read_bytes(loc) == b"123" and storage.exists(loc)
    assert (tmp_path / "a" / "b" / "c.bin").read_bytes() == b"123"
    storage.delete(loc)
    assert not storage.exists(loc)
    assert storage.join(f"{scheme}{tmp_path}", "x", "y").endswith("/x/y")


def test_push_then_pull_into_an_empty_folder(tmp_path):
    uri = f"file://{tmp_path / 'bucket' / 'exp'}"
    first = storage.Store(uri, tmp_path / "one")
    (tmp_path / "one" / "trials").mkdir(parents=True)
    for name, text in [("experiment.json", "{}"), ("trials/t1.json", '{"a": 1}'), ("trials/t2.json", "[]")]:
        (tmp_path / "one" / name).write_text(text)
        first.push(tmp_path / "one" / name)
    (tmp_path / "one" / "scratch.txt").write_text("never pushed")
    second = storage.Store(uri, tmp_path / "two")  # another machine, an empty folder
    assert second.pull(["experiment.json", "trials", "masks"]) == 3
    assert (tmp_path / "two" / "trials" / "t1.json").read_text() == '{"a": 1}'
    assert not (tmp_path / "two" / "scratch.txt").exists()
    local = storage.Store(None, tmp_path / "one")  # a local experiment: storage is the folder itself
    local.push(tmp_path / "one" / "experiment.json")
    assert local.pull(["trials"]) == 0 and local.location("trials") == str(tmp_path / "one" / "trials")


def _space(tmp_path) -> Path:
    return minimal_space(tmp_path, "loc")


def test_locate_a_uri_experiment(tmp_path):
    space = load_space(_space(tmp_path))
    loc = locate(space, results="s3://bucket/prefix", workdir=str(tmp_path / "w"))
    assert loc.uri == "s3://bucket/prefix/loc" and loc.dir == tmp_path / "w" / "loc"
    assert loc.tune_storage == "s3://bucket/prefix/loc/tune" and loc.storage == loc.uri
    here = locate(space, results=str(tmp_path / "r"))
    assert here.uri is None and here.tune_storage == str(tmp_path / "r" / "loc" / "tune")
    storage.write_bytes(f"file://{tmp_path}/b/loc/experiment.json", b"{}")
    fresh = locate(space, results=f"file://{tmp_path}/b", fresh=True, workdir=str(tmp_path / "w"))
    assert fresh.name.startswith("loc-")  # taken in storage, though not in the (new) local folder


def test_the_uri_lease_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    uri = f"file://{tmp_path / 'shared' / 'x'}"
    with ExperimentLock(Location("x", tmp_path / "a", uri)):
        held = json.loads((tmp_path / "shared" / "x" / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid()
        with pytest.raises(LockError, match="already being run by pid") as e:
            ExperimentLock(Location("x", tmp_path / "b", uri)).__enter__()  # another folder, the same URI
        assert "last heartbeat" in str(e.value) and "--fresh" in str(e.value)
    assert not (tmp_path / "shared" / "x" / LOCK_NAME).exists()  # released

    # a driver SIGKILLed on this host leaves its lease behind; its pid no longer runs, so a rerun takes over
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from search.folder import Location
        from search.lock import ExperimentLock
        ExperimentLock(Location("x", Path({str(tmp_path / 'c')!r}), {uri!r})).__enter__()
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == -9
    assert (tmp_path / "shared" / "x" / LOCK_NAME).exists()
    with ExperimentLock(Location("x", tmp_path / "d", uri)):
        assert json.loads((tmp_path / "shared" / "x" / LOCK_NAME).read_text())["pid"] == os.getpid()
