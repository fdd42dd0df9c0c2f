"""A worker node of a two-node `ray.cluster_utils.Cluster` disappears while its trials run: they are retried from
their last checkpoint on the node that replaces it, and the search completes."""
from __future__ import annotations

import pytest

from faultlib import check_complete, cli, epochs_of, kill_group, records, snapshot, space_yaml, start, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def test_trials_on_a_removed_node_resume_from_their_checkpoint(tmp_path, synthetic_root, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    release = tmp_path / "release"
    # the nodes' raylets, and so the trial processes, inherit the test process's environment
    monkeypatch.setenv("SEGTUNE_FAULT", f"hold_after_epoch:2:{release}")
    space = space_yaml(tmp_path, synthetic_root, """
        fixed_trials: {a: {}, b: {lr: 0.003}}
        budget: {num_samples: 0, max_concurrent: 2, max_failures: 2}
        scheduler: none
        """, name="nodes", epochs=3)
    results = tmp_path / "results"
    exp, log = results / "nodes", tmp_path / "driver.log"
    # the head node has no CPUs, so both trials run on the worker node that is then removed
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    driver = None
    try:
        doomed = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        driver = start(cli(space, results, "--address", cluster.address), log,
                       SEGTUNE_FAULT=f"hold_after_epoch:2:{release}")
        wait_for(lambda: len(list(tmp_path.glob("release.held-*"))) == 2, 240, "both trials held after epoch 2",
                 driver, log)
        wait_for(lambda: sorted(len(epochs_of(r)) for r in records(exp).values()) == [2, 2], 60,
                 "the driver recorded epoch 2 of both", driver, log)
        before = {t: snapshot(r) for t, r in records(exp).items()}
        lost_node = {r["node_id"] for r in records(exp).values()}
        assert lost_node == {doomed.node_id}

        cluster.remove_node(doomed)  # kills the node's raylet and the held trial processes with it
        release.touch()
        cluster.add_node(num_cpus=2)
        assert wait_for(lambda: driver.poll() is not None, 300, "the search to finish", None, log)
        assert driver.returncode == 0, log.read_text()[-4000:]
    finally:
        if driver is not None:
            kill_group(driver)
        ray.shutdown()
        cluster.shutdown()

    board, _ = check_complete(exp, 2)
    assert (board["status"] == "completed").all() and (board["epochs_run"] == 3).all()
    assert (board["num_failures"] >= 1).all(), board[["name", "num_failures"]]  # each was retried
    after = records(exp)
    for tid, snap in before.items():
        assert after[tid]["node_id"] not in lost_node  # finished on the new node
        assert after[tid]["started_at"] == snap["started_at"]
        # resumed from a checkpoint, not from scratch: epoch 1 is the row reported before the node died
        assert after[tid]["history"][0] == snap["history"][1]
