"""SIGKILL the driver at different moments, rerun the same command: the search finishes, every trial appears exactly
once, finished trials are not trained again, and the Parquet files always read cleanly.

Moments (no sleeps: the driver is stopped by fault hooks, see search/faults.py and seg/atomic.py):
  * before any trial finished (trials held after epoch 2), with a second run of the same experiment started
    meanwhile (refused by the lock), the newest checkpoint of one trial corrupted and the results folder moved
    before the rerun;
  * while the leaderboard is being written after the first finished trial (tmp written, not yet renamed), then,
    in the rerun of the same experiment, while it is written after the last trial finished (in the search pass);
  * while the final report is written, after both trials finished (the rerun of the first case).
Every step's limit comes from one budget per test (faultlib.Budget), under the test's pytest timeout.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.tables import LEADERBOARD_FILE

from faultlib import (Budget, check_complete, cli, finished, kill_group, read_tables, records, run, snapshot,
                      space_yaml, start, wait_for)

TIMEOUT_S = 400
pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S)]


def test_kill_before_any_trial_finished_with_a_concurrent_run_and_a_corrupt_checkpoint(tmp_path, synthetic_root):
    space = space_yaml(tmp_path, synthetic_root, """
        fixed_trials: {a: {}, b: {lr: 0.003}}
        budget: {num_samples: 0, max_concurrent: 2, max_failures: 1}
        scheduler: none
        """, name="held", epochs=3)
    results, release = tmp_path / "results", tmp_path / "release"
    exp, cmd, log = results / "held", cli(space, results), tmp_path / "first.log"
    budget = Budget(TIMEOUT_S - 30)
    first = start(cmd, log, SEGTUNE_FAULT=f"hold_after_epoch:2:{release}")
    try:
        # both trials reported epoch 2 (checkpoints 1 and 2 on disk), none finished
        wait_for(lambda: len(list(tmp_path.glob("release.held-*"))) == 2, budget.left(), "two trials held", first, log)
        wait_for(lambda: sorted(len(r.get("checkpoints", [])) for r in records(exp).values()) == [2, 2],
                 budget.left(30),
                 "the driver recorded epoch 2 and its checkpoint for both", first, log)
        assert not finished(exp)
        exp_json = (exp / "experiment.json").read_bytes()
        before_records = {p.name: p.read_bytes() for p in (exp / "trials").glob("*.json")}

        # the same command again while the first run holds the experiment: refused, nothing written
        second = run(cmd, timeout=budget.left())
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert f"already being run by pid {first.pid}" in second.stderr and "--fresh" in second.stderr
        assert "Traceback" not in second.stdout + second.stderr and "Ray" not in second.stdout
        assert (exp / "experiment.json").read_bytes() == exp_json
        assert {p.name: p.read_bytes() for p in (exp / "trials").glob("*.json")} == before_records
    finally:
        kill_group(first)

    recs = records(exp)
    before = {t: snapshot(r) for t, r in recs.items()}
    a_id = next(t for t, r in recs.items() if r["name"] == "a")
    # corrupt trial a's newest checkpoint (a node died mid-write): truncate its state file
    newest = Path(recs[a_id]["checkpoints"][-1]["path"])  # the one a resume would load first
    assert newest.parent.name == f"a_{a_id}" and newest.name == "checkpoint_000001"
    state = newest / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    # then the folder moves (restored from a backup, copied to another disk): the records name the checkpoints
    # where they were written, the rerun reads them where they are now
    results.rename(tmp_path / "moved")
    results = tmp_path / "moved"
    exp, cmd = results / "held", cli(space, results)

    release.touch()
    # the rerun finishes both trials, then is killed while it writes the final report (after the last trial)
    out = run(cmd, timeout=budget.left(), SEGTUNE_FAULT="kill_before_rename:report.html")
    assert out.returncode == -9, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming experiment 'held'" in out.stdout and "its checkpoints are read from" in out.stdout
    assert json.loads((exp / "experiment.json").read_text())["passes"] == {"fixed": "done"}
    check_complete(exp, 2)  # the final tables were written before the report
    assert not (exp / "report.html").exists() and list(exp.glob(".report.html.tmp-*"))
    final = records(exp)

    out = run(cmd, timeout=budget.left())  # a third run only writes the report
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "pass 1" not in out.stdout and (exp / "report.html").stat().st_size > 0
    assert records(exp) == final
    board, history = check_complete(exp, 2)
    assert (board["status"] == "completed").all() and (board["epochs_run"] == 3).all()

    after = records(exp)
    for tid, snap in before.items():
        assert after[tid]["started_at"] == snap["started_at"]
        # epoch 1 was not trained again: its row (wall time included) is the one from before the kill
        assert {k: v for k, v in after[tid]["history"][0].items()} == snap["history"][1]
    warning = after[a_id].get("warning", "")
    assert "could not be loaded" in warning and f"{newest.name}: " in warning, warning
    assert "resumed from checkpoint_000000 (epoch 1)" in warning, warning
    b_id = next(t for t in after if t != a_id)
    assert "warning" not in after[b_id]
    assert after[b_id]["history"][1] == before[b_id]["history"][2]  # b resumed after epoch 2
    assert json.loads((exp / "experiment.json").read_text())["ray_auth_mode"] == "token"


# ---------------------------------------------------------------------------------------------------------------
# Killed inside the leaderboard write (between the tmp file and the rename)
# ---------------------------------------------------------------------------------------------------------------
SEARCH_BODY = """
    params:
      lr: {loguniform: [1.0e-4, 1.0e-2]}
    fixed_trials: {one: {}, two: {lr: 0.003}}
    budget: {num_samples: 2, max_concurrent: 1, max_failures: 1}
    scheduler: {grace_period: 1, reduction_factor: 2}
    sampler: {n_startup_trials: 1}
    """
N_TRIALS = 4


def test_kill_while_the_leaderboard_is_written_after_the_first_and_after_the_last_trial(tmp_path, synthetic_root):
    # One experiment, killed twice: the first run in the leaderboard write after its first finished trial, the
    # rerun in the write after the last trial finished; a third run completes. The table writer of each pass writes
    # after the pass's first finished trial and when the pass ends (TableWriter), so the rerun's 4th write is the
    # search pass's last: fixed 'two' finished (1), fixed pass closed (2), first searched trial (3), search closed (4).
    space = space_yaml(tmp_path, synthetic_root, SEARCH_BODY, name="lb")
    results = tmp_path / "results"
    exp, cmd = results / "lb", cli(space, results)
    budget = Budget(TIMEOUT_S - 30)
    before: dict[str, dict] = {}
    for nth_write, n_finished, n_on_board in ((1, 1, None), (4, N_TRIALS, N_TRIALS - 1)):
        out = run(cmd, timeout=budget.left(), SEGTUNE_FAULT=f"kill_before_rename:{LEADERBOARD_FILE}:{nth_write}")
        log = out.stdout[-3000:] + out.stderr[-3000:]
        assert out.returncode == -9, log  # the driver killed itself in the leaderboard write
        assert list(exp.glob(".leaderboard.parquet.tmp-*")), "killed between writing the tmp file and the rename"
        board, _ = read_tables(exp)  # the previous complete version, or none yet
        done = finished(exp)
        assert len(done) == n_finished, (nth_write, log)
        if n_on_board is None:
            assert board is None
        else:
            assert board["status"].isin(["completed", "pruned", "failed"]).sum() == n_on_board
        for tid, snap in before.items():  # finished before the first kill: not trained again by the rerun
            assert snapshot(done[tid]) == snap, tid
        before = {t: snapshot(r) for t, r in done.items()}

    out = run(cmd, timeout=budget.left())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    board, history = check_complete(exp, N_TRIALS)
    assert set(board.loc[board["kind"] == "fixed", "name"]) == {"one", "two"}
    after = records(exp)
    for tid, snap in before.items():  # finished trials were not trained again
        assert after[tid]["started_at"] == snap["started_at"], tid
        assert {int(h["epoch"]): h for h in after[tid]["history"]} == snap["history"], tid
