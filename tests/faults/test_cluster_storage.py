"""Distributed for real: what a trial produces travels through Tune's storage, never through the driver's disk.

1. A two-node Ray cluster on this machine whose worker node cannot see the driver's folder: a head that takes no
   trials (`--num-cpus 0`) and a worker started with `ray start --address ... --block` in its own mount namespace
   (`unshare -m`, root), where the driver's working folder is covered by an empty tmpfs while the data and the
   shared storage (a `file://` URI) stay visible. Every node and the driver share one auth token. Trials are held
   after epoch 2, the worker is SIGKILLed, a new worker joins: the trials continue from their epoch-2 checkpoints,
   and every record, history row and mask reaches the driver's leaderboard and report, each once. (This is also
   the suite's one node-loss test: a lost node's trials are retried from their last checkpoint on the node that
   replaces it; tests/faults/test_node_loss.py did the same on a shared disk and is folded in here.)
2. The same search with `s3://` storage on a local S3-compatible server (moto's server mode), killed, then resumed
   from an empty working folder with the same URI: every trial exactly once, the report written to the bucket,
   the Optuna journal holding every searched trial.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import require_or_skip

from faultlib import REPO, check_complete, cli, env, kill_group, records, run, snapshot, space_yaml, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
RAY = str(Path(sys.executable).with_name("ray"))
BODY = """
    params:
      lr: {loguniform: [1.0e-4, 1.0e-2]}
    fixed_trials: {a: {}, b: {lr: 0.003}}
    budget: {num_samples: 2, max_concurrent: 2, max_failures: 2}
    scheduler: none
    """


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session(cmd: list[str], log: Path, **kw: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=env(**kw))


def _kill_namespace(proc: subprocess.Popen) -> int:
    """SIGKILL every process of the mount namespace `proc` started: the whole node (its raylet and the trials'
    worker processes, which Ray starts in sessions of their own). Returns how many were killed."""
    ns = os.readlink(f"/proc/{proc.pid}/ns/mnt")
    killed = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) != os.getpid() and os.readlink(f"/proc/{pid}/ns/mnt") == ns:
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
        except (OSError, ProcessLookupError):
            pass
    proc.wait(timeout=30)
    return killed


# ---------------------------------------------------------------------------------------------------------------
# 1. Two nodes that do not share the driver's disk
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def namespaces() -> None:
    """Root and unshare (mount namespaces) for a node with its own disk (skipped where absent, failed under CI)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        require_or_skip("needs root and unshare (mount namespaces) for a node with its own disk")


def test_a_worker_that_cannot_see_the_driver_folder(tmp_path, synthetic_root, namespaces):
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    workdir, shared, release = tmp_path / "driver", tmp_path / "shared", tmp_path / "release"
    workdir.mkdir()
    shared.mkdir()
    port = free_port()
    head = _session([RAY, "start", "--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0", "--block",
                     "--include-dashboard=false", "--disable-usage-stats"], tmp_path / "head.log", **auth)
    address = f"127.0.0.1:{port}"

    def worker(n: int) -> subprocess.Popen:
        hide = f"mount -t tmpfs none {workdir}"  # this node sees neither the driver's records nor its masks
        start = f"exec {RAY} start --address={address} --num-cpus=2 --block --disable-usage-stats"
        # the trials run in this node's processes: the fault hook must be in its environment, not only the driver's
        return _session(["unshare", "-m", "sh", "-c", f"{hide} && {start}"], tmp_path / f"worker{n}.log",
                        SEGTUNE_FAULT=f"hold_after_epoch:2:{release}", **auth)

    first = worker(1)
    space = space_yaml(tmp_path, synthetic_root, BODY, name="twonode", epochs=3)
    cmd = [*cli(space, f"file://{shared}", "--address", address, "--workdir", str(workdir))]
    exp = workdir / "twonode"
    driver = _session(cmd, tmp_path / "driver.log", **auth)
    second = None
    try:
        wait_for(lambda: len(list(tmp_path.glob("release.held-*"))) == 2, 240, "two trials held on the worker",
                 driver, tmp_path / "driver.log")
        wait_for(lambda: sorted(len(r.get("checkpoints", [])) for r in records(exp).values()) == [2, 2], 60,
                 "the driver recorded both epoch-2 checkpoints", driver, tmp_path / "driver.log")
        before = {t: snapshot(r) for t, r in records(exp).items()}
        first_node = {t: r["node_id"] for t, r in records(exp).items()}
        assert all(Path(c["path"].removeprefix("file://")).is_relative_to(shared)
                   for r in records(exp).values() for c in r["checkpoints"])
        ns = os.readlink(f"/proc/{first.pid}/ns/mnt")
        assert ns != os.readlink("/proc/self/ns/mnt")  # the worker really has its own view of the disk
        assert _kill_namespace(first) >= 3  # the node dies with its trials: ray start, raylet, the trial workers
        release.touch()
        second = worker(2)
        wait_for(lambda: driver.poll() is not None, 400, "the search to finish on the new worker", None,
                 tmp_path / "driver.log")
        assert driver.returncode == 0, (tmp_path / "driver.log").read_text()[-4000:]
    finally:
        for p in (driver, first, second, head):
            if p is not None:
                kill_group(p)

    board, history = check_complete(exp, 4)
    assert (board["status"] == "completed").all(), board[["name", "status", "error"]]
    assert (board["epochs_run"] == 3).all(), board[["name", "epochs_run"]]
    after = records(exp)
    for tid, snap in before.items():  # continued from epoch 2: epochs 1-2 are the rows from before the kill
        assert {e: after[tid]["history"][e - 1] for e in (1, 2)} == {e: snap["history"][e] for e in (1, 2)}
        assert after[tid]["num_failures"] >= 1  # retried, under the trial it was (same start, same record)
        assert after[tid]["started_at"] == snap["started_at"], tid
    # every trial's masks came back through Tune's storage, though no trial ran where the driver's folder is
    for tid in board["trial_id"]:
        assert (exp / "masks" / f"{tid}.npz").is_file(), tid
    for tid, node in first_node.items():  # retried on the new worker, never on the head (0 CPUs)
        assert after[tid]["node_id"] != node
    page = (shared / "twonode" / "report.html").read_text()
    assert page.count('data-trial="') >= 4
    assert json.loads((shared / "twonode" / "experiment.json").read_text())["passes"] == {"fixed": "done",
                                                                                         "search": "done"}


