"""How far along is a search: `python -m search.status RESULTS_DIR_OR_URI [--watch [SECONDS]]`.

One screen from what the driver records (experiment.json, trials/<id>.json, and for finished trials their
leaderboard rows; no Ray, no Tune folders, no pandas): trials by status and kind against what the space plans, the
best so far with its searched values, the running trials with their epoch and age, finished trials per hour and an
estimate of the time left. It reads a local folder or a storage URI (s3://, gs://, file://) the same way, so it
works from any machine that can read the experiment's storage.
`--watch` redraws it every few seconds until Ctrl-C.

    status_of(location) -> Status      # the numbers (tests read these)
    render(status) -> str             # the screen
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from search import storage
from search.vocab import FINAL_STATUSES, FIXED, KINDS, RUNNING, STATUSES, finite, objective_key

# the experiment folder's names (search.folder, search.lock, search.records, search.tables), repeated here so that this
# command imports neither pandas nor pydantic
EXPERIMENT_FILE, TRIALS_DIR, LOCK_NAME = "experiment.json", "trials", ".segtune.lock"
LEADERBOARD_FILE, FRAGMENTS_DIR = "leaderboard.parquet", "fragments"
TABLE_COLUMNS = ("trial_id", "name", "kind", "status", "epochs_run", "best_epoch", "best_val_miou", "test_miou",
                 "started_at", "finished_at", "epochs")
LEASE_S = 120.0  # search.lock.LEASE_S: a URI lease older than this has no live driver behind it
WATCH_S = 10.0  # seconds between redraws with --watch
RATE_WINDOW_S = 3600.0  # the finishing rate is measured over the last hour of finishes (all of them if fewer)
RUNNING_ROWS = 20  # running trials listed (the oldest first); the rest are counted


class Running(NamedTuple):
    name: str
    kind: str
    epoch: int  # last recorded epoch (0: not reported yet)
    epochs: int  # planned epochs
    age_s: float | None  # since it started
    val_miou: float | None  # its last epoch's


class Best(NamedTuple):
    name: str
    kind: str
    metric: str
    value: float
    epoch: int | None
    test_miou: float | None
    values: dict[str, Any]  # its searched params (a fixed trial: the same keys, as configured)


class Status(NamedTuple):
    name: str
    location: str
    state: str  # finished | in progress | stopped (no driver: rerun the command to resume) | unknown
    started_at: str | None
    finished_at: str | None
    counts: dict[str, dict[str, int]]  # kind -> status -> trials
    planned: dict[str, int | None]  # kind -> trials the space plans (None: not known yet)
    best: Best | None
    running: list[Running]
    per_hour: float | None  # finished trials per hour
    eta_s: float | None  # time left at that rate
    warm_start: dict[str, Any] | None


class StatusError(Exception):
    """The location is not a readable experiment (exit code 2)."""


# ---------------------------------------------------------------------------------------------------------------
# Reading the experiment (a local folder or a URI)
# ---------------------------------------------------------------------------------------------------------------
def read_experiment(location: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(experiment.json, one record per trial) of an experiment folder or URI.

    A final trial's record never changes again, and the leaderboard (leaderboard.parquet with the fragments of the
    trials finished since its last compaction, search.fragments) already holds the fields this screen needs, as a
    few columns: those trials are read from there, and only the records of the others (running, or final but not
    in the table yet) are parsed. At 10,000 trials that is the difference between parsing ~100 MB of JSON
    histories and reading a few columns."""
    meta_bytes = read_location(storage.join(location, EXPERIMENT_FILE))
    if meta_bytes is None:
        raise StatusError(f"{location}: no {EXPERIMENT_FILE} there; pass an experiment folder or URI such as "
                          f"results/<name> or s3://bucket/segtune/<name> (the folder search.run printed)")
    try:
        meta = json.loads(meta_bytes)
    except ValueError as e:
        raise StatusError(f"{storage.join(location, EXPERIMENT_FILE)}: not valid JSON ({e}); the driver writes it "
                          f"atomically, so the file was edited or truncated by hand") from None
    params = list(((meta.get("space") or {}).get("params") or {}))
    final = final_rows(location, params)
    records = list(final.values())
    for trial_id, path in list_files(storage.join(location, TRIALS_DIR), ".json").items():
        if trial_id in final:
            continue
        try:
            rec = json.loads(read_location(path) or b"")
        except ValueError:  # a record is written atomically; a stray file is skipped, not fatal
            continue
        if isinstance(rec, dict) and "trial_id" in rec:
            records.append(rec)
    return meta, records


