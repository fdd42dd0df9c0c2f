"""Test-only fault injection, driven by the `SEGTUNE_FAULT` environment variable (unset in normal use).

The fault-injection suite (tests/faults/) needs to stop a search at exact moments without sleeping:

  SEGTUNE_FAULT=hold_after_epoch:<n>:<release file>
      every trial, after reporting epoch n (its checkpoint saved), writes `<release file>.held-<trial id>` and
      waits until `<release file>` exists; a test kills the driver or removes a node while trials are held.
  SEGTUNE_FAULT=kill_in_leaderboard_write[:<n>]   (seg.atomic)
      SIGKILLs the driver between writing the n-th leaderboard.parquet tmp file and renaming it.
  SEGTUNE_FAULT=kill_before_rename:<file name>[:<n>]   (seg.atomic)
      the same for any file segtune writes.

Ray workers inherit the driver's environment, so a variable set for `python -m search.run` reaches the trials.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_POLL_S = 0.05


def hold_after_epoch(epoch: int, trial_id: str) -> None:
    spec = os.environ.get("SEGTUNE_FAULT", "")
    if not spec.startswith("hold_after_epoch:"):
        return
    _, n, release = spec.split(":", 2)
    release_path = Path(release)
    if epoch != int(n) or release_path.exists():
        return
    held = release_path.with_name(f"{release_path.name}.held-{trial_id}")
    held.write_text(str(os.getpid()))
    while not release_path.exists():  # released by the test, or killed with its node / driver
        time.sleep(HOLD_POLL_S)
