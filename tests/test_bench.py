"""bench.search: the derived-space writer, the reference estimate (fast), and one end-to-end smoke of
`python -m bench.search` at a tiny size (slow: real Ray).

    pytest tests/test_bench.py -m "not slow"     # seconds
    pytest tests/test_bench.py -m slow
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.derive import derive_space, scale_epochs
from bench.reference import reference_estimate
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


def test_derived_space_scales_searched_epochs(tmp_path):
    space = load_space(derive_space(REPO / "spaces" / "quick.yaml", tmp_path / "q.yaml", name="q", epochs_scale=0.5))
    epochs = next(p for p in space.params if p.name == "epochs")
    assert epochs.values == (2, 5) and space.defaults.epochs == 4


def test_reference_estimate_arithmetic():
    rates = {"fcn": {"train_images_per_s": 10.0, "eval_images_per_s": 40.0}}
    est = reference_estimate({"baseline": {"key": "fcn", "epochs": 2, "batch_size": 16}}, rates,
                             {"train": 209, "val": 213, "test": 210})
    b = est["baseline"]
    assert b["train_seconds"] == pytest.approx(2 * 208 / 10.0)  # 13 full batches of 16 per epoch
    assert b["eval_seconds"] == pytest.approx((2 * 213 + 210) / 40.0)
    assert b["seconds"] == pytest.approx(b["train_seconds"] + b["eval_seconds"])


def test_format_table_handles_missing_values():
    report = {"date": "d", "device": "cpu", "torch": "t", "ray": "r", "git_commit": "g", "load_average_at_start": None,
              "paper": {"image_size": 32, "epochs_scale": 0.1, "data": "synthetic", "reduced": True,
                        "trials": [{"name": "5b", "arch": "resnet34_fcn", "epochs": 2, "status": "failed",
                                    "best_val_miou": None, "wall_seconds": None}],
                        "wall_seconds": 3.0, "n_completed": 0, "n_failed": 1, "failed": ["5b"]}}
    text = format_table(report)
    assert "5b" in text and " - " in text and "REDUCED" in text and "reference loop" not in text


# ---------------------------------------------------------------------------------------------------------------
# End to end, tiny
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_search_smoke(tmp_path, synthetic_root):
    """A two-trial 'paper' at 32 px (one needs ImageNet weights that do not exist: failed at once, never trained
    from scratch); checks the JSON the README quotes."""
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
    out = tmp_path / "bench" / "search.json"
    cmd = [sys.executable, "-m", "bench.search", "--out", str(out), "--paper-space", str(paper),
           "--data-root", str(synthetic_root), "--image-size", "32", "--epochs-scale", "0.2",
           "--ref-steps", "1", "--ref-warmup", "0", "--num-cpus", "2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert proc.returncode == 0 and "efficiency" not in r, proc.stderr[-3000:]
    for key in ("date", "device", "torch", "ray", "git_commit", "defaults", "paper"):
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
    assert "paper.yaml end to end" in proc.stdout