def final_rows(location: str, params: list[str]) -> dict[str, dict[str, Any]]:
    """trial_id -> a record-shaped dict of each final trial in the leaderboard (its file, then its fragments)."""
    rows: dict[str, dict[str, Any]] = {}
    files = [storage.join(location, LEADERBOARD_FILE),
             *list_files(storage.join(location, FRAGMENTS_DIR, "leaderboard"), ".parquet").values()]
    for path in files:
        data = read_location(path)
        if data is None:
            continue
        try:
            pf = pq.ParquetFile(pa.BufferReader(data))
            cols = [c for c in (*TABLE_COLUMNS, *params) if c in pf.schema_arrow.names]
            table = pf.read(columns=cols).to_pylist()
        except (OSError, ValueError, pa.ArrowException):  # a table being replaced: its records are read instead
            continue
        for r in table:
            if r.get("status") in FINAL_STATUSES:
                rows[r["trial_id"]] = _as_record(r, params)
            else:
                rows.pop(r.get("trial_id"), None)
    return rows


def _as_record(row: dict[str, Any], params: list[str]) -> dict[str, Any]:
    last = {"epoch": row.get("epochs_run") or 0, "best_val_miou": row.get("best_val_miou"),
            "best_epoch": row.get("best_epoch"), "test_miou": row.get("test_miou")}
    return {"trial_id": row["trial_id"], "name": row.get("name"), "kind": row.get("kind"),
            "status": row.get("status"), "started_at": row.get("started_at"), "finished_at": row.get("finished_at"),
            "config": {p: row[p] for p in (*params, "epochs") if row.get(p) is not None}, "history": [last]}


def read_location(location: str) -> bytes | None:
    if not storage.is_uri(location):
        try:
            return Path(location).read_bytes()
        except OSError:
            return None
    return storage.read_bytes(location)


def list_files(folder: str, suffix: str) -> dict[str, str]:
    """file stem -> location of the files in `folder` ending in `suffix` (tmp files, `.`-prefixed, left out)."""
    if not storage.is_uri(folder):
        if not os.path.isdir(folder):
            return {}
        return {e.name[:-len(suffix)]: e.path for e in os.scandir(folder)
                if e.name.endswith(suffix) and not e.name.startswith(".")}
    fs, path = storage.filesystem(folder)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        base = info.base_name
        if info.type == pafs.FileType.File and base.endswith(suffix) and not base.startswith("."):
            out[base[:-len(suffix)]] = storage.join(folder, base)
    return out


def driver_state(location: str, meta: dict[str, Any]) -> str:
    """finished, in progress (a driver holds the lock), stopped (none does) or unknown (cannot tell from here)."""
    if meta.get("finished_at"):
        return "finished"
    held = read_location(storage.join(location, LOCK_NAME))
    try:
        holder = json.loads(held or b"{}")
    except ValueError:
        holder = {}
    if storage.is_uri(location):  # a lease object with a heartbeat (search.lock)
        if not holder:
            return "stopped"
        return "in progress" if time.time() - float(holder.get("heartbeat", 0)) < LEASE_S else "stopped"
    if not holder:
        return "stopped"
    if holder.get("host") != socket.gethostname():
        return "unknown"  # a driver on another machine: only that machine can see its process
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return "stopped"
    except (PermissionError, ValueError):
        return "in progress"
    return "in progress"


