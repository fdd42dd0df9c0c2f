"""bench.curves: the learning-curve table's build command on a tiny synthetic experiment (real Ray, synthetic
trials with no model): the table has the documented schema, the records snapshot restores a lost results folder
and the same command resumes from it without training anything again."""
from __future__ import annotations

import json
import shutil
import textwrap

import pandas as pd
import pytest

from bench import curves

pytestmark = pytest.mark.slow

SPACE = """
name: curves-tiny
data: {dataset: synthetic, root: data/synthetic, image_size: 32}
defaults: {epochs: 4, device: cpu, num_masks: 0}
params:
  arch: {choice: [fcn, unet]}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
fixed_trials: {baseline: {epochs: 3}}
budget: {num_samples: 3, max_concurrent: 2, max_failures: 0}
scheduler: none
sampler: {kind: random}
resources: {cpus: 0.5, gpus: 0}
seed: 0
"""


def test_build_exports_the_documented_table_and_resumes_from_its_snapshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "curves_tiny.yaml"
    space.write_text(textwrap.dedent(SPACE))
    results, data = tmp_path / "results", tmp_path / "data-dir"
    argv = ["build", "--space", str(space), "--results", str(results), "--data-dir", str(data), "--",
            "--synthetic-trials", "--num-cpus", "2"]
    assert curves.main(argv) == 0

    table = pd.read_parquet(curves.table_path("curves-tiny", data))
    meta = json.loads(curves.table_path("curves-tiny", data).with_suffix(".json").read_text())
    assert list(table.columns) == [*curves.CURVES_SCHEMA, "arch", "width", "skips", "epochs", "seed", "lr"]
    assert {c: str(table[c].dtype) for c in curves.CURVES_SCHEMA} == {
        c: {"Int64": "Int64", "float64": "float64", "string": "string"}[d] for c, (d, _) in curves.CURVES_SCHEMA.items()}
    assert meta["schema"] == {c: d for c, (_, d) in curves.CURVES_SCHEMA.items()}
    assert meta["trials"] == {"searched": 3, "fixed": 1} and meta["trials_complete"] == 4 and meta["git_commit"]
    # every epoch of every trial, unpruned; test_miou belongs to the best-by-validation epoch so far
    per_trial = table.groupby("trial_id").agg(epochs=("epochs", "first"), rows=("epoch", "size"), last=("epoch", "max"))
    assert (per_trial["rows"] == per_trial["epochs"]).all() and (per_trial["last"] == per_trial["epochs"]).all()
    for _, t in table.groupby("trial_id"):
        assert (t["best_val_miou"] == t["val_miou"].cummax()).all()
        best = t.set_index("epoch").loc[t["best_epoch"].to_numpy()]
        assert (best["val_miou"].to_numpy() == t["best_val_miou"].to_numpy()).all()

    # a fresh clone has only the snapshot: the same command restores it and trains nothing again
    snap_records = sorted(p.name for p in (data / "curves-tiny" / "trials").glob("*.json"))
    assert len(snap_records) == 4
    shutil.rmtree(results)
    assert curves.main(argv) == 0
    again = pd.read_parquet(curves.table_path("curves-tiny", data))
    pd.testing.assert_frame_equal(again, table)
    exp = json.loads((results / "curves-tiny" / "experiment.json").read_text())
    assert exp["passes"] == {"fixed": "done", "search": "done"} and len(exp["resumed_at"]) == 1


def test_export_refuses_a_folder_that_is_not_an_experiment(tmp_path, capsys):
    assert curves.main(["export", str(tmp_path), "--out", str(tmp_path / "t.parquet")]) == 2
    assert "is not a segtune experiment folder: it is empty" in capsys.readouterr().err
