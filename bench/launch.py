"""Running a benchmark's steps: the one launcher of `python -m search.run` (`search_run_command`), a step in its own
process group (`run_step`: past its budget the group gets SIGINT, then SIGKILL, Ray's processes included), the
whole run's deadline (`Clock`) and a step's exception as a record (`guarded`).
Standard library only (bench.gpu_check imports it before any package is installed).
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 10.0  # after SIGINT, how long a timed-out step may take to stop before SIGKILL


class Clock:
    """The whole check's deadline. A step's timeout is its own budget, cut short where the time left minus the
    budgets of the steps after it is less (slow unpacking eats into the first step, never the last)."""

    def __init__(self, total_s: float, budgets_s: dict[str, float]):
        self.start, self.total_s, self.budgets_s = time.monotonic(), total_s, budgets_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def timeout(self, step: str) -> float:
        names = list(self.budgets_s)
        later = sum(self.budgets_s[n] for n in names[names.index(step) + 1:])
        return max(0.0, min(self.budgets_s[step], self.total_s - self.elapsed() - later))


def guarded(step, *args) -> dict[str, Any]:
    """`step(*args)`, or a record of the exception it raised before or after its subprocess (an import the
    packages step could not provide, say): one broken step must not cost the summary of the others."""
    try:
        return step(*args)
    except Exception as e:
        print(f"[{step.__name__}] failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return {"returncode": None, "seconds": 0.0, "timed_out": False, "budget_s": None, "log": None,
                "error": f"{type(e).__name__}: {e}", "figures": {"error": "the step did not run"}}


def search_run_command(space_file: str | Path, *, name: str | None = None, results: str | Path | None = None,
                       gpus: float | None = None, num_cpus: int | None = None, allow_missing_weights: bool = False,
                       extra: tuple[str, ...] = ()) -> list[str]:
    """`python -m search.run SPACE` as the benchmarks run it: no dashboard, and the options given."""
    cmd = [sys.executable, "-m", "search.run", str(space_file), "--no-dashboard"]
    if name is not None:
        cmd += ["--name", name]
    if results is not None:
        cmd += ["--results", str(results)]
    if allow_missing_weights:
        cmd.append("--allow-missing-weights")
    if gpus is not None:
        cmd += ["--gpus", f"{gpus:g}"]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    return [*cmd, *extra]


def run_step(name: str, cmd: list[str], log: Path, timeout_s: float, env: dict[str, str],
             grace_s: float = STOP_GRACE_S) -> dict[str, Any]:
    """Run `cmd` from the repository root in its own process group, output to `log`. Past `timeout_s` the group
    gets SIGINT (pytest prints what it has, search.run stops Ray), then SIGKILL after `grace_s`. Returns the
    step's record: command, returncode, seconds, timed_out, budget_s, log (a name inside the output folder)."""
    record: dict[str, Any] = {"command": cmd, "budget_s": round(timeout_s, 1), "log": log.name}
    if timeout_s <= 0:
        print(f"[{name}] skipped: no time left in the check's budget", flush=True)
        return {**record, "returncode": None, "seconds": 0.0, "timed_out": True, "skipped": "no time left"}
    print(f"[{name}] {shlex.join(cmd[1:] if cmd[0] == sys.executable else cmd)}  (budget {timeout_s:.0f} s, "
          f"log {log.name})", flush=True)
    t0 = time.perf_counter()
    timed_out = False
    with log.open("w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        # a session of its own: one killpg reaches pytest's, Ray's and the trials' processes too
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            rc = stop_group(proc, grace_s)
        reap_group(proc.pid, grace_s)  # whatever the step left behind (a Ray worker) must not share the next step
    seconds = time.perf_counter() - t0
    note = " TIMED OUT" if timed_out else ""
    print(f"[{name}] exit {rc} after {seconds:.1f} s{note}", flush=True)
    if rc != 0:
        print("    " + "\n    ".join(log.read_text(errors="replace").strip().splitlines()[-8:]), flush=True)
    return {**record, "returncode": rc, "seconds": seconds, "timed_out": timed_out}


def stop_group(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGINT to the step's process group, SIGKILL if it is still running after `grace_s`; its return code."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
    proc.kill()  # the group is gone but the child is not (it left the group): never wait on it unkilled
    return proc.wait()


def reap_group(pgid: int, grace_s: float) -> None:
    """SIGKILL what is left of a finished step's process group and wait (up to `grace_s`) until it is gone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # orphans are reaped by init; poll until they are
