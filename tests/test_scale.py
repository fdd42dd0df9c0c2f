"""Scale (issue 17): the incremental tables equal a full rebuild from the records, also after a SIGKILL in the middle
of a write; the report of a fabricated large experiment stays within its budget; bench.scale's smallest size runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from browser import assert_page_ok, render
from search.fragments import TableWriter, compact, read_tables
from search.records import write_record
from search.synthetic import synthetic_record
from search.tables import FRAGMENTS_DIR, build_tables
from seg.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
N = 24  # trials


def records(n: int = N) -> list[dict]:
    """Searched trials of three architectures (some pruned, one failed) and a seed group (search-0002 + reruns)."""
    base = TrainConfig().model_dump(mode="json")
    out = []
    for i in range(n):
        fields = {**base, "arch": ["fcn", "unet", "resnet34_fcn"][i % 3], "lr": 10 ** (-4 + 2 * (i % 7) / 7),
                  "epochs": 9}
        out.append(synthetic_record(i, fields, [1, 3, 9][i % 3], failed=i == 5))
    for s, i in ((1, n), (2, n + 1)):  # seed reruns of search-0003 (trial 2, completed)
        out.append(synthetic_record(i, {**out[2]["config"], "seed": s}, 9, kind="seed", name=f"search-0003@seed{s}"))
    return out


def assert_same(live: tuple[pd.DataFrame, pd.DataFrame], full: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    for a, b in zip(live, full):
        pd.testing.assert_frame_equal(a, b)


def test_incremental_tables_equal_a_full_rebuild_and_the_ranking_holds(tmp_path):
    writer = TableWriter(tmp_path, compact_s=0.0)
    recs = records()
    for k, rec in enumerate(recs):
        write_record(tmp_path, rec)
        writer.compact_s = 0.0 if k % 5 == 1 else 1e9  # compact now and then, fragments in between
        writer.trial_finished(rec)
        assert_same(read_tables(tmp_path), build_tables(tmp_path))
    assert list((tmp_path / FRAGMENTS_DIR / "leaderboard").glob("*.parquet")), "fragments between compactions"
    writer.close()  # the end of a pass: everything compacted, no fragment left
    assert not list((tmp_path / FRAGMENTS_DIR).rglob("*.parquet"))
    board = pd.read_parquet(tmp_path / "leaderboard.parquet")  # what pandas / DuckDB read
    assert_same((board, pd.read_parquet(tmp_path / "history.parquet")), build_tables(tmp_path))
    group = board[board["seed_group"] == "search-0003"]
    assert len(group) == 3 and group["n_seeds"].eq(3).all()  # the seed columns are recomputed over the union
    assert list(group.index) == list(range(group.index[0], group.index[0] + 3))  # a group's rows stay together


def test_compaction_folds_fragments_without_the_records(tmp_path):
    writer = TableWriter(tmp_path, compact_s=1e9)
    for rec in records(10):
        write_record(tmp_path, rec)
        writer.trial_finished(rec)
    compact(tmp_path)
    assert_same(read_tables(tmp_path), build_tables(tmp_path))


def test_the_leaderboard_command_rebuilds_and_imports_neither_ray_nor_torch(tmp_path):
    for rec in records(6):
        write_record(tmp_path, rec)
    code = ("import sys; from search.leaderboard import main; rc = main([sys.argv[1]]); "
            "heavy = [m for m in ('ray', 'torch', 'optuna') if m in sys.modules]; "
            "assert not heavy, heavy; sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "8 trials" in res.stdout  # 6 searched + 2 seed reruns
    assert_same(read_tables(tmp_path), build_tables(tmp_path))


WRITER = """
import sys
from pathlib import Path
sys.path[:0] = [{repo!r}, {tests!r}]
from test_scale import records
from search.fragments import TableWriter
from search.records import write_record
exp = Path(sys.argv[1])
writer = TableWriter(exp, compact_s=0.0)  # a compaction after every trial: the kill lands in one
for rec in records():
    write_record(exp, rec)
    writer.trial_finished(rec)
