"""Test-only fault injection, driven by the `SEGTUNE_FAULT` environment variable (unset in normal use).

The fault-injection suite (tests/faults/) needs to stop a search at exact moments without sleeping. Faults live
outside TrainConfig, so they never become hyperparameters or leaderboard columns; several are joined with `;`:

  SEGTUNE_FAULT=fail_at_epoch:<trial name>:<n>[:oom]
      the named trial raises at the start of epoch n: a RuntimeError once (a retry that restored a checkpoint
      goes on), or with `:oom` a CUDA out-of-memory error on every attempt, as a real one would repeat.
  SEGTUNE_FAULT=hold_after_epoch:<n>:<release file>
      every trial, after reporting epoch n (its checkpoint saved), writes `<release file>.held-<trial id>` and
      waits until `<release file>` exists; a test kills the driver or removes a node while trials are held.
  SEGTUNE_FAULT=kill_after:<pass>:<event>:<n>
      the driver SIGKILLs its whole process group (itself and the Ray it started) right after it recorded the n-th
      <event> of <pass> (fixed | search | seeds): an event is a trial's `start` or its end as completed | pruned |
      failed, recorded and printed; what a crash at that moment would leave behind.
  SEGTUNE_FAULT=kill_before_rename:<file name>[:<n>]   (seg.atomic)
      SIGKILLs the writing process between writing the n-th tmp file of that name (e.g. leaderboard.parquet,
      search.tables.LEADERBOARD_FILE) and renaming it.

Ray workers inherit the driver's environment, so a variable set for `python -m search.run` reaches the trials.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

HOLD_POLL_S = 0.05
ENV = "SEGTUNE_FAULT"


def fault_specs(kind: str) -> list[list[str]]:
    """The `kind:...` entries of SEGTUNE_FAULT, each split into its fields after the kind."""
    out = []
    for spec in os.environ.get(ENV, "").split(";"):
        head, _, rest = spec.strip().partition(":")
        if head == kind:
            out.append(rest.split(":"))
    return out


def epoch_hooks(trial_name: str | None, restored: bool) -> list[Callable[[int, object], None]]:
    """seg.trainer.Trainer hooks that inject the failures SEGTUNE_FAULT names for this trial ([] normally)."""
    hooks = []
    for fields in fault_specs("fail_at_epoch"):
        name, at, kind = fields[0], int(fields[1]), (fields[2] if len(fields) > 2 else "error")
        if name != trial_name or (restored and kind != "oom"):
            continue
        hooks.append(_raiser(at, kind))
    return hooks


def _raiser(at: int, kind: str) -> Callable[[int, object], None]:
    def hook(epoch: int, trainer: object) -> None:
        if epoch != at:
            return
        if kind == "oom":  # what a too-large batch raises on a GPU
            import torch

            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected at epoch {epoch} by {ENV})")
        raise RuntimeError(f"injected failure at epoch {epoch} ({ENV})")

    return hook


def hold_after_epoch(epoch: int, trial_id: str) -> None:
    for n, *rest in fault_specs("hold_after_epoch"):
        release_path = Path(":".join(rest))
        if epoch != int(n) or release_path.exists():
            continue
        held = release_path.with_name(f"{release_path.name}.held-{trial_id}")
        held.write_text(str(os.getpid()))
        while not release_path.exists():  # released by the test, or killed with its node / driver
            time.sleep(HOLD_POLL_S)


_EVENTS: dict[tuple[str, str], int] = {}  # (pass, event) -> times seen in this driver


def kill_after(pass_name: str, event: str) -> None:
    """The kill_after fault: called by the recorder after each recorded event."""
    specs = fault_specs("kill_after")
    if not specs:
        return
    seen = _EVENTS[(pass_name, event)] = _EVENTS.get((pass_name, event), 0) + 1
    for p, e, n in specs:
        if (p, e, int(n)) == (pass_name, event, seen):
            os.killpg(os.getpgrp(), signal.SIGKILL)
