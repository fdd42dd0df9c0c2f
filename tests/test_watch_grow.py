"""Watching and growing a real search (issue #22), end to end with real Ray Tune, Optuna, Parquet and Chromium.

The trials are synthetic (`search.run --synthetic-trials`: made-up learning curves, a checkpoint per epoch, no
model), so each search is mostly Ray's start-up; everything else is the real driver. The driver runs as its own
process, as a user runs it; the tests wait on conditions (a file appearing), never on time.

    pytest -m slow tests/test_watch_grow.py
"""
from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "faults"))
from faultlib import cli, kill_group, run, start, wait_for  # noqa: E402

from search.status import status_of  # noqa: E402
from search.tune.searchers import STUDY_NAME, journal_storage  # noqa: E402
from search.tune.warmstart import SOURCE  # noqa: E402

pytestmark = pytest.mark.slow
BASE = 12  # the quick search's searched trials, grown to GROWN
GROWN = 16


def space_file(tmp_path: Path, name: str, body: str) -> Path:
    head = f"""
        name: {name}
        data: {{dataset: synthetic, root: {tmp_path / 'data'}, image_size: 32}}
        defaults: {{epochs: 3, width: 0.25, device: cpu}}
        resources: {{cpus: 1, gpus: 0}}
        """
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return path


QUICK = f"""
    params:
      lr: {{loguniform: [1.0e-4, 1.0e-2]}}
      arch: {{choice: [fcn, unet]}}
    fixed_trials:
      base: {{}}
    budget: {{num_samples: {BASE}, max_concurrent: 2, max_failures: 1}}
    scheduler: {{grace_period: 1, reduction_factor: 2}}
    sampler: {{n_startup_trials: 4}}
    """


def search(space: Path, results: Path, *extra: str, **env: str):
    out = run(cli(space, results, "--synthetic-trials", *extra), timeout=400, **env)
    return out


def records(exp: Path) -> dict[str, dict]:
    return {r["name"]: r for r in (json.loads(p.read_text()) for p in (exp / "trials").glob("*.json"))}