# ---------------------------------------------------------------------------------------------------------------
# The numbers
# ---------------------------------------------------------------------------------------------------------------
def status_of(location: str, now: float | None = None) -> Status:
    """Everything the screen shows, from experiment.json and the records."""
    location = str(location)
    meta, records = read_experiment(location)
    now = time.time() if now is None else now
    counts = {k: {s: 0 for s in STATUSES} for k in KINDS}
    for rec in records:
        kind = rec.get("kind") if rec.get("kind") in KINDS else FIXED
        st = rec.get("status") if rec.get("status") in STATUSES else RUNNING
        counts[kind][st] += 1
    state = driver_state(location, meta)
    return Status(
        name=str(meta.get("name") or Path(location.rstrip("/")).name), location=location, state=state,
        started_at=meta.get("started_at"), finished_at=meta.get("finished_at"), counts=counts,
        planned=planned_trials(meta), best=best_so_far(records, meta),
        running=running_trials(records, now) if state != "finished" else [],
        per_hour=(rate := finishing_rate(records, now, state)), eta_s=time_left(counts, planned_trials(meta), rate),
        warm_start=meta.get("warm_start"),
    )


def planned_trials(meta: dict[str, Any]) -> dict[str, int | None]:
    space = meta.get("space") or {}
    plan = meta.get("seed_plan")
    seeds_planned = len(plan) if plan is not None else (0 if not space.get("seeds") else None)
    return {"fixed": len(space.get("fixed_trials") or {}),
            "searched": int((space.get("budget") or {}).get("num_samples", 0)), "seed": seeds_planned}


def _best_value(rec: dict[str, Any], metric: str) -> float | None:
    hist = rec.get("history") or []
    v = hist[-1].get(metric) if hist else None
    return float(v) if finite(v) else None


def best_so_far(records: list[dict[str, Any]], meta: dict[str, Any]) -> Best | None:
    """The trial with the highest objective so far (what the leaderboard will rank by: best_val_miou for the
    metric val_miou, max_val_miou_avg5 for val_miou_avg5; running trials count too)."""
    metric = objective_key(((meta.get("space") or {}).get("metric")) or "val_miou")
    scored = [(v, r) for r in records if (v := _best_value(r, metric)) is not None]
    if not scored:
        return None
    value, rec = max(scored, key=lambda vr: vr[0])
    last = rec["history"][-1]
    params = list(((meta.get("space") or {}).get("params") or {}))
    cfg = rec.get("config") or {}
    return Best(str(rec.get("name")), str(rec.get("kind")), metric, value, last.get("best_epoch"),
                last.get("test_miou") if finite(last.get("test_miou")) else None,
                {p: cfg[p] for p in params if p in cfg})


def running_trials(records: list[dict[str, Any]], now: float) -> list[Running]:
    out = []
    for rec in records:
        if rec.get("status") in FINAL_STATUSES:
            continue
        hist = rec.get("history") or []
        started = _epoch_s(rec.get("started_at"))
        val = hist[-1].get("val_miou") if hist else None
        out.append(Running(str(rec.get("name")), str(rec.get("kind")), int(hist[-1]["epoch"]) if hist else 0,
                           int((rec.get("config") or {}).get("epochs", 0)),
                           None if started is None else max(0.0, now - started), val if finite(val) else None))
    return sorted(out, key=lambda r: -(r.age_s or 0.0))


def finishing_rate(records: list[dict[str, Any]], now: float, state: str) -> float | None:
    """Finished trials per hour over the last RATE_WINDOW_S of finishes (from the first start if shorter)."""
    ends = sorted(t for r in records if r.get("status") in FINAL_STATUSES
                  and (t := _epoch_s(r.get("finished_at"))) is not None)
    starts = [t for r in records if (t := _epoch_s(r.get("started_at"))) is not None]
    if not ends or not starts:
        return None
    until = now if state == "in progress" else ends[-1]
    since = max(min(starts), until - RATE_WINDOW_S)
    n = sum(1 for t in ends if since <= t <= until)
    return n / ((until - since) / 3600.0) if until > since and n else None


