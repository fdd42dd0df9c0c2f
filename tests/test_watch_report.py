"""The report's parts for watching a search, without Ray: the gallery's cap on fixed trials, the live page built
from a folder with running trials (search/report/live.py), and the lineage lines (warm start, budget changes)."""
from __future__ import annotations

import json
import re

from search.records import write_record
from search.report import load_report_data, write_report
from search.report.live import LiveReport, write_live_report
from search.report.sections import gallery
from search.synthetic import synthetic_record
from search.tables import write_tables
from search.vocab import RUNNING
from test_report import TRIALS, fabricate, section


def test_gallery_shows_at_most_the_best_fixed_trials_and_says_so(tmp_path):
    n = gallery.GALLERY_FIXED + 8
    fixed = [(f"grid-{i:02d}", "fixed", "completed", "fcn", 1e-3, 5, 5, 0.01 + i / 1000) for i in range(n)]
    trials = [*fixed, *TRIALS[7:]]
    exp = fabricate(tmp_path / "grid", trials=trials, masks=[t[0] for t in trials])
    info = gallery.info(load_report_data(exp))
    shown = [r.label for r in info.rows if r.kind == "fixed"]
    best = [f"grid-{i:02d}" for i in range(n - 1, n - 1 - gallery.GALLERY_FIXED, -1)]
    assert sorted(shown) == sorted(best) and info.fixed_with_masks == n
    assert [r.label for r in info.rows if r.kind != "fixed"][:1] == ["search-0000"]  # the searched top still shown
    html = gallery.render(info)
    assert f"the {gallery.GALLERY_FIXED} best of the {n} fixed trials by val mIoU" in html
    # under the cap nothing is left out and nothing is said
    small = gallery.info(load_report_data(fabricate(tmp_path / "small")))
    assert small.fixed_with_masks <= gallery.GALLERY_FIXED and "gallery-fixed-cap" not in gallery.render(small)


def experiment_with_running_trials(tmp_path):
    exp = tmp_path / "live"
    (exp / "trials").mkdir(parents=True)
    space = {"name": "live", "params": {"lr": {}}, "fixed_trials": {}, "budget": {"num_samples": 6}}
    (exp / "experiment.json").write_text(json.dumps({"name": "live", "space": space, "finished_at": None,
                                                     "warm_start": {"source": "results/old", "added": 5,
                                                                    "skipped": 2, "of": 7}}))
    for i in range(3):
        write_record(exp, synthetic_record(i, {"lr": 1e-3 * (i + 1), "epochs": 4, "arch": "fcn"}, epochs_run=4))
    write_tables(exp)
    for i in (3, 4):  # running: two epochs so far, not in the tables
        rec = synthetic_record(i, {"lr": 2e-3, "epochs": 4, "arch": "unet"}, epochs_run=2)
        rec.update(status=RUNNING, finished_at=None)
        write_record(exp, rec)
    return exp


def test_live_report_has_the_banner_and_the_running_trials(tmp_path):
    exp = experiment_with_running_trials(tmp_path)
    page = write_live_report(exp, every_s=120).read_text()
    banner = re.search(r'<div id="live-banner"[^>]*>(.*?)</div>', page, re.S).group(1)
    assert "Search in progress" in banner and "3 of 6 planned trials finished" in banner
    assert "2 running: search-0004 (epoch 2/4), search-0005 (epoch 2/4)" in banner and "120 s" in banner
    board = section(page, "leaderboard")
    assert "search-0004" in board and "search-0005" in board
    assert "search-0004" in section(page, "curves")  # its curve so far
    assert "Warm-started from results/old: 5 of its 7 trials" in section(page, "overview")
    # the final report of the same folder: no banner, no running rows from the records
    final = write_report(exp).read_text()
    assert 'id="live-banner"' not in final and "search-0004" not in section(final, "leaderboard")


def test_live_report_writer_builds_in_a_child_process_when_asked(tmp_path):
    exp = experiment_with_running_trials(tmp_path)
    pushed = []
    with LiveReport(exp, every_s=3600, publish=pushed.append) as live:
        live.request()
        for _ in range(3000):  # the child builds, the thread pushes what it built (a condition, with a bound)
            if pushed:
                break
            live._stop.wait(0.1)
    assert pushed == [exp / "report.html"] and live.builds == 1
    assert 'id="live-banner"' in (exp / "report.html").read_text()