def study_trials(exp: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(exp)).get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The finished quick search: 1 fixed trial, then BASE searched ones."""
    tmp = tmp_path_factory.mktemp("quick")
    space = space_file(tmp, "quick", QUICK)
    out = search(space, tmp / "results")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return space, tmp / "results", tmp / "results" / "quick"


def searched_names(recs: dict[str, dict]) -> list[str]:
    return sorted(n for n, r in recs.items() if r["kind"] == "searched")


def test_growing_the_quick_search_from_12_to_16_keeps_the_first_12_and_the_study(quick):
    space, results, exp = quick
    before = records(exp)
    assert searched_names(before) == [f"search-{i:04d}" for i in range(1, BASE + 1)]
    searched_in_study = lambda: [t for t in study_trials(exp) if t.user_attrs.get("segtune_source") is None]  # noqa
    assert len(searched_in_study()) == BASE

    space.write_text(space.read_text().replace(f"num_samples: {BASE}", f"num_samples: {GROWN}"))
    # a crash during the growth: the driver is killed right after the second new trial started
    killed = search(space, results, SEGTUNE_FAULT="kill_after:search:start:2")
    assert killed.returncode != 0 and "budget changed (budget.num_samples: 12 -> 16)" in killed.stdout
    meta = json.loads((exp / "experiment.json").read_text())
    assert meta["space"]["budget"]["num_samples"] == GROWN and "search" not in meta["passes"]

    resumed = search(space, results)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = records(exp)
    assert searched_names(after) == [f"search-{i:04d}" for i in range(1, GROWN + 1)]
    for name, rec in before.items():  # untouched: same id, config, epochs, times; nothing retrained
        a = after[name]
        assert (a["trial_id"], a["config"], a["history"], a["status"], a["started_at"], a["finished_at"]) == (
            rec["trial_id"], rec["config"], rec["history"], rec["status"], rec["started_at"], rec["finished_at"])
        assert len(a["tune_trials"]) == len(rec["tune_trials"])
    new = [after[f"search-{i:04d}"] for i in range(BASE + 1, GROWN + 1)]
    assert all(r["status"] in ("completed", "pruned") and r["pass_name"] == "search" for r in new)
    # the study: the same one, now with 16 searched trials (the fixed trial's seed besides), numbers continuing
    # (the killed driver may have asked Optuna for a trial it never started: reconciled as FAIL, named by no record)
    trials = {t.number: t for t in searched_in_study()}
    told = [r["optuna_trial"] for r in after.values() if r["kind"] == "searched"]
    assert len(set(told)) == GROWN and all(trials[n].state.name in ("COMPLETE", "PRUNED") for n in told)
    assert all(t.state.name == "FAIL" for n, t in trials.items() if n not in told)
    assert min(r["optuna_trial"] for r in new) > max(before[n]["optuna_trial"] for n in searched_names(before))
    board = pd.read_parquet(exp / "leaderboard.parquet")
    assert len(board) == 1 + GROWN and board["trial_id"].is_unique
    assert "Budget changed" in (exp / "report.html").read_text()


def test_warm_start_puts_the_other_experiments_trials_in_the_study_not_the_leaderboard(quick, tmp_path):
    _, _, source = quick
    # a new experiment: more epochs, and an lr range that leaves out part of the source's trials
    space = space_file(tmp_path, "warm", QUICK.replace("num_samples: 12", "num_samples: 3")
                       .replace("[1.0e-4, 1.0e-2]", "[1.0e-4, 2.0e-3]").replace("epochs: 3", "epochs: 4"))
    space.write_text(space.read_text().replace("epochs: 3", "epochs: 4"))
    out = search(space, tmp_path / "results", "--warm-start", str(source))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    exp = tmp_path / "results" / "warm"

    src = records(source)
    fits = {r["trial_id"] for r in src.values()
            if r["status"] in ("completed", "pruned") and 1e-4 <= r["config"]["lr"] <= 2e-3}
    assert 0 < len(fits) < len(src)
    priors = [t for t in study_trials(exp) if t.user_attrs.get("segtune_source") == SOURCE]
    assert {t.user_attrs["segtune_warm_trial"] for t in priors} == fits
    assert all(t.user_attrs["segtune_warm_from"] == str(source) for t in priors)
    meta = json.loads((exp / "experiment.json").read_text())["warm_start"]
    assert (meta["added"], meta["skipped"], meta["of"]) == (len(fits), len(src) - len(fits), len(src))

    own = records(exp)
    board = pd.read_parquet(exp / "leaderboard.parquet")
    assert sorted(board["name"]) == ["base", "search-0001", "search-0002", "search-0003"] == sorted(own)
    assert not set(board["trial_id"]) & {r["trial_id"] for r in src.values()}
    page = (exp / "report.html").read_text()
    assert "Warm-started from" in page and str(source) in page

    # a rerun with another source is refused, naming the first; nothing is added
    other = search(space, tmp_path / "results", "--warm-start", str(tmp_path / "nowhere"))
    assert other.returncode == 2 and "nowhere" in other.stderr and "no experiment.json" in other.stderr


def test_the_report_and_status_while_a_search_runs_and_after(tmp_path):
    release = tmp_path / "release"
    space = space_file(tmp_path, "live", """
        params:
          lr: {loguniform: [1.0e-4, 1.0e-2]}
        fixed_trials:
          base: {}
          slow: {lr: 3.0e-3}
        budget: {num_samples: 2, max_concurrent: 2, max_failures: 1}
        scheduler: none
        tracking: {report_s: 1}
        """)
    exp = tmp_path / "results" / "live"
    log = tmp_path / "driver.log"
    proc = start(cli(space, tmp_path / "results", "--synthetic-trials"), log,
                 SEGTUNE_FAULT=f"hold_after_epoch:1:{release}")
    try:
        held = lambda: len(list(tmp_path.glob("release.held-*"))) == 2  # noqa: E731
        wait_for(held, 300, "both fixed trials held after epoch 1", proc, log)

        def live_page() -> str | None:  # a page built while both trials were held
            path = exp / "report.html"
            page = path.read_text() if path.is_file() else ""
            return page if 'data-running="2"' in page else None

        page = wait_for(live_page, 300, "a live report.html with the two running trials", proc, log)
        banner = re.search(r'<div id="live-banner"[^>]*>(.*?)</div>', page, re.S)
        assert banner and "Search in progress" in banner.group(1)
        assert "0 of 4 planned trials finished" in banner.group(1)
        assert "base (epoch 1/3)" in banner.group(1) and "slow (epoch 1/3)" in banner.group(1)
        curves = re.search(r'<section id="curves">(.*?)</section>', page, re.S).group(1)
        assert '"name":"slow"' in curves.replace(" ", "") or "slow" in curves  # its curve so far
        board = re.search(r'<section id="leaderboard">(.*?)</section>', page, re.S).group(1)
        assert "running" in board

        live = status_of(str(exp))
        assert live.state == "in progress" and sorted(r.name for r in live.running) == ["base", "slow"]
        assert all(r.epoch == 1 and r.epochs == 3 for r in live.running)
        assert live.counts["fixed"]["running"] == 2 and live.planned == {"fixed": 2, "searched": 2, "seed": 0}
        _render_in_chromium(exp / "report.html", tmp_path)

        release.write_text("go")
        proc.wait(timeout=300)
        assert proc.returncode == 0, log.read_text()[-4000:]
    finally:
        kill_group(proc)
    final = (exp / "report.html").read_text()
    assert 'id="live-banner"' not in final and "Search in progress" not in final
    done = status_of(str(exp))
    assert done.state == "finished" and done.running == [] and done.eta_s == 0.0
    assert done.counts["fixed"]["completed"] == 2 and sum(done.counts["searched"].values()) == 2


def _render_in_chromium(page: Path, tmp_path: Path) -> None:
    from browser import find_chromium, render

    if find_chromium() is None:
        return
    copy = tmp_path / "live-report.html"
    copy.write_bytes(page.read_bytes())
    res = render(copy, window=(1400, 2000), budget_ms=8000)
    html_tag = re.search(r"<html[^>]*>", res.dom).group(0)
    assert 'data-js-errors=""' in html_tag and 'data-report-ready="1"' in html_tag, html_tag
