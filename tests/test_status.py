"""`python -m search.status`: the numbers of one screen, from experiment.json and the records alone.

The live and finished cases on a real search are in tests/test_watch_grow.py; here a fabricated experiment of
10,000 synthetic records (search/synthetic.py), with known counts, best trial, running trials and finishing times.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.records import write_json_atomic
from search.tables import write_tables
from search.status import main, render, status_of
from search.synthetic import iso, synthetic_record
from search.vocab import FAILED, FIXED, PRUNED, RUNNING, SEARCHED

REPO = Path(__file__).resolve().parents[1]
N = 10_000
T0 = 1.8e9  # the first trial starts here (synthetic_record: trial i starts at T0 + 10 i)


def fabricate(exp: Path, n: int = N, running: int = 7, fixed: int = 3, tables_at: int | None = None) -> dict:
    """An experiment with `fixed` fixed trials, then searched ones; the last `running` still running. With
    `tables_at`, the leaderboard is written from the first `tables_at` records, as the driver's compaction would
    (the rest are read from their records, as trials finished since the last compaction are)."""
    (exp / "trials").mkdir(parents=True)
    space = {"name": "big", "params": {"lr": {}, "arch": {}},
             "fixed_trials": {f"f{i}": {} for i in range(fixed)}, "budget": {"num_samples": n - fixed + 5}}
    write_json_atomic(exp / "experiment.json", {"name": "big", "space": space, "started_at": iso(T0),
                                                "finished_at": None})
    expected = {"counts": {}, "best": (None, -1.0), "running": []}
    for i in range(n):
        if i == tables_at:
            write_tables(exp)
        arch = ("fcn", "unet", "resnet34_fcn")[i % 3]
        fields = {"lr": 10 ** (-4 + 2 * ((i * 7919) % 1000) / 1000), "arch": arch, "epochs": 9}
        kind, name = (FIXED, f"f{i}") if i < fixed else (SEARCHED, None)
        rec = synthetic_record(i, fields, epochs_run=9 if i % 4 else 3, kind=kind, name=name, failed=i % 97 == 5)
        if i >= n - running:  # still running: no end, an epoch or two so far
            rec = synthetic_record(i, fields, epochs_run=2, kind=kind, name=name)
            rec.update(status=RUNNING, finished_at=None, pruned_at_epoch=None)
            expected["running"].append(rec["name"])
        key = (kind, rec["status"])
        expected["counts"][key] = expected["counts"].get(key, 0) + 1
        best = rec["history"][-1]["best_val_miou"] if rec["history"] else None
        if best is not None and best > expected["best"][1]:
            expected["best"] = (rec["name"], best)
        (exp / "trials" / f"{rec['trial_id']}.json").write_text(json.dumps(rec))
    return expected


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    exp = tmp_path_factory.mktemp("status") / "big"
    return exp, fabricate(exp, tables_at=N - 40)


def test_status_of_ten_thousand_trials(big):
    exp, expected = big
    now = T0 + 10 * (N - 1) + 600  # ten minutes after the last trial started
    t = time.perf_counter()
    st = status_of(str(exp), now=now)
    seconds = time.perf_counter() - t
    print(f"\nstatus_of over {N} records: {seconds:.2f} s")

    got = {(k, s): c for k, row in st.counts.items() for s, c in row.items() if c}
    assert got == expected["counts"]
    assert sum(got.values()) == N and st.counts[SEARCHED][FAILED] > 0 and st.counts[SEARCHED][PRUNED] > 0
    assert st.best.name == expected["best"][0] and st.best.value == pytest.approx(expected["best"][1])
    assert set(st.best.values) == {"lr", "arch"}
    assert sorted(r.name for r in st.running) == sorted(expected["running"])
    assert all(r.epoch == 2 and r.epochs == 9 for r in st.running)
    # oldest first; the last trial started 600 s before `now`
    assert [r.age_s for r in st.running] == sorted((r.age_s for r in st.running), reverse=True)
    assert st.running[-1].age_s == pytest.approx(600)
    assert st.planned == {"fixed": 3, "searched": N - 3 + 5, "seed": 0}
    # the driver holds no lock here: a search with no driver is "stopped", and its rate runs to its last finish
    assert st.state == "stopped"
    assert st.per_hour is not None and st.per_hour > 0
    finished = sum(c for (k, s), c in got.items() if s != RUNNING)
    assert st.eta_s == pytest.approx((N + 5 - finished) / st.per_hour * 3600)
    screen = render(st)
    assert f"{finished} of {N + 5} planned trials finished" in screen
    assert "rerun the same search.run command to resume" in screen and st.best.name in screen


def test_the_names_it_repeats_are_the_driver_s():
    import search.folder as folder
    import search.lock as lock
    import search.records as records
    import search.status as status
    import search.tables as tables

    assert (status.EXPERIMENT_FILE, status.LOCK_NAME, status.LEASE_S) == (
        folder.EXPERIMENT_FILE, lock.LOCK_NAME, lock.LEASE_S)
    assert (status.TRIALS_DIR, status.LEADERBOARD_FILE, status.FRAGMENTS_DIR) == (
        records.TRIALS_DIR, tables.LEADERBOARD_FILE, tables.FRAGMENTS_DIR)
    assert set(status.TABLE_COLUMNS) <= set(tables.LEADERBOARD_SCHEMA)


def test_finished_experiment_has_no_eta_line(tmp_path):
    exp = tmp_path / "small"
    fabricate(exp, n=20, running=0, fixed=2)
    meta = json.loads((exp / "experiment.json").read_text())
    write_json_atomic(exp / "experiment.json", {**meta, "finished_at": iso(T0 + 1000), "space": {
        **meta["space"], "budget": {"num_samples": 18}}})
    st = status_of(str(exp))
    assert st.state == "finished" and st.running == [] and st.eta_s == 0.0
    assert "20 of 20 planned trials finished" in render(st) and "left" not in render(st)


def test_a_storage_uri_reads_like_the_folder(tmp_path):
    """From any machine that reads the storage: a file:// URI goes through pyarrow's filesystem, as s3:// does."""
    exp = tmp_path / "small"
    fabricate(exp, n=30, running=2, fixed=2, tables_at=20)
    now = T0 + 10 * 29 + 60
    local, remote = status_of(str(exp), now=now), status_of(exp.as_uri(), now=now)
    assert remote.counts == local.counts and remote.best == local.best and remote.running == local.running
    assert sum(remote.counts["searched"].values()) == 28 and len(remote.running) == 2


def test_cli_runs_without_ray_and_refuses_a_non_experiment(big, tmp_path):
    exp, _ = big
    code = ("import sys, search.status as s; rc = s.main([sys.argv[1]]); "
            "assert 'ray' not in sys.modules and 'torch' not in sys.modules and 'pandas' not in sys.modules; "
            "sys.exit(rc)")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(exp)], cwd=REPO, capture_output=True, text=True)
    print(f"\npython -m search.status over {N} records, process included: {time.perf_counter() - t:.2f} s")
    assert out.returncode == 0, out.stderr
    assert "experiment big" in out.stdout and "planned trials finished" in out.stdout
    assert main([str(tmp_path / "nowhere")]) == 2
