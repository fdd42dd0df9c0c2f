"""The HTML report: built from a hand-made experiment folder in the documented formats (docs/DESIGN.md),
it carries the right numbers, degrades on thin inputs, and renders without JavaScript errors in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs

from browser import assert_page_ok, render
from search.report.paper_table4 import TABLE4
from search.vocab import SCHEMA_VERSION
from search.report import load_report_data, main, write_report
from search.report.analysis import pareto_front, param_importances
from search.report.html import asset
from search.report.images import mask_png
from search.report.sections import SECTIONS, cost, curves, efficiency, header, leaderboard, table4
from seg.data.classes import VOC_CLASSES

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
FIGURES = [
    "fig-table4",
    "fig-curves",
    "fig-heatmap",
    "fig-parcoords",
    "fig-importance",
    "fig-efficiency",
    "fig-cost",
]

# name, kind, status, arch, lr, epochs (config), epochs run, best val mIoU
TRIALS = [
    ("baseline", "fixed", "completed", "fcn", 1e-3, 20, 20, 0.0612),
    ("4a", "fixed", "completed", "fcn", 5e-4, 30, 30, 0.0571),
    ("4b", "fixed", "completed", "fcn", 5e-4, 50, 50, 0.0533),
    ("4c", "fixed", "completed", "fcn", 5e-4, 50, 50, 0.0498),
    ("5a", "fixed", "completed", "fcn_dilated", 5e-4, 50, 50, 0.0467),
    ("5b", "fixed", "completed", "resnet34_fcn", 5e-4, 50, 50, 0.1304),
    ("5c", "fixed", "completed", "unet", 1e-4, 50, 50, 0.0702),
    ("search-0000", "searched", "completed", "resnet34_fcn", 2e-3, 40, 40, 0.1851),
    ("search-0001", "searched", "pruned", "unet", 3e-2, 40, 4, 0.0211),
    ("search-0002", "searched", "failed", "fcn", 1e-1, 40, 2, float("nan")),
    ("search-0003", "searched", "completed", "fcn", 8e-4, 40, 40, 0.0802),
]
SIZE, N_MASKS = 32, 3  # px, val images per masks file


def trial_id(i: int) -> str:
    return f"t{i:04d}"


def paper_style_scores(best: float, ok: bool = True) -> dict[str, float]:
    """The fabricated trials' `*_paper` columns: the per-batch mean runs ~0.02 above the dataset-level mIoU."""
    nan = np.nan
    return dict(best_val_miou_paper=best + 0.02 if ok else nan, best_val_pixel_acc_paper=0.71 + best / 10 if ok else nan,
                test_miou_paper=best * 0.9 + 0.02 if ok else nan, test_pixel_acc_paper=0.69 + best / 10 if ok else nan)


# "background everywhere" on the fabricated data, as preflight.prepare_data writes it into experiment.json
FLOOR = dict(best_val_miou=0.0351, best_val_pixel_acc=0.738, best_val_miou_paper=0.0547,
             best_val_pixel_acc_paper=0.7382, test_miou=0.0341, test_pixel_acc=0.7168, test_miou_paper=0.0534,
             test_pixel_acc_paper=0.7078)


