"""A driver crash changes nothing that was already decided (issue: reliability).

One search (2 fixed trials, 6 searched under ASHA, one seed rerun) is SIGKILLed, whole process group, at five
moments, each by a fault hook right after the driver recorded and printed an event (search/faults.py kill_after):
  1. right after the last fixed trial completed (before the pass was marked done);
  2. while two searched trials are running (the first held after epoch 1, the second just started);
  3. right after a searched trial completed;
  4. right after ASHA pruned a trial (before Tune could save its own state);
  5. in the seed pass, right after its rerun started;
then the same command runs to the end. Each run arms exactly one moment and must die by it: a moment the search
did not offer fails the test, so every run covers what it names. The order puts the moments that need the most
of the search still to come first. After every kill, every decision printed so far must stand at the end (status,
pruned_at_epoch, best metrics, and not one more epoch trained); the searched trials are exactly
search-0001..search-0006 with the configurations they had before each crash; Optuna was told each outcome once.
"""
from __future__ import annotations

import re

import optuna
import pytest

from faultlib import Budget, check_complete, cli, epochs_of, records, run, space_yaml

TIMEOUT_S = 900
pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S)]

N_SEARCHED = 6
BODY = f"""
    params:
      lr: {{loguniform: [1.0e-4, 3.0e-2]}}
      activation: {{choice: [relu, tanh]}}
    fixed_trials: {{a: {{}}, b: {{lr: 0.003}}}}
    budget: {{num_samples: {N_SEARCHED}, max_concurrent: 2, max_failures: 1}}
    scheduler: {{grace_period: 1, reduction_factor: 2}}
    sampler: {{n_startup_trials: 2}}
    seeds: {{top_k: 1, seeds: [1]}}
    """
# One per run, each must happen. Tiny trials can finish before Tune starts the next one, so the order is what makes
# each moment certain: the searched trials are held after epoch 1 (run 2) until the second has started, so nothing
# has reached ASHA's last rung before run 3; there the first trial to reach it is never cut (ASHA stops only
# below the rung's recorded values) and completes. The fixed pass ends in run 1 so that run 2's hold meets only
# searched trials.
HOLD = "hold_after_epoch:1:{release}"
KILLS = [
    "kill_after:fixed:completed:2",
    HOLD + ";kill_after:search:start:2",
    "kill_after:search:completed:1",
    "kill_after:search:pruned:1",
    "kill_after:seeds:start:1",
]
ANNOUNCED = re.compile(r"\[segtune\] (\S+) \((\w+)\) (completed \d+ epochs|pruned by ASHA after epoch \d+|FAILED)")


def decision(rec: dict) -> dict:
    last = rec["history"][-1] if rec.get("history") else {}
    return {"status": rec["status"], "pruned_at_epoch": rec.get("pruned_at_epoch"), "epochs": epochs_of(rec),
            "best_val_miou": last.get("best_val_miou"), "test_miou": last.get("test_miou"),
            "history": rec.get("history")}


def test_every_decision_survives_driver_kills(tmp_path, synthetic_root):
    space = space_yaml(tmp_path, synthetic_root, BODY, name="d", epochs=3)
    results = tmp_path / "results"
    exp, cmd = results / "d", cli(space, results)
    decided: dict[str, dict] = {}  # trial name -> its decision, as recorded when it was announced
    configs: dict[str, dict] = {}  # trial name -> its config as first recorded
    budget = Budget(TIMEOUT_S - 60)
    for fault in KILLS:
        fault = fault.format(release=tmp_path / "never-released")
        event = fault.rpartition(";")[2].split(":")[2]
        out = run(cmd, timeout=budget.left(), SEGTUNE_FAULT=fault)
        log = out.stdout + out.stderr
        # the armed moment happened: the driver killed itself there (rc 0 means the search never offered it)
        assert out.returncode == -9, f"{fault}: the run ended with {out.returncode}, not killed there\n{log[-3000:]}"
        if event in ("pruned", "completed"):  # the announcement the kill followed is the run's last one
            last = ANNOUNCED.findall(out.stdout)[-1]
            assert last[2].startswith("pruned" if event == "pruned" else "completed"), (fault, last)
        recs = {r["name"]: r for r in records(exp).values()}
        for name, _, _ in ANNOUNCED.findall(out.stdout):  # printed before the kill: recorded as printed
            assert recs[name]["status"] in ("completed", "pruned", "failed"), (name, recs[name]["status"])
            decided.setdefault(name, decision(recs[name]))
        for name, rec in recs.items():
            configs.setdefault(name, rec["config"])
    assert any("pruned" in d["status"] for d in decided.values()), decided

    out = run(cmd, timeout=budget.left())
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    board, history = check_complete(exp, 2 + N_SEARCHED + 1)
    recs = {r["name"]: r for r in records(exp).values()}

    # every decision announced before a kill stands, and no decided trial trained another epoch
    for name, before in decided.items():
        assert decision(recs[name]) == before, name
    # no names skipped, none added; each trial kept the configuration it had before the crashes
    searched = sorted(board.loc[board["kind"] == "searched", "name"])
    assert searched == [f"search-{i:04d}" for i in range(1, N_SEARCHED + 1)]
    assert set(board.loc[board["kind"] == "fixed", "name"]) == {"a", "b"}
    assert (board["kind"] == "seed").sum() == 1
    for name, cfg in configs.items():
        assert recs[name]["config"] == cfg, name
    # a resumed trial kept its id and history: each epoch once, from 1 (check_complete) under one trial id
    resumed = [r for r in recs.values() if len(r.get("tune_trials", [])) > 1]
    assert resumed, "no trial was running at a kill"
    for r in resumed:
        assert epochs_of(r) == list(range(1, r["config"]["epochs"] + 1)) or r["status"] == "pruned"

    # Optuna was told every searched outcome as recorded: PRUNED with its epochs, or COMPLETE with the objective
    journal = optuna.storages.journal.JournalFileBackend(str(exp / "optuna-journal.log"))
    study = optuna.load_study(study_name="segtune", storage=optuna.storages.JournalStorage(journal))
    by_number = {t.number: t for t in study.trials}
    for name in searched:
        ot, rec = by_number[recs[name]["optuna_trial"]], recs[name]
        assert sorted(ot.intermediate_values) == epochs_of(rec), name
        if rec["status"] == "pruned":
            assert ot.state.name == "PRUNED", name
        else:
            assert ot.state.name == "COMPLETE" and ot.value == pytest.approx(rec["objective"]), name
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