def time_left(counts: dict[str, dict[str, int]], planned: dict[str, int | None],
              per_hour: float | None) -> float | None:
    finished = {k: sum(counts[k][s] for s in FINAL_STATUSES) for k in counts}
    left = sum(max(0, (planned.get(k) or 0) - finished.get(k, 0)) for k in planned)
    if left == 0:
        return 0.0
    return left / per_hour * 3600.0 if per_hour else None


def _epoch_s(iso: Any) -> float | None:
    try:
        t = dt.datetime.fromisoformat(str(iso))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


# ---------------------------------------------------------------------------------------------------------------
# The screen
# ---------------------------------------------------------------------------------------------------------------
def duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def render(st: Status) -> str:
    lines = [f"experiment {st.name} ({st.location}): {st.state}",
             f"  started {st.started_at or '?'}" + (f", finished {st.finished_at}" if st.finished_at else "")]
    if st.warm_start:
        w = st.warm_start
        lines.append(f"  warm-started from {w.get('source')}: {w.get('added')} prior trials in the study "
                     f"({w.get('skipped')} did not fit the space)")
    lines.append("")
    lines.append(f"  {'kind':<9}{'planned':>8}" + "".join(f"{s:>11}" for s in STATUSES))
    for kind in KINDS:
        c, planned = st.counts[kind], st.planned.get(kind)
        if not any(c.values()) and not planned:
            continue
        lines.append(f"  {kind:<9}{'?' if planned is None else planned:>8}" + "".join(f"{c[s]:>11}" for s in STATUSES))
    done = sum(st.counts[k][s] for k in KINDS for s in FINAL_STATUSES)
    total = sum(v or 0 for v in st.planned.values())
    lines.append(f"  {done} of {total} planned trials finished" +
                 ("" if st.planned.get("seed") is not None else " (seed reruns are planned after the search)"))
    lines.append("")
    if st.best:
        b = st.best
        vals = ", ".join(f"{k}={_short(v)}" for k, v in b.values.items())
        lines.append(f"best so far: {b.name} ({b.kind}) {b.metric} {b.value:.4f} at epoch {b.epoch}"
                     + (f", test_miou {b.test_miou:.4f}" if b.test_miou is not None else ""))
        if vals:
            lines.append(f"  {vals}")
    else:
        lines.append("best so far: no trial has reported an epoch yet")
    if st.running:
        title = "running" if st.state != "stopped" else "running when the driver stopped (resumed on the next run)"
        lines.append(f"\n{title} ({len(st.running)}):")
        for r in st.running[:RUNNING_ROWS]:
            val = f"val_miou {r.val_miou:.4f}" if r.val_miou is not None else "no epoch yet"
            lines.append(f"  {r.name:<16} epoch {r.epoch}/{r.epochs}  age {duration(r.age_s):>7}  {val}")
        if len(st.running) > RUNNING_ROWS:
            lines.append(f"  ... and {len(st.running) - RUNNING_ROWS} more")
    rate = f"{st.per_hour:.1f} finished trials per hour" if st.per_hour else "no finishing rate yet"
    left = "" if st.state == "finished" else (
        f"; about {duration(st.eta_s)} left at that rate" if st.eta_s is not None else "; time left unknown")
    lines.append(f"\n{rate}{left}")
    if st.state == "stopped":
        lines.append("no driver is running it: rerun the same search.run command to resume")
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.status", description=__doc__.split("\n")[0])
    ap.add_argument("experiment", help="an experiment folder (results/<name>) or its storage URI")
    ap.add_argument("--watch", nargs="?", type=float, const=WATCH_S, default=None, metavar="SECONDS",
                    help=f"redraw every SECONDS (default {WATCH_S:.0f}) until Ctrl-C")
    args = ap.parse_args(argv)
    try:
        while True:
            screen = render(status_of(args.experiment))
            if args.watch is None:
                print(screen)
                return 0
            print("\033[2J\033[H" + screen + f"\n\n(every {args.watch:g} s; Ctrl-C to stop)", flush=True)
            time.sleep(args.watch)
    except StatusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