# ---------------------------------------------------------------------------------------------------------------
# 2. Object storage (S3 API) and a resume from an empty folder
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def s3(tmp_path):
    """moto's S3-compatible server on 127.0.0.1, a bucket, and the environment that points boto3/pyarrow at it."""
    try:
        import boto3
        import moto  # noqa: F401
    except ImportError as e:
        require_or_skip(f"moto/boto3 not installed ({e}); pip install -e '.[test]'")
    port = free_port()
    server = _session([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                      tmp_path / "moto.log")
    aws = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(up, 30, "moto's server to listen", server, tmp_path / "moto.log")
    client = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    client.create_bucket(Bucket="segtune")
    yield aws, client
    kill_group(server)


def test_s3_storage_and_a_resume_from_an_empty_folder(tmp_path, synthetic_root, s3):
    aws, client = s3
    space = space_yaml(tmp_path, synthetic_root, BODY, name="s3exp", epochs=3)
    uri = "s3://segtune/searches"
    first = run(cli(space, uri, "--workdir", str(tmp_path / "w1")), timeout=300,
                SEGTUNE_FAULT="kill_after:search:completed:1", **aws)
    assert first.returncode == -9, first.stdout[-3000:] + first.stderr[-3000:]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="segtune", Prefix="searches/s3exp/")["Contents"]}
    assert "searches/s3exp/experiment.json" in keys and any("/trials/" in k for k in keys)
    decided = {r["name"]: snapshot(r) for r in records(tmp_path / "w1" / "s3exp").values()
               if r["status"] in ("completed", "pruned", "failed")}

    out = run(cli(space, uri, "--workdir", str(tmp_path / "w2")), timeout=300, **aws)  # another machine's folder
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "pulled" in out.stdout and "resuming experiment 's3exp'" in out.stdout
    exp = tmp_path / "w2" / "s3exp"
    board, _ = check_complete(exp, 4)
    after = {r["name"]: snapshot(r) for r in records(exp).values()}
    for name, snap in decided.items():  # decided before the kill, on the other folder: not trained again
        assert after[name] == snap, name
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="segtune", Prefix="searches/s3exp/")["Contents"]}
    assert {"searches/s3exp/report.html", "searches/s3exp/leaderboard.parquet"} <= keys
    assert {f"searches/s3exp/masks/{t}.npz" for t in board["trial_id"]} <= keys
    assert not any(k.endswith(".segtune.lock") for k in keys)  # released at the end
    page = client.get_object(Bucket="segtune", Key="searches/s3exp/report.html")["Body"].read().decode()
    assert page.count('data-trial="') >= 4

    import optuna  # what optuna-dashboard opens: the journal, here the bucket's copy

    journal = tmp_path / "journal.log"
    journal.write_bytes(client.get_object(Bucket="segtune", Key="searches/s3exp/optuna-journal.log")["Body"].read())
    study = optuna.load_study(study_name="segtune", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    numbers = {r["optuna_trial"] for r in records(exp).values() if r["kind"] == "searched"}
    assert {t.number for t in study.trials if t.state.name == "COMPLETE"} >= numbers


def test_the_lock_on_object_storage_refuses_a_second_driver(tmp_path, s3):
    from search.folder import Location
    from search.lock import ExperimentLock, LockError

    aws, client = s3
    old = {k: os.environ.get(k) for k in aws}
    os.environ.update(aws)
    try:
        loc = Location("x", tmp_path / "a", "s3://segtune/locked/x")
        with ExperimentLock(loc):
            held = json.loads(client.get_object(Bucket="segtune", Key="locked/x/.segtune.lock")["Body"].read())
            assert held["pid"] == os.getpid() and time.time() - held["heartbeat"] < 60
            with pytest.raises(LockError, match="already being run by pid"):  # another machine's folder
                ExperimentLock(Location("x", tmp_path / "b", "s3://segtune/locked/x")).__enter__()
        assert "Contents" not in client.list_objects_v2(Bucket="segtune", Prefix="locked/x/.segtune.lock")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