def fabricate(
    root: Path,
    trials=TRIALS,
    meta: bool = True,
    masks=("baseline", "search-0000"),
    history: bool = True,
    seeds: bool = False,
) -> Path:
    """A realistic experiment folder: experiment.json, leaderboard/history Parquet and a few masks files."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows, hist = [], []
    for i, (name, kind, status, arch, lr, epochs, run, best) in enumerate(trials):
        ok = status != "failed" and best == best  # NaN scores: a trial that reported nothing usable
        iou = rng.uniform(0, 2 * best, 21) if ok else np.full(21, np.nan)
        if ok:
            iou[0], iou[5] = 0.72, np.nan  # background; a class never seen
        row = dict(
            trial_id=trial_id(i),
            name=name,
            kind=kind,
            status=status,
            pruned_at_epoch=run if status == "pruned" else None,
            error="RuntimeError: loss became NaN at epoch 2" if status == "failed" else None,
            dataset="voc",
            year="2007",
            image_size=SIZE,
            arch=arch,
            activation="tanh" if arch == "fcn_dilated" else "relu",
            width=1.0,
            class_weights="none" if name in ("baseline", "4a") else "background",
            lr=lr,
            weight_decay=[0.0, 1e-4, 1e-3][i % 3],
            batch_size=16,
            epochs=epochs,
            flip=i % 2 == 0,
            synthetic_counts="(100, 50, 50)",
            device="cpu",
            seed=0,
            bg_weight=None if i % 2 else 0.1,
            epochs_run=run,
            best_epoch=max(1, run - 2) if ok else None,
            best_val_miou=best,
            best_val_pixel_acc=0.70 + best / 10 if ok else np.nan,
            test_miou=best * 0.9 if ok else np.nan,
            test_pixel_acc=0.68 + best / 10 if ok else np.nan,
            **paper_style_scores(best, ok),
            **{f"iou_{c}": v for c, v in zip(VOC_CLASSES, iou)},
            train_loss=0.8,
            val_loss=1.1,
            wall_seconds=run * (3.0 + i),
            gpu_seconds=0.0,
            images_per_s=120.0 + i,
            compile_seconds=0.0,
            git_commit="abc1234",
            versions=json.dumps({"torch": "2.x"}),
            config_json=json.dumps({"arch": arch, "lr": lr}),
            host="node0",
            schema_version=SCHEMA_VERSION,
            device_name="cpu",
            started_at=f"2026-11-24T10:{i:02d}:00+00:00",
            finished_at=f"2026-11-24T11:{i:02d}:00+00:00",
        )
        if seeds:
            row.update(
                seed_group=f"g{i // 2}",
                val_miou_mean=best,
                val_miou_std=0.004,
                test_miou_mean=best * 0.9,
                test_miou_std=0.005,
                n_seeds=3,
            )
        rows.append(row)
        for e in range(1, run + 1):
            hist.append(
                dict(
                    trial_id=trial_id(i),
                    name=name,
                    epoch=e,
                    train_loss=2.0 / e,
                    val_loss=2.2 / e**0.5,
                    val_miou=best * (1 - 0.5**e),
                    val_pixel_acc=0.7 * (1 - 0.3**e),
                    lr=lr,
                    seconds=3.0,
                )
            )
    lb = pd.DataFrame(rows)
    lb["pruned_at_epoch"] = lb["pruned_at_epoch"].astype("Int64")
    lb.to_parquet(root / "leaderboard.parquet")
    pd.DataFrame(
        hist if history else [], columns=None if history else ["trial_id", "name", "epoch"]
    ).to_parquet(root / "history.parquet")
    if meta:
        (root / "experiment.json").write_text(
            json.dumps(
                dict(
                    name="fabricated",
                    space_file="spaces/paper.yaml",
                    space_hash="0123456789abcdef",
                    dataset="voc",
                    image_size=SIZE,
                    split_sizes={"train": 209, "val": 213, "test": 210},
                    floor=FLOOR,
                    hardware={"cluster_cpus": 2, "cluster_gpus": 0, "gpu_names": []},  # search.provenance.hardware
                    started_at="2026-11-24T10:00:00+00:00",
                    finished_at="2026-11-24T11:30:00+00:00",
                    versions={"torch": "2.x"},
                )
            )
        )
    ids = [r["trial_id"] for r in rows if r["name"] in masks]
    if ids:
        (root / "masks").mkdir(exist_ok=True)
        images = rng.integers(0, 255, (N_MASKS, SIZE, SIZE, 3), dtype=np.uint8)
        gt = np.zeros((N_MASKS, SIZE, SIZE), np.uint8)
        gt[:, 8:24, 8:24] = 15  # a person
        gt[:, 7, :] = 255
        for k, t in enumerate(ids):
            pred = gt.copy()
            pred[pred == 255] = 0
            pred[:, :4] = 3 + k % 17
            np.savez_compressed(
                root / "masks" / f"{t}.npz",
                ids=np.array([f"2007_{j:06d}" for j in range(N_MASKS)]),
                images=images,
                gt=gt,
                pred=pred,
                epoch=np.array(7),
            )
    return root


def section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    exp = fabricate(tmp_path_factory.mktemp("exp") / "fabricated")
    out = write_report(exp)
    return out, out.read_text()


def test_report_is_written_atomically_as_one_self_contained_page(report):
    out, page = report
    # seg.atomic's temporary files are `.<name>.tmp-<pid>-<hex><suffix>`: none may be left beside the report
    assert out.name == "report.html" and not [p.name for p in out.parent.iterdir() if ".tmp" in p.name]
    assert "<script src=" not in page and page.count(get_plotlyjs()) == 1  # offline, plotly.js inlined once
    assert out.stat().st_size < 8e6
    for sid in (
        "overview",
        "leaderboard",
        "table4",
        "curves",
        "gallery",
        "heatmap",
        "hyperparameters",
        "efficiency",
        "cost",
    ):
        section(page, sid)
    for fig in FIGURES:
        assert f'id="{fig}"' in page, fig


def test_header_counts_statuses_and_names_the_best_trial(report):
    head = section(report[1], "overview")
    counts = text(re.search(r'<span id="status-counts">(.*?)</span></dd>', head, re.S).group(1))
    assert "completed 9" in counts and "pruned 1" in counts and "failed 1" in counts
    assert re.search(r'<b id="best-trial">search-0000</b>', head)
    assert "0.1851" in head
    assert "voc 2007 at 32x32 px; train/val/test = 209/213/210 images" in text(head)
    assert "fabricated" in head


def test_table4_holds_paper_trial_and_difference(report):
    t4 = section(report[1], "table4")
    assert "32x32 px" in t4 and "224x224" in t4
    for name, (label, paper) in TABLE4.items():
        row = re.search(rf'<tr data-model="{name}">(.*?)</tr>', t4, re.S).group(1)
        best = next(t for t in TRIALS if t[0] == name)[7]
        ours = paper_style_scores(best)
        assert f"{paper['best_val_miou']:.5f}" in row and f"{paper['test_pixel_acc']:.5f}" in row
        assert f'<span class="ours">{ours["best_val_miou_paper"]:.5f}' in row  # like with like: paper-style
        assert f'<span class="dataset">{best:.5f}' in row  # and the dataset-level one beneath it
        assert f"{ours['best_val_miou_paper'] - paper['best_val_miou']:+.5f}" in row
        assert f"{ours['test_miou_paper'] - paper['test_miou']:+.5f}" in row
    floor = re.search(r'<tr data-model="floor">(.*?)</tr>', t4, re.S).group(1)
    assert "background everywhere" in floor and "0.05470" in floor and "0.03510" in floor


def test_leaderboard_has_filters_iou_toggle_and_every_trial(report):
    lb = section(report[1], "leaderboard")
    assert len(re.findall(r"<tr data-status=", lb)) == len(TRIALS)
    for f in ("status", "arch", "kind"):
        assert f'data-filter="{f}"' in lb
    assert 'data-toggle="iou"' in lb and 'class="iou"' in lb and "tvmonitor" in lb
    assert "loss became NaN" in lb


def test_curves_gallery_and_importance(report):
    page = report[1]
    curves = section(page, "curves")
    assert "pruned" in curves and 'id="curve-select"' in curves
    gal = section(page, "gallery")
    assert gal.count('data-trial="') == 2  # baseline and search-0000 have masks
    assert gal.count("data:image/png;base64") == 2 * N_MASKS + N_MASKS  # ground truth + predictions
    assert "aeroplane" in gal and "tvmonitor" in gal
    hp = section(page, "hyperparameters")
    assert "fANOVA over 9 completed trials" in hp or "PED-ANOVA" in hp


def test_mask_thumbnails_use_the_voc_palette():
    mask = np.full((8, 8), 15, np.uint8)
    mask[0, 0], mask[0, 1] = 0, 255
    uri = mask_png(mask)
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    assert img.getpixel((2, 2)) == (192, 128, 128)  # person
    assert img.getpixel((0, 0)) == (0, 0, 0) and img.getpixel((1, 0)) == (224, 224, 192)  # background, void


def test_pareto_front():
    cost = np.array([10, 20, 30, 40, 15.0])
    score = np.array([0.1, 0.3, 0.2, 0.4, 0.05])
    assert pareto_front(cost, score).tolist() == [0, 1, 3]


def test_importance_needs_enough_completed_trials(tmp_path):
    exp = load_report_data(fabricate(tmp_path / "e", trials=TRIALS[:3] + TRIALS[8:10]))
    imp, why = param_importances(exp.lb)
    assert imp == {} and "at least 4 completed" in why


# ---- section infos: the numbers, with no HTML ----------------------------------------------------------------
@pytest.fixture(scope="module")
def data(report):
    return load_report_data(report[0].parent)


def test_every_registered_section_is_on_the_page_and_has_info_and_render(report):
    assert [s.id for s in SECTIONS] == re.findall(r'<section id="([^"]+)">', report[1])
    assert all(callable(s.module.info) and callable(s.module.render) for s in SECTIONS)


def test_table4_info_lines_up_paper_ours_and_difference(data):
    info = table4.info(data)
    assert [r.name for r in info.rows] == list(TABLE4) and "32x32 px" in info.note
    for row in info.rows:
        label, paper = TABLE4[row.name]
        best = next(t for t in TRIALS if t[0] == row.name)[7]
        ours = dict(best_val_miou=best, best_val_pixel_acc=0.70 + best / 10, test_miou=best * 0.9,
                    test_pixel_acc=0.68 + best / 10)
        by_batch = paper_style_scores(best)
        assert row.label == label and row.status == "completed"
        assert [c.column for c in row.cells] == list(paper)
        for c in row.cells:
            assert c.paper == paper[c.column] and c.ours == pytest.approx(ours[c.column])
            assert c.ours_paper == pytest.approx(by_batch[c.column + "_paper"])
            assert c.diff == pytest.approx(by_batch[c.column + "_paper"] - c.paper)  # like with like
    assert [(c.ours, c.ours_paper, c.paper) for c in info.floor.cells] == [
        (FLOOR[c], FLOOR[c + "_paper"], None) for c in TABLE4["baseline"][1]]
    assert info.bar_paper == [TABLE4[n][1]["test_miou"] for n in TABLE4]
    assert info.bar_ours == pytest.approx([next(t for t in TRIALS if t[0] == n)[7] * 0.9 + 0.02 for n in TABLE4])


def test_markdown_table4_replaces_only_the_marked_block(tmp_path, capsys):
    exp = fabricate(tmp_path / "e", trials=TRIALS[:7])
    readme = tmp_path / "README.md"
    readme.write_text("# title\nbefore\n<!-- table4:start -->\nold table\n<!-- table4:end -->\nafter\n")
    assert main(["--markdown", "--into", str(readme), str(exp)]) == 0
    out = readme.read_text()
    assert out.startswith("# title\nbefore\n<!-- table4:start -->\nsegtune: voc 2007 at 32x32 px")
    assert out.endswith("<!-- table4:end -->\nafter\n") and "old table" not in out and "| 5c | completed |" in out
    assert main(["--markdown", "--into", str(readme), str(exp)]) == 0 and readme.read_text() == out  # idempotent
    assert main(["--markdown", str(exp)]) == 0 and "| Baseline | completed |" in capsys.readouterr().out
    readme.write_text("no markers here\n")
    assert main(["--markdown", "--into", str(readme), str(exp)]) == 2
    assert "README.md: expected one <!-- table4:start --> line" in capsys.readouterr().err
    assert readme.read_text() == "no markers here\n"


def test_table4_lists_segtune_variants_after_their_paper_row_and_as_markdown(tmp_path):
    scratch = ("5b-scratch", "fixed", "completed", "resnet34_fcn", 5e-4, 50, 50, 0.0390)
    data = load_report_data(fabricate(tmp_path / "e", trials=TRIALS[:7] + [scratch]))
    info = table4.info(data)
    assert [r.name for r in info.rows] == ["baseline", "4a", "4b", "4c", "5a", "5b", "5b-scratch", "5c"]
    row = info.rows[6]
    assert [c.paper for c in row.cells] == [None] * 4 and row.cells[0].ours == pytest.approx(0.0390)
    md = table4.markdown(info, "voc 2007 at 32x32 px")
    lines = md.splitlines()
    assert lines[2].startswith("| model | status | Best validation IoU")
    assert "| 5b-scratch | completed | — / 0.0590 / 0.0390 |" in md
    base = 0.0612 + 0.02
    assert f"| Baseline | completed | 0.0549 / {base:.4f} ({base - 0.05486:+.4f}) / 0.0612 |" in md
    assert "| background everywhere |  | — / 0.0547 / 0.0351 |" in md


def test_table4_info_of_an_experiment_without_fixed_trials(tmp_path):
    info = table4.info(load_report_data(fabricate(tmp_path / "e", trials=TRIALS[7:])))
    assert info.rows == [] and all(v is None for v in info.bar_ours)


def test_header_info_counts_and_best_trial(data):
    info = header.info(data)
    assert info.n_trials == len(TRIALS)
    assert info.status_counts == [("completed", 9), ("pruned", 1), ("failed", 1)]  # no "running" at 0
    assert info.epochs == sum(t[6] for t in TRIALS) and info.gpu_seconds == 0
    assert info.data == "voc 2007 at 32x32 px; train/val/test = 209/213/210 images"
    b = info.best
    assert (b.label, b.trial_id, b.arch, b.status) == ("search-0000", "t0007", "resnet34_fcn", "completed")
    assert b.val_miou == 0.1851 and b.test_miou == pytest.approx(0.1851 * 0.9)
    assert b.seed_group is None and b.val_miou_mean is None  # no seed reruns here
    assert info.started == "2026-11-24T10:00:00+00:00" and info.finished == "2026-11-24T11:30:00+00:00"


def test_header_shows_the_best_trials_seed_group_mean_and_std(tmp_path):
    exp = fabricate(tmp_path / "e", seeds=True)
    b = header.info(load_report_data(exp)).best
    assert (b.seed_group, b.n_seeds) == ("g3", 3)  # search-0000 is trial 7: group 7 // 2
    assert (b.val_miou_mean, b.val_miou_std) == (0.1851, 0.004)
    assert b.test_miou_mean == pytest.approx(0.1851 * 0.9) and b.test_miou_std == 0.005
    best = re.search(r'<span id="best-seed-group">(.*?)</span></dd>', section(write_report(exp).read_text(), "overview"))
    assert best and "seed group g3 over 3 seeds" in text(best.group(1))
    assert "0.1851 ± 0.0040" in text(best.group(1)) and "0.1666 ± 0.0050" in text(best.group(1))


def test_efficiency_info_series_in_finish_order(data):
    info = efficiency.info(data)
    s = info.series
    assert s.label == [t[0] for t in TRIALS]  # fabricate finishes trial i at 11:i
    assert s.cum_epochs == np.cumsum([t[6] for t in TRIALS]).tolist()
    # trial-hours weigh each epoch by what it cost (fabricate: trial i's epochs take 3 + i seconds), pruned included
    assert s.cum_trial_hours == pytest.approx(np.cumsum([t[6] * (3.0 + i) for i, t in enumerate(TRIALS)]) / 3600)
    best = [t[7] for t in TRIALS]
    running = [max(b for b in best[: i + 1] if b == b) for i in range(len(best))]
    assert [x for x, b in zip(s.best_so_far, best) if b == b] == [r for r, b in zip(running, best) if b == b]
    assert not info.gpu and s.cum_gpu_hours == [0.0] * len(TRIALS)
    assert [(t.status, t.trials, t.epochs) for t in info.totals] == [
        ("completed", 9, 380), ("pruned", 1, 4), ("failed", 1, 2)]
    skipped, share = info.pruning_saved
    assert skipped == 36 and share == pytest.approx(36 / (36 + 386))  # search-0001: 4 of 40 epochs


def test_leaderboard_info_rows_columns_and_seed_table(data, tmp_path):
    info = leaderboard.info(data)
    assert [r.label for r in info.rows][:3] == ["search-0000", "5b", "search-0003"]
    keys = [c.key for c in info.columns]
    assert keys[:2] == ["rank", "label"] and "lr" in keys and "iou_tvmonitor" in keys and keys[-1] == "error"
    assert "device" not in keys and "seed" not in keys  # run plumbing, not hyperparameters
    assert info.rows[0].values["best_val_miou"] == 0.1851 and info.rows[0].filters["kind"] == "searched"
    assert info.options["status"] == ["completed", "failed", "pruned"] and info.seed_rows == []
    seeded = leaderboard.info(load_report_data(fabricate(tmp_path / "e", seeds=True)))
    assert seeded.seed_rows[0].group == "g3" and seeded.seed_rows[0].val_miou_std == 0.004


def test_cost_info_front_and_curve_groups(data):
    info = cost.info(data)
    assert info.front.labels == ["baseline", "search-0000"]  # 5b ties search-0000's 400 s with a lower score
    assert info.pruned.labels == ["search-0001"] and {p.name for p in info.by_arch} == {
        "fcn", "fcn_dilated", "resnet34_fcn", "unet"}
    groups = curves.info(data).groups
    fixed = [f"t{i:04d}" for i in range(7)]
    assert groups["fixed trials"] == fixed and groups["pruned trials"] == ["t0008"]
    assert groups["fixed trials + top 5"] == fixed + ["t0007", "t0010", "t0008", "t0009"]  # all 4 searched, by rank
    assert len(groups["all trials"]) == len(TRIALS)


def test_assets_are_package_files_inlined_into_the_page(report):
    for name in ("report.css", "report.js", "error-hook.js"):
        body = asset(name)
        assert len(body) > 200 and body.split("\n", 1)[1] in report[1], name


@pytest.mark.parametrize(
    "case",
    [
        "one_trial",
        "no_fixed",
        "no_masks",
        "no_experiment_json",
        "empty_history",
        "all_nan",
        "empty_folder",
        "seeds",
    ],
)
def test_degenerate_inputs_still_render(tmp_path, case):
    kw = {
        "one_trial": dict(trials=TRIALS[7:8]),
        "no_fixed": dict(trials=TRIALS[7:]),
        "no_masks": dict(masks=()),
        "no_experiment_json": dict(meta=False),
        "empty_history": dict(history=False),
        "seeds": dict(seeds=True),
        "all_nan": dict(trials=[t[:7] + (float("nan"),) for t in TRIALS[7:]]),
    }.get(case, {})
    exp = tmp_path / "e"
    if case == "empty_folder":
        exp.mkdir()
    else:
        fabricate(exp, **kw)
    page = write_report(exp).read_text()
    assert "could not be built" not in page
    empty = {
        sid: 'class="empty"' in section(page, sid)
        for sid in ("table4", "gallery", "curves", "hyperparameters")
    }
    if case == "one_trial":
        assert empty["table4"] and empty["hyperparameters"] and not empty["gallery"]
    if case == "no_fixed":
        assert "No fixed trial" in section(page, "table4")
    if case == "no_masks":
        assert empty["gallery"] and "no masks/ folder" in section(page, "gallery")
    if case == "no_experiment_json":
        assert "experiment.json is missing" in section(page, "overview")
        assert "voc 2007 at 32x32 px" in text(section(page, "overview"))
    if case == "empty_history":
        assert "No per-epoch history" in section(page, "curves")
    if case == "empty_folder":
        assert "No trial has finished yet" in section(page, "leaderboard")
        assert all(empty.values())
    if case == "seeds":
        seeds = section(page, "leaderboard")
        assert "Seed-robust ranking" in seeds and "0.1851 ± 0.0040" in seeds


def test_cli_writes_the_report_and_never_imports_ray(tmp_path):
    exp = fabricate(tmp_path / "e", trials=TRIALS[:2], masks=())
    assert main([str(exp)]) == 0 and (exp / "report.html").is_file()
    assert main([str(tmp_path / "missing")]) == 2
    code = "import sys, search.report; assert 'ray' not in sys.modules, 'ray was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_report_renders_in_headless_chromium_without_js_errors(report, chromium):
    out, _ = report
    shot = ARTIFACTS / "report.png"
    res = render(out, screenshot=shot, window=(1400, 3000), budget_ms=8000)
    assert_page_ok(res)
    starts = sorted((res.dom.index(f'id="{fig}"'), fig) for fig in FIGURES)
    for (start, fig), (end, _) in zip(starts, starts[1:] + [(len(res.dom), None)]):
        assert 'class="main-svg"' in res.dom[start:end], f"{fig} did not render"  # plotly drew its SVG there
    assert shot.stat().st_size > 50_000
    (ARTIFACTS / "report.html").write_bytes(out.read_bytes())


@pytest.mark.parametrize("case", ["empty_folder", "one_trial"])
def test_thin_reports_render_without_js_errors(tmp_path, case, chromium):
    exp = tmp_path / "e"
    if case == "empty_folder":
        exp.mkdir()
    else:
        fabricate(exp, trials=TRIALS[7:8], meta=False)
    assert_page_ok(render(write_report(exp), budget_ms=5000))


def test_report_of_a_real_small_training_run(tiny_cfg, tmp_path):
    """Real trainings (tiny synthetic set, CPU) -> the search's own trial records and Parquet writer -> report.

    There is no search fixture to reuse yet, so this stands in for one: trial records as the driver writes them
    (`trials/<trial_id>.json`, search/records.py), tables by `search.tables.write_tables`.
    """
    from search.faults import _raiser
    from search.provenance import now_iso
    from search.records import final_status, record_path, write_json_atomic
    from search.tables import write_tables
    from seg.train import Trainer

    exp = tmp_path / "real"
    plans = [
        ("t_00000", "baseline", "fixed", {}, None),
        ("t_00001", "search-0001", "searched", {"lr": 3e-3}, None),
        ("t_00002", "search-0002", "searched", {"epochs": 3}, 1),  # stopped after 1 of 3 epochs: pruned
        ("t_00003", "search-0003", "searched", {}, None),  # raises at epoch 2 (a fault hook): failed
    ]
    for tid, name, kind, upd, stop in plans:
        cfg = tiny_cfg.model_copy(update={"width": 0.25, **upd})  # narrow: seconds on a CPU
        rec = dict(
            trial_id=tid,
            name=name,
            kind=kind,
            config=cfg.model_dump(mode="json"),
            history=[],
            started_at=now_iso(),
        )
        trainer = Trainer(cfg, hooks=[_raiser(2, "error")] if name == "search-0003" else ())
        try:
            for m in trainer.epochs():
                rec["history"].append(m)
                if stop and m["epoch"] >= stop:
                    break
            rec.update(final_status(rec))
        except Exception as e:
            rec.update(status="failed", error=f"{type(e).__name__}: {e}")
        trainer.save_masks(exp / "masks" / f"{tid}.npz")
        rec["finished_at"] = now_iso()
        write_json_atomic(record_path(exp, tid), rec)
    (exp / "experiment.json").write_text(json.dumps({"name": "real", "dataset": "voc", "image_size": 32}))
    write_tables(exp)
    page = write_report(exp).read_text()
    assert "could not be built" not in page
    counts = text(
        re.search(r'<span id="status-counts">(.*?)</span></dd>', section(page, "overview"), re.S).group(1)
    )
    assert "completed 2" in counts and "pruned 1" in counts and "failed 1" in counts
    assert re.search(
        r'<tr data-model="baseline">.*?0\.05486</span> · <span class="ours">0\.\d{5}', section(page, "table4")
    )
    assert section(page, "gallery").count('data-trial="') >= 2
    assert 'class="empty"' not in section(page, "curves")


INTERACT = """<script>
window.addEventListener('load', function () {
  var out = {}, table = document.getElementById('lb-table'), rows = function () {
    return Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return r.style.display !== 'none'; }); };
  var status = document.querySelector('[data-filter=status]');
  status.value = 'pruned'; status.dispatchEvent(new Event('change'));
  out.pruned = rows().map(function (r) { return r.cells[1].textContent; });
  status.value = ''; status.dispatchEvent(new Event('change'));
  var th = table.querySelectorAll('th')[5];  // val mIoU
  th.click(); th.click();  // descending, then ascending: the failed trial's blank sorts last both times
  out.ascending = rows().map(function (r) { return r.cells[1].textContent; });
  var iou = document.querySelector('[data-toggle=iou]');
  iou.checked = true; iou.dispatchEvent(new Event('change'));
  out.iou_shown = getComputedStyle(table.querySelector('td.iou')).display !== 'none';
  var sel = document.getElementById('curve-select'), gd = document.getElementById('fig-curves');
  sel.value = sel.options[sel.options.length - 1].value; sel.dispatchEvent(new Event('change'));
  out.visible = gd.data.filter(function (t) { return t.visible === true; }).map(function (t) { return t.meta; });
  document.documentElement.setAttribute('data-interact', JSON.stringify(out));
});
</script>"""


def test_leaderboard_and_curve_controls_work_in_chromium(report, tmp_path, chromium):
    page = tmp_path / "interact.html"
    page.write_text(report[1].replace("</body>", INTERACT + "</body>"))
    res = render(page, budget_ms=8000)
    assert_page_ok(res)
    dom = res.dom
    raw = re.search(r"data-interact=\"([^\"]*)\"", dom)
    assert raw, "the interaction script did not finish"
    out = json.loads(raw.group(1).replace("&quot;", '"'))
    assert out["pruned"] == ["search-0001"]
    assert out["ascending"][0] == "search-0001" and out["ascending"][-1] == "search-0002"
    assert out["ascending"][-2] == "search-0000" and out["iou_shown"]
    assert len(out["visible"]) == 4 and len(set(out["visible"])) == 1  # one trial, its four panels
