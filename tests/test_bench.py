"""bench.search: the derived-space writer, the epochs-to-target arithmetic, the reference estimate (fast), and one
end-to-end smoke of `python -m bench.search` at a tiny size (slow: real Ray, about a minute and a half on 2 cores).

    pytest tests/test_bench.py -m "not slow"     # seconds
    pytest tests/test_bench.py -m slow
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bench.derive import derive_space, scale_epochs
from bench.reference import reference_estimate
from bench.savings import efficiency_ratio, epochs_to_target, search_summary
from bench.search import format_table
from search.space import load_space

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------
# Derived spaces
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs, scale, want", [(20, 0.1, 2), (30, 0.1, 3), (50, 0.1, 5), (5, 0.1, 1),
                                                 (25, 0.1, 3), (8, 1.0, 8), (3, 0.01, 1)])
def test_scale_epochs_rounds_half_up_and_keeps_one(epochs, scale, want):
    assert scale_epochs(epochs, scale) == want


def test_derived_paper_space_is_valid_and_scaled(tmp_path):
    dst = derive_space(REPO / "spaces" / "paper.yaml", tmp_path / "out" / "p.yaml", name="bench-paper-t",
                       epochs_scale=0.1, image_size=64, data={"root": str(tmp_path / "voc")})
    space = load_space(dst)
    original = load_space(REPO / "spaces" / "paper.yaml")
    assert space.name == "bench-paper-t" and list(space.fixed) == list(original.fixed)
    assert {n: c.epochs for n, c in space.fixed.items()} == {
        n: scale_epochs(c.epochs, 0.1) for n, c in original.fixed.items()}
    assert {c.image_size for c in space.fixed.values()} == {64}
    assert {c.data_root for c in space.fixed.values()} == {str(tmp_path / "voc")}
    for n, c in space.fixed.items():  # nothing but epochs and the data changed
        keep = ("epochs", "image_size", "data_root")
        assert c.model_dump(exclude=set(keep)) == original.fixed[n].model_dump(exclude=set(keep)), n
    assert space.fixed["5b"].pretrained and space.includes == ()


def test_derived_quick_spaces_differ_only_in_the_scheduler(tmp_path):
    src = REPO / "spaces" / "quick.yaml"
    asha = load_space(derive_space(src, tmp_path / "a.yaml", name="qa", num_samples=3))
    none = load_space(derive_space(src, tmp_path / "n.yaml", name="qn", num_samples=3, scheduler="none"))
    assert asha.scheduler == load_space(src).scheduler and none.scheduler is None  # the source's ASHA, kept
    assert asha.budget.num_samples == none.budget.num_samples == 3
    a, n = asha.to_json(), none.to_json()
    assert {k for k in a if a[k] != n[k]} == {"name", "scheduler"}


def test_derived_space_scales_searched_epochs(tmp_path):
    space = load_space(derive_space(REPO / "spaces" / "quick.yaml", tmp_path / "q.yaml", name="q", epochs_scale=0.5))
    epochs = next(p for p in space.params if p.name == "epochs")
    assert epochs.values == (2, 5) and space.defaults.epochs == 4


# ---------------------------------------------------------------------------------------------------------------
# Epochs to target
# ---------------------------------------------------------------------------------------------------------------
def board(rows: list[tuple]) -> pd.DataFrame:
    """A hand-made leaderboard: (name, kind, status, epochs_run, best_val_miou, started_at, finished_at)."""
    cols = ["name", "kind", "status", "epochs_run", "best_val_miou", "started_at", "finished_at"]
    df = pd.DataFrame(rows, columns=cols)
    df["trial_id"] = [f"t{i:02d}" for i in range(len(df))]
    df["epochs_run"] = df["epochs_run"].astype("Int64")
    return df


T = "2026-11-24T10:00:{:02d}+00:00"
BOARD = board([  # rows deliberately not in finish order
    ("baseline", "fixed", "completed", 8, 0.30, T.format(0), T.format(5)),
    ("unet", "fixed", "completed", 8, 0.40, T.format(0), T.format(6)),
    ("search-0003", "searched", "completed", 6, 0.55, T.format(9), T.format(30)),  # reaches 0.40, finishes third
    ("search-0001", "searched", "pruned", 1, 0.10, T.format(7), T.format(8)),
    ("search-0002", "searched", "completed", 7, 0.39, T.format(7), T.format(20)),
    ("search-0004", "searched", "failed", 0, float("nan"), T.format(21), T.format(22)),  # failed, no score
    ("search-0005", "searched", "completed", 9, 0.70, T.format(23), T.format(40)),
    ("search-0006", "searched", "running", 2, 0.90, T.format(31), None),  # not finished: never counted
])


def test_epochs_to_target_counts_searched_trials_in_finish_order():
    r = epochs_to_target(BOARD, 0.40)
    # finish order: 0001 (1 epoch), 0002 (7), 0004 (0, failed), 0003 (6) -> reaches at 1 + 7 + 0 + 6 = 14
    assert r["reached"] and r["epochs_to_target"] == 14 and r["trials_to_target"] == 4
    assert r["first_trial_at_target"] == "search-0003"
    assert r["total_epochs"] == 1 + 7 + 0 + 6 + 9 and r["finished_trials"] == 5


def test_epochs_to_target_unreached_and_all_kinds():
    assert epochs_to_target(BOARD, 0.95) == {
        "target": 0.95, "reached": False, "epochs_to_target": None, "trials_to_target": None,
        "first_trial_at_target": None, "total_epochs": 23, "finished_trials": 5}
    # counting the fixed trials too: baseline (8) then unet (8) reaches 0.40 first
    r = epochs_to_target(BOARD, 0.40, kinds=("fixed", "searched"))
    assert r["epochs_to_target"] == 16 and r["first_trial_at_target"] == "unet"


def test_finish_ties_break_on_start_time():
    b = board([("a", "searched", "completed", 5, 0.9, T.format(3), T.format(10)),
               ("b", "searched", "pruned", 1, 0.1, T.format(1), T.format(10))])
    assert epochs_to_target(b, 0.5)["epochs_to_target"] == 6  # b started first, so it counts first


def test_search_summary_and_ratio():
    s = search_summary(BOARD, 0.40)
    assert s["best_fixed_val_miou"] == 0.40 and s["best_searched_val_miou"] == 0.90
    assert s["status_counts"] == {"completed": 3, "pruned": 1, "failed": 1, "running": 1}
    assert s["total_epochs_all_trials"] == 8 + 8 + 6 + 1 + 7 + 0 + 9 + 2
    assert s["search_pass_seconds"] == 40 - 7
    unpruned = {"reached": True, "epochs_to_target": 42}
    assert efficiency_ratio(s, unpruned) == pytest.approx(14 / 42)
    assert efficiency_ratio(s, {"reached": False, "epochs_to_target": None}) is None


def test_reference_estimate_arithmetic():
    rates = {"fcn": {"train_images_per_s": 10.0, "eval_images_per_s": 40.0}}
    est = reference_estimate({"baseline": {"key": "fcn", "epochs": 2, "batch_size": 16}}, rates,
                             {"train": 209, "val": 213, "test": 210})
    b = est["baseline"]
    assert b["train_seconds"] == pytest.approx(2 * 208 / 10.0)  # 13 full batches of 16 per epoch
    assert b["eval_seconds"] == pytest.approx((2 * 213 + 210) / 40.0)
    assert b["seconds"] == pytest.approx(b["train_seconds"] + b["eval_seconds"])


def test_format_table_handles_missing_values():
    report = {"date": "d", "device": "cpu", "torch": "t", "ray": "r", "git_commit": "g",
              "efficiency": {"space": "q.yaml", "num_samples": 2, "sampler_seed": 0,
                             "target": {"val_miou": None}, "ratio_epochs_to_target": None, "goal_ratio": 1 / 3,
                             "meets_goal": None, "ratio_total_epochs": None, "ratio_wall_seconds": 1.0,
                             "runs": {"asha": {"reached": False, "wall_seconds": 3.0},
                                      "unpruned": {"reached": False, "wall_seconds": 3.0}}}}
    text = format_table(report)
    assert "n/a" in text and "NOT met" not in text


# ---------------------------------------------------------------------------------------------------------------
# End to end, tiny
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_search_smoke(tmp_path, synthetic_root):
    """Both parts at 32 px: a two-trial 'paper' (one needs ImageNet weights: failed offline, or trained if the
    weights are present) and a tiny ASHA vs unpruned search; checks the JSON the README quotes."""
    paper = tmp_path / "paper.yaml"
    paper.write_text(textwrap.dedent("""
        name: tiny-paper
        data: {dataset: voc2007, root: unused, image_size: 32}
        defaults: {arch: fcn, width: 0.125, epochs: 10, batch_size: 8, num_masks: 1}
        fixed_trials:
          baseline: {}
          5b: {arch: resnet34_fcn, pretrained: true, epochs: 10, pretrained_path: /nonexistent/resnet34.pth}
        budget: {num_samples: 0, max_concurrent: 1}
        scheduler: none
        resources: {cpus: 1, gpus: 0}
    """))
    quick = tmp_path / "quick.yaml"
    quick.write_text(textwrap.dedent(f"""
        name: tiny-quick
        data: {{dataset: voc2007, root: {synthetic_root}, image_size: 32}}
        defaults: {{arch: fcn, width: 0.125, epochs: 2, batch_size: 8, num_masks: 1}}
        params:
          lr: {{loguniform: [1.0e-4, 1.0e-2]}}
          epochs: {{int: [1, 3]}}
        fixed_trials:
          baseline: {{}}
        budget: {{num_samples: 9, max_concurrent: 2}}
        scheduler: {{grace_period: 1, reduction_factor: 2}}
        sampler: {{n_startup_trials: 1}}
        resources: {{cpus: 1, gpus: 0}}
    """))
    out = tmp_path / "bench" / "search.json"
    cmd = [sys.executable, "-m", "bench.search", "--out", str(out), "--paper-space", str(paper),
           "--data-root", str(synthetic_root), "--image-size", "32", "--epochs-scale", "0.2",
           "--ref-steps", "1", "--ref-warmup", "0", "--quick-space", str(quick), "--num-samples", "2",
           "--num-cpus", "2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    for key in ("date", "device", "torch", "ray", "git_commit", "defaults", "paper", "efficiency"):
        assert key in r, key
    p = r["paper"]
    assert p["image_size"] == 32 and p["epochs_scale"] == 0.2 and p["reduced"] is True
    assert [t["epochs"] for t in p["trials"]] == [2, 2]
    assert p["trials"][0]["status"] == "completed" and p["trials"][1]["status"] == "failed"
    assert p["n_completed"] == 1 and p["n_failed"] == 1 and p["failed"] == ["5b"]
    assert p["wall_seconds"] > 0 and p["returncode"] == 0
    assert p["reference"]["estimate"] is True and "ESTIMATE" in p["reference"]["method"]
    assert p["reference"]["total_seconds_completed_trials"] < p["reference"]["total_seconds_all_trials"]
    assert p["speedup_vs_reference_completed_trials"] > 0
    assert Path(p["derived_space"]).is_file() and Path(p["experiment"], "leaderboard.parquet").is_file()
    e = r["efficiency"]
    assert e["num_samples"] == 2 and set(e["runs"]) == {"asha", "unpruned"}
    assert e["target"]["val_miou"] is not None and not math.isnan(e["target"]["val_miou"])
    for run in e["runs"].values():
        assert run["returncode"] == 0 and run["finished_trials"] == 2 and run["wall_seconds"] > 0
        assert isinstance(run["reached"], bool) and run["total_epochs"] >= 2
    assert e["runs"]["unpruned"]["status_counts"] == {"completed": 2}
    assert "ratio_epochs_to_target" in e and e["goal_ratio"] == pytest.approx(1 / 3)
    assert "paper.yaml end to end" in proc.stdout and "ASHA / unpruned" in proc.stdout
