"""Helpers of the fault-injection suite: tiny spaces, the real CLI in its own process group, polling with deadlines."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

import helpers

REPO = Path(__file__).resolve().parents[2]
FINAL = ("completed", "pruned", "failed")


def space_yaml(tmp_path: Path, synthetic_root: Path, body: str, name: str = "f", epochs: int = 2) -> Path:
    return helpers.space_yaml(tmp_path, synthetic_root, body, name=name, epochs=epochs)


def cli(space: Path, results: Path | str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "search.run", *helpers.search_args(space, results, *extra)]


def env(**kw: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "SEGTUNE_FAULT"}
    e.update(kw)
    return e


def start(cmd: list[str], log: Path, **env_kw: str) -> subprocess.Popen:
    """The driver in its own session, so the Ray processes it started can be killed by group id."""
    return subprocess.Popen(cmd, cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env(**env_kw))


def run(cmd: list[str], timeout: float = 240, **env_kw: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, start_new_session=True,
                          env=env(**env_kw))


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and whatever Ray processes it started (its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_for(pred: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> Any:
    """Poll `pred` until it is truthy (no fixed sleeps as synchronisation); fail after `timeout` seconds or when
    `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) before: {what}\n" +
                                 (log.read_text()[-4000:] if log else ""))
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}\n" +
                                 (log.read_text()[-4000:] if log else ""))
        time.sleep(0.1)


class Budget:
    """One time limit shared by all the steps of a test, set under the test's pytest timeout, so a step that runs
    long fails with its own message and log instead of the steps' separate limits adding up past pytest's. Only
    a limit: no test asserts how long anything took."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, at_most: float | None = None) -> float:
        left = self.end - time.monotonic()
        assert left > 1, "the test's time budget is spent"
        return left if at_most is None else min(at_most, left)


def records(exp: Path) -> dict[str, dict]:
    out = {}
    for p in (exp / "trials").glob("*.json"):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # never happens with atomic writes; tolerated while polling
        out[rec["trial_id"]] = rec
    return out


def epochs_of(rec: dict) -> list[int]:
    return [int(h["epoch"]) for h in rec.get("history", [])]


def read_tables(exp: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Both Parquet files, which must read cleanly whenever they exist."""
    out = []
    for name in ("leaderboard.parquet", "history.parquet"):
        p = exp / name
        out.append(pd.read_parquet(p) if p.exists() else None)
    return out[0], out[1]


def finished(exp: Path) -> dict[str, dict]:
    return {t: r for t, r in records(exp).items() if r.get("status") in FINAL}


def check_complete(exp: Path, n_trials: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trial exactly once, all finished, each epoch once, Parquet readable, no stray tmp files read."""
    board, history = read_tables(exp)
    assert board is not None and history is not None
    assert len(board) == n_trials, board[["name", "trial_id", "status", "epochs_run"]]
    assert board["trial_id"].is_unique and board["name"].is_unique
    assert set(board["status"]) <= set(FINAL)
    assert not history.duplicated(["trial_id", "epoch"]).any()
    for tid, group in history.groupby("trial_id"):
        assert sorted(group["epoch"]) == list(range(1, len(group) + 1)), (tid, list(group["epoch"]))
    exp_json = json.loads((exp / "experiment.json").read_text())
    assert exp_json["finished_at"]
    return board, history


def snapshot(rec: dict) -> dict:
    """What must not change for a trial that had finished (or reported epochs) before a fault."""
    return {"started_at": rec.get("started_at"), "history": {int(h["epoch"]): h for h in rec.get("history", [])}}
