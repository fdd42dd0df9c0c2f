"""Fast reliability checks (no Ray): atomic outputs, the experiment lock, checkpoint fallback, source hygiene."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import minimal_space
from seg.atomic import atomic_write, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("seg", "search", "bench") for p in (REPO / d).rglob("*.py"))
OUTPUT_SOURCES = [p for p in SOURCES if p.relative_to(REPO).parts[0] in ("seg", "search")]


# ---------------------------------------------------------------------------------------------------------------
# Outputs are never half-written
# ---------------------------------------------------------------------------------------------------------------
WRITERS = re.compile(r"\.to_parquet\(|torch\.save\(|np\.savez\w*\(|\.write_text\(|\.write_bytes\(|\.write_html\(|"
                     r"open\([^)]*[\"'][wa]b?[\"']")
# Writes that are not a finished output: the atomic helper itself, the synthetic generator (writes a temporary
# folder that is renamed as a whole), the train CLI's append-only metrics.jsonl, the lock and marker files.
ALLOWED = {"seg/atomic.py": None, "seg/data/synthetic.py": None, "seg/train.py": "metrics.jsonl",
           "search/tune/trainable.py": "marker.write_text", "search/faults.py": "held.write_text"}


def test_every_writer_goes_through_the_atomic_helper():
    """Each write in seg/, search/ and bench/ targets the temporary path `atomic_write` hands it (`tmp`)."""
    bad = []
    for path in OUTPUT_SOURCES:
        rel = path.relative_to(REPO).as_posix()
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if not WRITERS.search(line) or line.lstrip().startswith("#"):
                continue
            if rel in ALLOWED and (ALLOWED[rel] is None or ALLOWED[rel] in line):
                continue
            if re.search(r"\(\s*(\w+,\s*)?tmp\b|tmp\.write_|, tmp\)|\(tmp,", line):
                continue
            # search.storage.write_bytes is atomic too: atomic_write locally, one PUT on object storage; an
            # in-memory buffer is not a file
            if re.search(r"\bstorage\.write_bytes\(|savez\w*\(buf\b", line):
                continue
            bad.append(f"{rel}:{no}: {line.strip()}")
    assert not bad, "writes that bypass seg.atomic.atomic_write:\n" + "\n".join(bad)
    replaces = [p.relative_to(REPO).as_posix() for p in OUTPUT_SOURCES if "os.replace(" in p.read_text()]
    assert replaces == ["seg/atomic.py"], replaces


def test_a_writer_killed_before_the_rename_leaves_the_old_file(tmp_path):
    target = tmp_path / "board.json"
    atomic_write_text(target, json.dumps({"version": 1}))
    code = f"from seg.atomic import atomic_write_text; atomic_write_text({str(target)!r}, '{{\"version\": 2' * 1000)"
    env = {**os.environ, "SEGTUNE_FAULT": "kill_before_rename:board.json"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, timeout=60)
    assert proc.returncode == -9  # SIGKILLed between writing the tmp file and the rename
    assert json.loads(target.read_text()) == {"version": 1}
    (leftover,) = tmp_path.glob(".board.json.tmp-*")
    os.utime(leftover, (0, 0))  # an old leftover of a killed writer is removed by the next process writing there
    # (a process looks in a folder at most every STALE_TMP_SECONDS: listing trials/ at every write grew with it)
    code = f"from seg.atomic import atomic_write_text; atomic_write_text({str(target)!r}, '{{}}')"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60, check=True)
    assert not list(tmp_path.glob(".board.json.tmp-*")) and target.read_text() == "{}"


def test_a_failing_writer_leaves_no_tmp_and_the_old_file(tmp_path):
    target = tmp_path / "x.parquet"
    atomic_write_text(target, "old")

    def broken(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


# ---------------------------------------------------------------------------------------------------------------
# One run per experiment
# ---------------------------------------------------------------------------------------------------------------
def _space(tmp_path):
    from search.space import load_space

    return load_space(minimal_space(tmp_path, "locked"))


def test_the_lock_refuses_a_second_holder_and_is_released(tmp_path):
    from search.folder import locate
    from search.lock import LOCK_NAME, ExperimentLock, LockError

    space = _space(tmp_path)
    here = locate(space, results=str(tmp_path / "results"))
    with ExperimentLock(here):
        holder = json.loads((here.dir / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"]
        with pytest.raises(LockError) as e:  # a second lock on the same folder (even from this process)
            ExperimentLock(here).__enter__()
        msg = str(e.value)
        assert f"experiment 'locked' is already being run by pid {os.getpid()}" in msg and "--fresh" in msg
        fresh = locate(space, results=str(tmp_path / "results"), fresh=True)  # a separate folder, its own lock
        assert fresh.dir != here.dir and fresh.name.startswith("locked-")
        with ExperimentLock(fresh):
            assert fresh.dir.is_dir()
        assert not fresh.dir.exists()  # created, left empty: removed again
    with ExperimentLock(here):  # released: the same folder can be locked again
        pass


def test_a_killed_holder_releases_the_lock(tmp_path):
    from search.folder import locate
    from search.lock import ExperimentLock

    space = _space(tmp_path)
    (tmp_path / "results").mkdir()
    code = textwrap.dedent(f"""
        import os, signal
        from search.folder import locate
        from search.lock import ExperimentLock
        from search.space import load_space
        ExperimentLock(locate(load_space({str(tmp_path / 'locked.yaml')!r}), results={str(tmp_path / 'results')!r})).__enter__()
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == -9
    with ExperimentLock(locate(space, results=str(tmp_path / "results"))) as lock:
        assert lock.location.name == "locked"


