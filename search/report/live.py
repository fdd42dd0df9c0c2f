"""The report while the search runs: the same page, with the running trials' rows and curves so far and a banner
that says the search is in progress (trials finished of planned, the running ones and their epochs, when the page
was built). The final report, written by search.run when the search ends, has no banner.

    python -m search.report.live results/<name>      # one live build (what the driver runs in the background)
    with LiveReport(exp_dir, every_s, publish) as live:   # in the driver: rebuilds in a child process
        ...; live.request()                               # after a pass ends

The driver never builds the page itself: `LiveReport` starts `python -m search.report.live` as a low-priority
child process at most every `tracking.report_s` seconds (and when asked, after each pass), one at a time, and
pushes the result to the experiment's URI when the child is done. The page is written atomically, so a reader, a
crash or Ctrl-C never sees half a page; leaving the `with` block stops a build still running, so it cannot
overwrite the final report written after it. Reads the experiment folder only; no Ray, no torch.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from search.faults import ENV as FAULT_ENV
from search.report import REPORT_NAME, render_report
from search.report.html import e
from search.fragments import read_tables
from search.report.load import ReportData, prepare_history, prepare_leaderboard, read_meta
from search.status import Running, planned_trials, read_experiment, running_trials
from search.tables import (experiment_iou_columns, history_schema, leaderboard_row, leaderboard_schema, provenance_of,
                           typed_frame)
from search.vocab import FINAL_STATUSES
from seg.atomic import atomic_write_text

BANNER_ID = "live-banner"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding search/: the child imports this code
POLL_S = 1.0  # how often the driver's thread looks whether a build is due or done
BANNER_RUNNING = 12  # running trials named in the banner; the rest are counted


class Progress(NamedTuple):
    finished: int
    planned: int
    running: list[Running]
    built_at: str  # UTC, when this page was built


def live_data(exp_dir: Path) -> tuple[ReportData, Progress]:
    """The report's data with the running trials' records laid over the tables, and the progress for the banner."""
    exp_dir = Path(exp_dir)
    notes: list[str] = []
    meta = read_meta(exp_dir / "experiment.json", notes)
    lb, hist = read_tables(exp_dir, notes)
    _, records = read_experiment(str(exp_dir))
    running = [r for r in records if r.get("status") not in FINAL_STATUSES]
    if running:
        iou_cols = experiment_iou_columns(exp_dir, {r["trial_id"]: r for r in running})
        ids = {r["trial_id"] for r in running}
        prov = provenance_of(exp_dir)
        rows = typed_frame([leaderboard_row(r, prov, iou_cols) for r in running], leaderboard_schema(iou_cols))
        steps = typed_frame([{"trial_id": r["trial_id"], "name": r.get("name"), **h} for r in running
                             for h in r.get("history", [])], history_schema(iou_cols))
        lb = pd.concat([lb[~lb["trial_id"].isin(ids)] if "trial_id" in lb else lb, rows], ignore_index=True)
        hist = pd.concat([hist[~hist["trial_id"].isin(ids)] if "trial_id" in hist else hist, steps],
                         ignore_index=True)
    finished = sum(1 for r in records if r.get("status") in FINAL_STATUSES)
    planned = sum(v or 0 for v in planned_trials(meta).values())
    now = time.time()
    progress = Progress(finished, planned, running_trials(running, now),
                        dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    return ReportData(exp_dir, meta, prepare_leaderboard(lb), prepare_history(hist), notes), progress


def banner(p: Progress, every_s: float | None = None) -> str:
    shown = ", ".join(f"{e(r.name)} (epoch {r.epoch}/{r.epochs})" for r in p.running[:BANNER_RUNNING])
    more = f" and {len(p.running) - BANNER_RUNNING} more" if len(p.running) > BANNER_RUNNING else ""
    running = f"{len(p.running)} running: {shown}{more}" if p.running else "none running right now"
    cadence = f" at most every {every_s:g} s and" if every_s else ""
    return (
        f'<div id="{BANNER_ID}" data-finished="{p.finished}" data-planned="{p.planned}" '
        f'data-running="{len(p.running)}" style="background:#fff4ce;border:1px solid #e0b400;padding:.6em 1em;'
        f'margin:.8em 0;border-radius:4px"><b>Search in progress</b>: {p.finished} of {p.planned} planned trials '
        f"finished; {running}. Page built {e(p.built_at)}; it is rebuilt while the search runs,{cadence} after each "
        "pass, and the final report replaces it when the search ends. Running trials show their curves so far.</div>"
    )


def write_live_report(exp_dir: Path, every_s: float | None = None) -> Path:
    """Builds `exp_dir/report.html` with the running trials and the in-progress banner, atomically."""
    data, progress = live_data(Path(exp_dir))
    page = render_report(data).replace("<main>", "<main>" + banner(progress, every_s), 1)
    return atomic_write_text(Path(exp_dir) / REPORT_NAME, page)


# ---------------------------------------------------------------------------------------------------------------
# In the driver: builds in a child process, never in the driver's loop
# ---------------------------------------------------------------------------------------------------------------
class LiveReport:
    """Rebuilds the live report in a child process at most every `every_s` seconds and when `request`ed, one build
    at a time; `publish(path)` pushes the page to the experiment's URI after each build (a no-op locally)."""

    def __init__(self, exp_dir: Path, every_s: float, publish: Callable[[Path], None] = lambda p: None):
        self.exp_dir = Path(exp_dir)
        self.every_s = every_s
        self.publish = publish
        self._proc: subprocess.Popen | None = None
        self._last = time.monotonic()  # the first build comes after a pass or after every_s
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="segtune-live-report", daemon=True)
        self.builds = 0  # finished builds (for the log and tests)

    def __enter__(self) -> "LiveReport":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()  # the final report comes next; a stale live page must not replace it
                self._proc.wait()
            self._proc = None

    def request(self) -> None:
        """Build as soon as no build is running (after a pass ends)."""
        self._wanted.set()

    def _loop(self) -> None:
        while not self._stop.wait(min(POLL_S, self.every_s)):
            with self._lock:
                self._step()

    def _step(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                return
            if self._proc.returncode == 0 and (self.exp_dir / REPORT_NAME).is_file():
                self.builds += 1
                try:
                    self.publish(self.exp_dir / REPORT_NAME)
                except OSError as err:  # storage unreachable for a moment: the next build pushes again
                    print(f"warning: could not push the live report: {err}", file=sys.stderr)
            self._proc = None
        if self._wanted.is_set() or time.monotonic() - self._last >= self.every_s:
            self._wanted.clear()
            self._last = time.monotonic()
            # the driver's test-only faults (SEGTUNE_FAULT: kill while writing report.html, ...) name the driver's
            # own writes; the child leaves them alone
            env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "search.report.live", str(self.exp_dir.resolve()), "--every-s",
                 str(self.every_s)], cwd=PACKAGE_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=_lower_priority)


def _lower_priority() -> None:
    try:
        os.nice(10)  # the report waits; the trials on this machine do not
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m search.report.live", description=__doc__.split("\n")[0])
    ap.add_argument("exp_dir", type=Path, help="the experiment folder, e.g. results/quick")
    ap.add_argument("--every-s", type=float, default=None, help="the rebuild interval, said on the banner")
    args = ap.parse_args(argv)
    if not (args.exp_dir / "experiment.json").is_file():
        print(f"error: {args.exp_dir}: no experiment.json; pass an experiment folder such as results/<name>",
              file=sys.stderr)
        return 2
    write_live_report(args.exp_dir, args.every_s)
    return 0


__all__ = ["LiveReport", "banner", "live_data", "write_live_report"]

if __name__ == "__main__":
    sys.exit(main())
