"""Trials that raise: an exception that repeats on every retry, a (simulated) CUDA out-of-memory, next to a healthy
trial. The NaN-loss, missing-weights and crash-once-then-retried cases live in tests/test_search.py.

OOM policy: retried once from the last checkpoint (another trial sharing the GPU may have peaked at the same time);
a second OOM fails the trial with a message to lower batch_size or give each trial more GPU."""
from __future__ import annotations

import pytest

from faultlib import check_complete, cli, records, run, space_yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_raising_trials_are_failed_with_their_error_and_others_unaffected(tmp_path, synthetic_root):
    space = space_yaml(tmp_path, synthetic_root, """
        fixed_trials:
          ok: {}
          oom: {}                                   # SEGTUNE_FAULT: OOM at epoch 2 on every attempt
          boom: {}                                  # SEGTUNE_FAULT: raises before any checkpoint, every attempt
        budget: {num_samples: 0, max_concurrent: 2, max_failures: 1}
        scheduler: none
        """, epochs=3)
    out = run(cli(space, tmp_path / "results"), timeout=280,
              SEGTUNE_FAULT="fail_at_epoch:oom:2:oom;fail_at_epoch:boom:1")
    (tmp_path / "driver.log").write_text(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    exp = tmp_path / "results" / "f"
    board, history = check_complete(exp, 3)
    rows = board.set_index("name")

    ok = rows.loc["ok"]
    assert ok["status"] == "completed" and ok["epochs_run"] == 3 and ok["num_failures"] == 0

    oom = rows.loc["oom"]
    assert oom["status"] == "failed" and oom["num_failures"] == 1, oom[["status", "error", "num_failures"]]
    assert oom["error"].startswith("TrialOutOfMemoryError: out of memory again after a retry"), oom["error"]
    assert "lower batch_size (now 8)" in oom["error"] and "resources.gpus" in oom["error"]
    assert oom["epochs_run"] == 1 and oom["objective"] == 0.0  # Optuna would be told a finite score
    assert history.loc[history["name"] == "oom", "epoch"].tolist() == [1]

    boom = rows.loc["boom"]
    assert boom["status"] == "failed" and boom["num_failures"] == 2  # failed, retried once (max_failures), failed
    assert "RuntimeError: injected failure at epoch 1" in boom["error"] and boom["epochs_run"] == 0
    rec = next(r for r in records(exp).values() if r["name"] == "boom")
    assert rec["error_type"] == "crash" and 'line ' in rec["error_text"]  # the full error text is in the record
    # the console says it in one line; the traceback is in the record and Tune's error.txt, not on the screen
    assert "FAILED: RuntimeError: injected failure" in out.stdout and "Traceback" not in out.stdout + out.stderr