# ---------------------------------------------------------------------------------------------------------------
# A checkpoint that cannot be read
# ---------------------------------------------------------------------------------------------------------------
def test_unreadable_checkpoint_falls_back_to_an_older_one_then_to_scratch(tiny_cfg, tmp_path):
    from ray.tune import Checkpoint

    from search.tune.trainable import STATE_FILE, checkpoint_candidates, restore_trainer
    from seg.train import Trainer

    trainer = Trainer(tiny_cfg)
    for epoch, _ in enumerate(trainer.epochs(), 1):
        trainer.save(tmp_path / f"checkpoint_{epoch - 1:06d}" / STATE_FILE)
    newest = tmp_path / "checkpoint_000001" / STATE_FILE
    newest.write_bytes(newest.read_bytes()[:500])
    with pytest.warns(RuntimeWarning, match="resumed from checkpoint_000000"):
        t, warning = restore_trainer(Trainer(tiny_cfg), checkpoint_candidates(Checkpoint(str(newest.parent)), ()),
                                     lambda: Trainer(tiny_cfg))
    assert t.epoch == 1 and "checkpoint_000001: " in warning
    t, warning = restore_trainer(Trainer(tiny_cfg), checkpoint_candidates(Checkpoint(str(tmp_path / "checkpoint_000000")), ()),
                                 lambda: Trainer(tiny_cfg))
    assert t.epoch == 1 and warning is None
    (tmp_path / "checkpoint_000000" / STATE_FILE).write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="restarted from scratch"):
        t, warning = restore_trainer(Trainer(tiny_cfg), checkpoint_candidates(Checkpoint(str(newest.parent)), ()),
                                     lambda: Trainer(tiny_cfg))
    assert t.epoch == 0 and "checkpoint_000000: " in warning
    # a trial resumed by a later run: its recorded checkpoints, newest first (here both unreadable, then a good one)
    good = tmp_path / "good"
    Trainer(tiny_cfg).save(good / STATE_FILE)
    t, warning = restore_trainer(Trainer(tiny_cfg), checkpoint_candidates(None, (str(newest.parent), str(good))),
                                 lambda: Trainer(tiny_cfg))
    assert t.epoch == 0 and "resumed from good" in warning and "checkpoint_000001: " in warning


# ---------------------------------------------------------------------------------------------------------------
# Security
# ---------------------------------------------------------------------------------------------------------------
SAFE_YAML = re.compile(r"Loader=(_Loader|yaml\.SafeLoader|SafeLoader|yaml\.CSafeLoader)\b")
UNSAFE = [  # (pattern, unless this is in the line or the next two, what)
    (re.compile(r"yaml\.load\("), SAFE_YAML, "yaml.load without a SafeLoader"),
    (re.compile(r"yaml\.(unsafe_load|full_load|load_all)\(|Loader=yaml\.(Unsafe|Full)?Loader\b"), None,
     "unsafe YAML loader"),
    (re.compile(r"\b(c?pickle|dill|joblib)\.loads?\("), None, "unpickling"),
    (re.compile(r"torch\.load\("), re.compile(r"weights_only=True"), "torch.load without weights_only=True"),
    (re.compile(r"(?<![.\w])(eval|exec|__import__)\(|importlib\.import_module\(|runpy\."), None,
     "code execution"),
]


def test_no_unsafe_deserialisation_in_the_sources():
    """YAML through SafeLoader only, checkpoints with weights_only=True, no unpickling, nothing executed from
    strings or files (a results folder holds data only)."""
    bad = []
    for path in SOURCES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("#"):
                continue
            for pat, unless, what in UNSAFE:
                if pat.search(line) and not (unless and unless.search(" ".join(lines[i:i + 3]))):
                    bad.append(f"{path.relative_to(REPO)}:{i + 1}: {what}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_the_yaml_loader_is_a_safe_loader():
    import yaml

    from search.space.load import _Loader

    assert issubclass(_Loader, yaml.SafeLoader)


def test_the_dashboard_binds_to_localhost_and_auth_is_not_disabled():
    from search.run import parse_args

    assert parse_args(["s.yaml"]).dashboard_host == "127.0.0.1"
    assert parse_args(["s.yaml", "--dashboard-host", "0.0.0.0"]).dashboard_host == "0.0.0.0"
    # a local search starts its own Ray, never joins one someone else started on the machine (ray.init() would)
    assert 'ray.init(address="local"' in (REPO / "search" / "tune" / "session.py").read_text()
    for path in SOURCES:  # nothing turns Ray's token authentication off or opens a port to every interface
        text = path.read_text()
        assert not re.search(r"environ(\[|\.setdefault\(|\.update\().{0,5}[\"']RAY_AUTH_MODE", text), path
        assert '"0.0.0.0"' not in text.replace('"--dashboard-host", "0.0.0.0"', ""), path
