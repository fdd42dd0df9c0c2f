"""End to end with real Ray Tune and real Optuna on tiny synthetic data (32 px, a few epochs, 1 CPU per trial).

    pytest -m slow tests/test_search.py        # about 4-5 minutes on 2 cores
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import search_args, space_yaml
from search.tables import HISTORY_SCHEMA, LEADERBOARD_SCHEMA
from seg.config import TrainConfig

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
# sgd at lr 10 with momentum 0.99 and weight decay 1: the loss reaches NaN within 3 epochs on the tiny data
DIVERGE = "{optimizer: sgd, lr: 10.0, momentum: 0.99, weight_decay: 1.0, epochs: 4}"


def run_cli(space: Path, results: Path, *extra: str) -> int:
    from search.run import main

    return main(search_args(space, results, *extra))


def check_schema(df: pd.DataFrame, schema: dict) -> None:
    assert list(df.columns) == list(schema)
    for col, (dtype, _) in schema.items():
        assert str(df[col].dtype) == dtype, (col, df[col].dtype, dtype)


def test_schema_constants_cover_the_design():
    assert set(TrainConfig.model_fields) <= set(LEADERBOARD_SCHEMA)
    design = ("trial_id name kind status pruned_at_epoch error epochs_run best_epoch best_val_miou best_val_pixel_acc "
              "test_miou test_pixel_acc train_loss val_loss wall_seconds gpu_seconds images_per_s compile_seconds "
              "seed git_commit versions config_json host device_name started_at finished_at").split()
    assert set(design) <= set(LEADERBOARD_SCHEMA)
    assert sum(c.startswith("iou_") for c in LEADERBOARD_SCHEMA) == 21
    assert all(isinstance(desc, str) and desc for _, desc in LEADERBOARD_SCHEMA.values())
    assert {"trial_id", "name", "epoch", "val_miou", "best_val_miou", "test_miou", "lr"} <= set(HISTORY_SCHEMA)


# ---------------------------------------------------------------------------------------------------------------
# A small search: fixed trials first (one diverges, one crashes once), then TPE + ASHA
# ---------------------------------------------------------------------------------------------------------------
def test_search_end_to_end(tmp_path, synthetic_root, monkeypatch):
    space = space_yaml(tmp_path, synthetic_root, f"""
        params:
          lr: {{loguniform: [1.0e-4, 1.0e-1]}}
          activation: {{choice: [relu, tanh]}}
          arch: {{choice: [fcn, unet]}}
          width: {{choice: [0.125, 0.25], when: {{arch: unet}}}}
        fixed_trials:
          base: {{}}
          crash: {{}}                      # SEGTUNE_FAULT below: raises once at epoch 2; the retry continues
          diverge: {DIVERGE}
          noweights: {{arch: resnet34_fcn, pretrained: true, pretrained_path: {tmp_path / 'missing-resnet34.pth'}}}
        budget: {{num_samples: 6, max_concurrent: 2, max_failures: 1}}
        scheduler: {{grace_period: 1, reduction_factor: 2}}
        sampler: {{n_startup_trials: 3}}
        tracking: {{mlflow: {{tracking_uri: {tmp_path / 'mlflow.db'}, experiment_name: e2e}}}}
        """)
    results = tmp_path / "results"
    monkeypatch.setenv("SEGTUNE_FAULT", "fail_at_epoch:crash:2")  # Ray workers inherit the driver's environment
    # noweights: refused up front by default (tests/test_bad_inputs.py); with the flag it is one failed trial
    assert run_cli(space, results, "--allow-missing-weights") == 0
    exp = results / "t"

    board = pd.read_parquet(exp / "leaderboard.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    check_schema(board, LEADERBOARD_SCHEMA)
    check_schema(history, HISTORY_SCHEMA)
    assert len(board) == 4 + 6 and board["trial_id"].is_unique
    assert board["objective"].dropna().is_monotonic_decreasing  # ranked on what the search optimised
    rows = board.set_index("name")

    # fixed trials: all epochs, never pruned; the crash was retried from its checkpoint, each epoch once
    for name in ("base", "crash"):
        assert rows.loc[name, "kind"] == "fixed" and rows.loc[name, "status"] == "completed"
        assert rows.loc[name, "epochs_run"] == 3 and pd.isna(rows.loc[name, "error"])
    assert rows.loc["crash", "num_failures"] == 1
    crash_epochs = history.loc[history["name"] == "crash", "epoch"].tolist()
    assert crash_epochs == [1, 2, 3]

    # the diverging trial is failed with the trainer's message, and Optuna was told a finite score
    div = rows.loc["diverge"]
    assert div["status"] == "failed" and "NonFiniteLossError" in div["error"] and "nan" in div["error"]
    assert div["objective"] == 0.0 and div["epochs_run"] < 4
    # missing pretrained weights: failed at once with the loader's message, not retried, never trained from scratch
    nw = rows.loc["noweights"]
    assert nw["status"] == "failed" and nw["error"].startswith("PretrainedWeightsError")
    assert nw["num_failures"] == 0 and nw["epochs_run"] == 0

    # searched trials: ASHA pruned at least one, recorded as pruned (not completed) at the epoch it stopped
    searched = board[board["kind"] == "searched"]
    assert len(searched) == 6 and set(searched["status"]) <= {"completed", "pruned"}
    pruned = searched[searched["status"] == "pruned"]
    assert len(pruned) >= 1, searched[["name", "status", "epochs_run", "best_val_miou"]]
    assert (pruned["pruned_at_epoch"] == pruned["epochs_run"]).all() and (pruned["epochs_run"] < pruned["epochs"]).all()
    assert pruned["error"].isna().all()
    assert searched["name"].str.fullmatch(r"search-\d{4}").all() and searched["name"].is_unique
    # the condition held: width varied only for unet
    assert (searched.loc[searched["arch"] == "fcn", "width"] == 0.25).all()

    # provenance and placement on every trained row
    trained = board[board["epochs_run"] > 0]
    assert trained["device_name"].str.startswith("cpu").all() and trained["host"].notna().all()
    for row in trained.itertuples():  # config_json is the trial's own complete config, the one its columns show
        cfg = json.loads(row.config_json)
        assert set(cfg) == set(TrainConfig.model_fields), row.name
        resolved = TrainConfig(**cfg)
        assert (resolved.arch, resolved.lr, resolved.activation, resolved.width, resolved.epochs) == (
            row.arch, row.lr, row.activation, row.width, row.epochs), row.name
    assert (board["versions"].map(json.loads).map(lambda v: "ray" in v and "optuna" in v)).all()
    assert len(history) == trained["epochs_run"].sum()

    # masks of the best epoch per trial
    for tid in trained["trial_id"]:
        with np.load(exp / "masks" / f"{tid}.npz") as m:
            assert m["pred"].shape == m["gt"].shape == (2, 32, 32) and m["images"].shape == (2, 32, 32, 3)

    # Optuna's study, opened from its journal the way optuna-dashboard opens it: the fixed trials seeded it
    # (diverge as 0.0; noweights says nothing about the params and is left out), then every searched trial was
    # told its outcome by Optuna's pruning protocol: each epoch's val_miou an intermediate value, a pruned trial
    # PRUNED, a completed one COMPLETE with the objective the leaderboard records (its best_val_miou)
    import optuna

    journal = optuna.storages.journal.JournalFileBackend(str(exp / "optuna-journal.log"))
    study = optuna.load_study(study_name="segtune", storage=optuna.storages.JournalStorage(journal))
    assert len(study.trials) == 3 + 6
    assert 0.0 in [t.value for t in study.trials if t.user_attrs.get("segtune_source") == "fixed trial"]
    by_number = {t.number: t for t in study.trials}
    for _, row in searched.iterrows():
        rec = json.loads((exp / "trials" / f"{row['trial_id']}.json").read_text())
        ot = by_number[rec["optuna_trial"]]
        # the default metric val_miou_avg5: each epoch's mean of the last 5 val mIoUs, the best such mean at the end
        vals = [h["val_miou"] for h in rec["history"]]
        assert ot.intermediate_values == {
            h["epoch"]: pytest.approx(np.mean(vals[max(0, i - 4):i + 1])) for i, h in enumerate(rec["history"])}
        if row["status"] == "pruned":
            assert ot.state.name == "PRUNED" and ot.last_step == row["pruned_at_epoch"], row["name"]
        else:
            assert ot.state.name == "COMPLETE" and ot.value == pytest.approx(row["max_val_miou_avg5"]), row["name"]
            assert ot.value == pytest.approx(row["objective"]) and len(vals) < 5
            assert ot.value == pytest.approx(np.mean(vals))  # fewer than 5 epochs: the mean of them all
    assert {t.state.name for t in study.trials} == {"COMPLETE", "PRUNED"}
    # optuna-dashboard, a real client of the journal, has data for its learning-curve and pruning views
    dashboard = dashboard_study(optuna.storages.JournalStorage(journal))
    assert {t["state"] for t in dashboard["trials"]} == {"Complete", "Pruned"}
    shown = {t["number"]: len(t["intermediate_values"]) for t in dashboard["trials"]}
    for _, row in searched.iterrows():
        rec = json.loads((exp / "trials" / f"{row['trial_id']}.json").read_text())
        assert shown[rec["optuna_trial"]] == row["epochs_run"], row["name"]

    exp_json = json.loads((exp / "experiment.json").read_text())
    assert exp_json["passes"] == {"fixed": "done", "search": "done"} and exp_json["finished_at"]
    assert exp_json["split_sizes"] == {"train": 24, "val": 12, "test": 12}

    # MLflow (tracking.mlflow): one run per trial, its params, and every epoch's metrics
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id], max_results=100)
    assert len(runs) == len(board)
    by_name = {r.info.run_name: r for r in runs}  # MLflow runs are named after the Tune trial folders
    for _, row in board[board["status"].isin(["completed", "pruned"])].iterrows():
        rec = json.loads((exp / "trials" / f"{row['trial_id']}.json").read_text())
        r = by_name[Path(rec["tune_trials"][-1]["dir"]).name]
        assert len(client.get_metric_history(r.info.run_id, "val_miou")) == row["epochs_run"], row["name"]
        assert any(k.endswith("lr") and float(v) == pytest.approx(row["lr"]) for k, v in r.data.params.items())

    # regenerable from the folder alone
    before = board.sort_values("trial_id").reset_index(drop=True)
    for p in ("leaderboard.parquet", "history.parquet"):
        (exp / p).unlink()
    out = subprocess.run([sys.executable, "-m", "search.leaderboard", str(exp)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    after = pd.read_parquet(exp / "leaderboard.parquet").sort_values("trial_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


# ---------------------------------------------------------------------------------------------------------------
# Two nodes, fractional GPUs
# ---------------------------------------------------------------------------------------------------------------
def test_two_node_cluster_with_fractional_gpus(tmp_path, synthetic_root, monkeypatch):
    """Each node declares one (fake) GPU; four trials at 0.5 GPU each must spread over both nodes, two per GPU.
    The trainer uses device: cpu, so nothing touches CUDA. Then, on the same cluster joined with `--address auto`
    (RAY_ADDRESS names this test's cluster, so auto cannot find another one on a shared machine), a search whose
    data no node has: its trial fails with the data error naming the node it ran on."""
    import ray
    from ray.cluster_utils import Cluster

    space = space_yaml(tmp_path, synthetic_root, """
        fixed_trials: {a: {seed: 1}, b: {seed: 2}, c: {seed: 3}, d: {seed: 4}}
        budget: {num_samples: 0, max_concurrent: 4}
        scheduler: none
        """, name="cluster")
    text = space.read_text().replace("resources: {cpus: 1, gpus: 0}", "resources: {cpus: 1, gpus: 0.5}")
    space.write_text(text.replace("epochs: 3", "epochs: 4"))
    # joining a cluster, the driver does not open the data: a trial on a node without it fails naming that node
    lost = space_yaml(tmp_path, tmp_path / "nowhere", "fixed_trials: {lost: {}}\nbudget: {num_samples: 0}\n",
                      name="lost")
    # Tiny trials could finish before the last one is placed and let it reuse a freed node: each trial holds after
    # epoch 1 until all four are held, so all four run at once and must take both nodes. Set before the cluster
    # starts: its workers inherit the environment of the nodes, not the driver's.
    release = tmp_path / "release"
    monkeypatch.setenv("SEGTUNE_FAULT", f"hold_after_epoch:1:{release}")
    all_held = threading.Event()

    def release_when_all_four_are_held() -> None:
        while not all_held.is_set() and not release.exists():
            if len(list(tmp_path.glob("release.held-*"))) == 4:
                all_held.set()
            all_held.wait(0.05)
        release.touch()

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})
    releaser = threading.Thread(target=release_when_all_four_are_held, daemon=True)
    try:
        cluster.add_node(num_cpus=2, num_gpus=1)
        cluster.wait_for_nodes()
        releaser.start()
        assert run_cli(space, tmp_path / "results", "--address", cluster.address) == 0
        assert all_held.is_set(), "the four trials were never held at once"
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)  # what `ray start` users export; auto reads it first
        assert run_cli(lost, tmp_path / "results", "--address", "auto") == 0
    finally:
        release.touch()  # never leave the releaser (or a held trial) waiting
        ray.shutdown()
        cluster.shutdown()
    board = pd.read_parquet(tmp_path / "results" / "cluster" / "leaderboard.parquet")
    assert (board["status"] == "completed").all() and len(board) == 4
    assert board["node_id"].nunique() == 2, board[["name", "node_id"]]
    assert (board["gpu_fraction"] == 0.5).all()
    assert board["gpu_ids"].map(lambda s: len(s.split(","))).eq(1).all(), board["gpu_ids"]
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "cluster" / "trials").glob("*.json")]
    assert all(r["assigned_gpus"] == 0.5 for r in records), [r.get("assigned_gpus") for r in records]
    assert all(r["cuda_visible_devices"] == r["gpu_ids"] for r in records)
    # both trials of a node share its one GPU
    per_node = board.groupby("node_id")["gpu_ids"].agg(lambda s: sorted(set(s)))
    assert per_node.map(len).eq(1).all()

    (row,) = pd.read_parquet(tmp_path / "results" / "lost" / "leaderboard.parquet").itertuples()
    assert row.status == "failed" and row.epochs_run == 0, row.error
    assert row.node_id in set(board["node_id"])  # auto joined this test's cluster, not a Ray of its own
    assert json.loads((tmp_path / "results" / "lost" / "experiment.json").read_text())["ray_address"] == "auto"
    assert row.error.startswith(f"DataError: on node {row.host} (Ray node {row.node_id[:12]})"), row.error
    assert "does not exist" in row.error and f"Every node must see the data at {tmp_path / 'nowhere'}" in row.error


def dashboard_study(storage) -> dict:
    """optuna-dashboard's JSON for the one study in `storage`, from its WSGI app in-process (no server, no port)."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    app = wsgi(storage)

    def get(path: str) -> dict:
        environ: dict = {"PATH_INFO": path, "QUERY_STRING": "after=0"}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:300])
        return json.loads(body)

    (study,) = get("/api/studies")["study_summaries"]
    return get(f"/api/studies/{study['study_id']}")
