"""The searcher's side of Optuna's pruning protocol, driven through the calls Tune makes (no Ray started):
per-epoch intermediate values, PRUNED for a trial ASHA stopped, COMPLETE with the objective, FAIL on error; the
same outcomes when the records have to be reconciled into a journal that missed them; the sampler per space."""
from __future__ import annotations

import textwrap

import optuna
import pytest

from search.records import STATUS_KEY
from search.space import load_space
from search.tune.searchers import RecordedFirstSearcher, build_sampler, reconcile_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_space(tmp_path, sampler: str = "", concurrent: int = 2):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(f"""
        name: s
        data: {{dataset: synthetic, root: data/synthetic, image_size: 32}}
        defaults: {{epochs: 4, device: cpu}}
        params: {{lr: {{loguniform: [1.0e-4, 1.0e-2]}}}}
        budget: {{num_samples: 4, max_concurrent: {concurrent}}}
        {sampler}
        """))
    return load_space(path)


def epoch(e: int, val: float, best: float) -> dict:
    return {"epoch": e, "val_miou": val, "best_val_miou": best}


@pytest.mark.parametrize("prune_aware", [True, False])
def test_outcomes_told_as_optuna_states(tmp_path, prune_aware):
    space = make_space(tmp_path)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    searcher = RecordedFirstSearcher(space.optuna_space, study, "val_miou", [], default_epochs=4,
                                     prune_aware=prune_aware)
    for tid in ("pruned", "completed", "crashed", "diverged"):
        assert "lr" in searcher.suggest(tid)
    # as Tune calls it: the last result (the one ASHA stopped on, the final epoch's) goes to on_trial_complete only
    searcher.on_trial_result("pruned", epoch(1, 0.1, 0.1))
    searcher.on_trial_complete("pruned", epoch(2, 0.3, 0.3))  # ASHA stopped it after epoch 2 of 4
    for e, val in enumerate([0.2, 0.5, 0.4], start=1):
        searcher.on_trial_result("completed", epoch(e, val, max(0.2, min(val, 0.5))))
    searcher.on_trial_complete("completed", epoch(4, 0.45, 0.5))
    searcher.on_trial_result("crashed", epoch(1, 0.05, 0.05))
    searcher.on_trial_complete("crashed", None, error=True)
    searcher.on_trial_result("diverged", epoch(1, 0.05, 0.05))  # then a NaN loss: the trainable reports the floor
    searcher.on_trial_complete("diverged", {"val_miou": 0.0, STATUS_KEY: "failed"})

    pruned, completed, crashed, diverged = study.trials
    assert crashed.state.name == "FAIL"
    assert diverged.state.name == "COMPLETE" and diverged.value == 0.0  # TPE learns that region is bad
    if prune_aware:
        assert pruned.state.name == "PRUNED" and pruned.intermediate_values == {1: 0.1, 2: 0.3}
        # completed: the objective the leaderboard ranks by (best_val_miou), not the last epoch's 0.45
        assert completed.state.name == "COMPLETE" and completed.value == 0.5
        assert completed.intermediate_values == {1: 0.2, 2: 0.5, 3: 0.4, 4: 0.45}
    else:  # the older protocol: a 2-epoch score told as if it were a full-budget result
        assert pruned.state.name == "COMPLETE" and pruned.value == 0.3 and not pruned.intermediate_values
        assert completed.value == 0.45


def test_a_retried_trial_reports_each_epoch_once(tmp_path):
    space = make_space(tmp_path)
    study = optuna.create_study(direction="maximize")
    searcher = RecordedFirstSearcher(space.optuna_space, study, "val_miou", [], default_epochs=4)
    searcher.suggest("t")
    for e in (1, 2, 2, 3):  # a crash after epoch 2: Tune retries from the checkpoint and epoch 2 is reported again
        searcher.on_trial_result("t", epoch(e, 0.1 * e, 0.1 * e))
    assert study.trials[0].intermediate_values == {1: 0.1, 2: 0.2, 3: pytest.approx(0.3)}


def test_reconcile_tells_the_recorded_outcomes_the_journal_missed(tmp_path):
    space = make_space(tmp_path)
    study = optuna.create_study(direction="maximize")
    asked = study.ask()
    space.optuna_space(asked)  # asked, started, then the driver died before telling it
    history = [{"epoch": 1, "val_miou": 0.1, "best_val_miou": 0.1}, {"epoch": 2, "val_miou": 0.2, "best_val_miou": 0.2}]
    base = {"metric": "val_miou", "history": history, "config": {**space.defaults.model_dump(mode="json"), "lr": 1e-3}}
    records = {
        "a": {**base, "trial_id": "a", "name": "search-0001", "status": "pruned", "optuna_trial": asked.number},
        # the journal never had this one (e.g. an older journal): added with its outcome and epochs
        "b": {**base, "trial_id": "b", "name": "search-0002", "status": "completed", "objective": 0.2,
              "optuna_trial": 7},
    }
    assert reconcile_study(study, space, records) == []
    a, b = study.trials
    assert a.state.name == "PRUNED" and a.intermediate_values == {1: 0.1, 2: 0.2}
    assert b.state.name == "COMPLETE" and b.value == 0.2 and b.intermediate_values == {1: 0.1, 2: 0.2}
    assert b.user_attrs["segtune_trial"] == "b"


@pytest.mark.parametrize("sampler, concurrent, kind, liar", [
    ("", 2, optuna.samplers.TPESampler, True),           # parallel trials: TPE lies about the running ones
    ("", 1, optuna.samplers.TPESampler, False),          # one at a time: nothing runs while TPE proposes
    ("sampler: {kind: tpe, constant_liar: false}", 4, optuna.samplers.TPESampler, False),
    ("sampler: {type: tpe}", 2, optuna.samplers.TPESampler, True),  # the key before `kind` existed
    ("sampler: {kind: random}", 4, optuna.samplers.RandomSampler, None),
])
def test_sampler_per_space(tmp_path, sampler, concurrent, kind, liar):
    space = make_space(tmp_path, sampler, concurrent)
    built = build_sampler(space.sampler, space.budget.max_concurrent, seed=0)
    assert type(built) is kind
    if liar is not None:
        assert built._constant_liar is liar


def test_an_older_experiments_records_warm_start_a_search_on_the_5_epoch_mean(tmp_path):
    from search.tune.warmstart import prior_trial

    space = make_space(tmp_path)  # the default metric: val_miou_avg5
    assert space.metric == "val_miou_avg5"
    vals = [0.1, 0.3, 0.2, 0.2, 0.2, 0.5]
    history = [{"epoch": e, "val_miou": v} for e, v in enumerate(vals, 1)]  # written before val_miou_avg5 existed
    rec = {"trial_id": "t0", "name": "search-0001", "status": "completed", "history": history,
           "config": {**space.defaults.model_dump(mode="json"), "lr": 1e-3}}
    trial = prior_trial(rec, space, "results/old")
    assert trial is not None and trial.state.name == "COMPLETE"
    assert trial.intermediate_values[2] == pytest.approx(0.2) and trial.intermediate_values[6] == pytest.approx(0.28)
    assert trial.value == pytest.approx(0.28)  # max over full windows: epochs 2-6 (0.28) beat epochs 1-5 (0.2)