"""


@pytest.mark.parametrize("fault", [
    "kill_before_rename:leaderboard.parquet:6",  # compacting: history.parquet renamed, leaderboard.parquet not
    "kill_before_rename:history.parquet:9",  # compacting: the history rename
    "kill_before_rename:syn000011.parquet:2",  # a trial's leaderboard fragment (its history one was written)
])
def test_a_sigkill_mid_write_leaves_readable_tables_equal_to_the_rebuild(tmp_path, fault):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO), tests=str(REPO / "tests")))
    exp = tmp_path / "exp"
    env = {**os.environ, "SEGTUNE_FAULT": fault}
    res = subprocess.run([sys.executable, str(script), str(exp)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert list(exp.rglob(".*.tmp-*")), "killed between writing a tmp file and its rename"
    board, history = pd.read_parquet(exp / "leaderboard.parquet"), pd.read_parquet(exp / "history.parquet")
    assert len(board) and len(history)  # the last compacted files read cleanly
    live, full = read_tables(exp), build_tables(exp)
    if fault.startswith("kill_before_rename:syn"):  # recorded final, but its fragment never landed
        missing = "syn000011"
        assert missing not in set(live[0]["trial_id"]) and missing in set(full[0]["trial_id"])
        writer = TableWriter(exp)  # the next run: its first compaction is a full rebuild from the records
        writer.close()
        live = read_tables(exp)
    assert_same(live, full)


def test_a_final_trial_keeps_its_best_weights_not_the_optimizer_state(tiny_cfg, tmp_path):
    import torch

    from search.records import resume_checkpoints
    from search.tune.recorder import slim_checkpoints
    from search.tune.trainable import RESUME_FILE, STATE_FILE, load_checkpoint, save_checkpoint
    from seg.train import Trainer

    trainer, folders = Trainer(tiny_cfg), []
    for m in trainer.epochs():  # two epochs, a checkpoint each (as Tune keeps them)
        folders.append(tmp_path / f"checkpoint_{m['epoch'] - 1:06d}")
        folders[-1].mkdir()
        save_checkpoint(trainer, folders[-1])
    retry = Trainer(tiny_cfg)
    load_checkpoint(retry, folders[-1])  # a running trial's retry gets everything back
    assert retry.epoch == 2 and all(torch.equal(a, b) for a, b in zip(
        retry.optimizer.state_dict()["state"][0].values(), trainer.optimizer.state_dict()["state"][0].values()))
    full = sum(p.stat().st_size for f in folders for p in f.iterdir())
    rec = {"checkpoints": [{"epoch": i + 1, "path": str(f)} for i, f in enumerate(folders)]}
    slim_checkpoints(rec)  # the trial is final
    assert not folders[0].exists() and not (folders[1] / RESUME_FILE).exists()
    kept = sum(p.stat().st_size for p in folders[1].iterdir())
    assert kept < full / 4, (kept, full)  # one checkpoint, without the model and Adam's two moments
    state = torch.load(rec["best_weights"], weights_only=True)  # what an export reads
    assert rec["best_weights"] == str(folders[1] / STATE_FILE)
    assert set(state["best_state"]) == set(trainer.model.state_dict())
    assert resume_checkpoints(rec) == (str(folders[1]),)


# ---- the report of a large experiment -----------------------------------------------------------------------------
REPORT_TRIALS = 600  # above curves.MAX_CURVE_TRIALS and many leaderboard pages; bench.scale measures 10,000
REPORT_BUDGET_MB = 25 * REPORT_TRIALS / 10_000 + 6  # 25 MB at 10,000, scaled, plus plotly.js and the fixed parts


@pytest.fixture(scope="module")
def large_report(tmp_path_factory) -> Path:
    from bench.scale import fabricate
    from search.report import write_report
    from search.tables import write_tables

    exp = tmp_path_factory.mktemp("large") / "exp"
    for rec in fabricate(exp, REPORT_TRIALS):
        write_record(exp, rec)
    write_tables(exp)
    return write_report(exp)


def test_a_large_report_pages_the_leaderboard_samples_the_curves_and_stays_in_budget(large_report):
    import re

    from search.report.sections import curves, leaderboard

    page = large_report.read_text()
    assert large_report.stat().st_size / 1e6 < REPORT_BUDGET_MB
    lb = re.search(r'<section id="leaderboard">(.*?)</section>', page, re.S).group(1)
    assert lb.count("<tr data-status=") == leaderboard.PAGE_ROWS  # one page in the HTML, every row in the JSON
    assert f"all {REPORT_TRIALS:,} trials" in lb and lb.count('"search-') >= REPORT_TRIALS
    cv = re.search(r'<section id="curves">(.*?)</section>', page, re.S).group(1)
    assert f"{REPORT_TRIALS:,} trials: showing" in cv and "random sample of" in cv  # says what is sampled
    n_traces = cv.count('"legendgroup"')
    assert n_traces <= 4 * (curves.TOP_CURVES + curves.SAMPLE_CURVES + 10)


def test_a_large_report_renders_in_chromium_and_its_pager_and_filters_work(large_report, tmp_path, chromium):
    import json
    import re

    script = """<script>window.addEventListener('load', function () {
      var out = {}, rows = function () { return document.getElementById('lb-table').tBodies[0].rows; };
      document.querySelector('.pager [data-page="1"]').click();
      out.page2 = document.querySelector('.pager .page').textContent; out.first = rows()[0].cells[0].textContent;
      var st = document.querySelector('[data-filter=status]'); st.value = 'failed'; st.dispatchEvent(new Event('change'));
      out.failed = Array.prototype.map.call(rows(), function (r) { return r.dataset.status; });
      out.shown = document.querySelector('.controls .shown').textContent;
      document.documentElement.setAttribute('data-interact', JSON.stringify(out));
    });</script>"""
    page = tmp_path / "report.html"
    page.write_text(large_report.read_text().replace("</body>", script + "</body>"))
    res = render(page, budget_ms=10000, timeout=300)
    assert_page_ok(res)
    for fig in ("fig-curves", "fig-parcoords", "fig-importance", "fig-efficiency", "fig-cost"):
        start = res.dom.index(f'id="{fig}"')
        assert 'class="main-svg"' in res.dom[start:start + 200_000], f"{fig} did not render"
    out = json.loads(re.search(r'data-interact="([^"]*)"', res.dom).group(1).replace("&quot;", '"'))
    assert out["page2"].startswith("page 2 of ") and out["first"] == str(leaderboard_rows_per_page() + 1)
    assert out["failed"] and set(out["failed"]) == {"failed"} and out["shown"].endswith(f"of {REPORT_TRIALS} trials")


def leaderboard_rows_per_page() -> int:
    from search.report.sections.leaderboard import PAGE_ROWS

    return PAGE_ROWS


# ---- bench.scale ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_scale_smoke(tmp_path):
    """The smallest sizes end to end: a real synthetic search through search.run (local Ray, 64 GPUs declared),
    segtune's parts driven directly, the JSON and its table (under a minute on 2 cores)."""
    import json

    out = tmp_path / "scale.json"
    cmd = [sys.executable, "-m", "bench.scale", "--sizes", "12", "--parts-sizes", "40", "--concurrent", "4",
           "--work", str(tmp_path / "work"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    (search,), (parts,) = report["searches"], report["parts"]
    assert search["rc"] == 0 and search["trials_finished"] == 12, search
    cost = search["per_trial_cpu_s"]
    assert {"records", "tables", "progress", "searcher", "tune_own", "segtune"} <= set(cost)
    assert cost["segtune"] == pytest.approx(cost["records"] + cost["tables"] + cost["progress"], rel=1e-2, abs=1e-4)
    assert search["report_mb"] > 0 and parts["size"] == 40 and parts["report_mb"] > 0
    assert "| 12 | real Tune |" in res.stdout and "| 40 | parts |" in res.stdout
