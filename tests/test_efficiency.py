"""bench.replay / bench.efficiency on a small table of synthetic curves (search.synthetic), exported by
bench.curves from a fabricated experiment: the mapping, the replay's accounting, the strategies' JSON and page."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import optuna
import pytest

from bench import curves, efficiency
from bench.replay import Strategy, Table, replay
from search.space import load_space
from search.space.schema import SamplerSpec, SpaceFile
from search.synthetic import synthetic_record

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 12


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    """The curves space sampled at random (12 configurations, 12 epochs, two with a second seed) plus its fixed
    rows, as synthetic records in an experiment folder, exported by bench.curves."""
    tmp = tmp_path_factory.mktemp("curves")
    space = load_space(REPO / "spaces" / "curves_cpu64.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    base = space.defaults.resolved().model_dump(mode="json")
    recs = []
    for i in range(12):
        t = study.ask()
        space.optuna_space(t)
        recs.append(synthetic_record(i, {**base, **t.params, "epochs": EPOCHS}, EPOCHS))
    for j, (name, cfg) in enumerate(space.fixed.items()):
        recs.append(synthetic_record(20 + j, cfg.resolved().model_dump(mode="json"), cfg.epochs, kind="fixed",
                                     name=name))
    for k in range(2):
        recs.append(synthetic_record(40 + k, {**recs[k]["config"], "seed": 1}, EPOCHS, kind="seed",
                                     name=f"{recs[k]['name']}@seed1"))
    exp = tmp / "exp"
    (exp / "trials").mkdir(parents=True)
    for r in recs:
        (exp / "trials" / f"{r['trial_id']}.json").write_text(json.dumps(r))
    (exp / "experiment.json").write_text(json.dumps({"name": "curves-test", "space": space.to_json()}))
    out, _ = curves.export(exp, tmp / "curves_test.parquet")
    return out


def test_table_groups_seeds_and_keeps_the_fixed_rows(table_path):
    table = Table.load(table_path)
    assert len(table.configs) == 12 and sorted(len(c) for c in table.curves)[-2:] == [2, 2]
    assert set(table.fixed) == {"baseline", "4a", "4b", "4c", "5a", "5b-scratch", "5c"}
    assert all(len(c) == EPOCHS for cs in table.curves for c in cs)
    for i, cfg in enumerate(table.configs):  # a table configuration is its own nearest
        assert table.nearest(cfg) == i and table.distance(cfg, cfg) == 0.0
    other = next(c for c in table.configs if c["arch"] != table.configs[0]["arch"])
    assert table.configs[table.nearest({**table.configs[0], "arch": other["arch"]})]["arch"] == other["arch"]


@pytest.mark.parametrize("strategy", efficiency.STRATEGIES[:-1], ids=lambda s: s.name)
def test_replay_spends_the_budget_and_tracks_the_incumbent(table_path, strategy):
    table = Table.load(table_path)
    budget = 6 * table.full_cost()
    run = replay(table, strategy, workers=3, budget_s=budget, seed=1, grace=2, reduction=2)
    assert run.compute[-1] <= budget and run.epochs * min(table.cost) <= budget
    assert run.val == sorted(run.val)  # the incumbent changes only for a better validation score
    assert run.trials >= 6  # whole-budget trials: about 6 fit; pruning starts more
    if strategy.asha:
        assert run.epochs < run.trials * EPOCHS  # some were stopped early
    else:
        assert run.epochs >= (run.trials - 3) * EPOCHS  # every trial but the ones still running at the end ran in full
    again = replay(table, strategy, workers=3, budget_s=budget, seed=1, grace=2, reduction=2)
    assert (again.compute, again.test) == (run.compute, run.test)
    # each started trial names the table configuration it trained and how far its proposal lay from it
    assert len(run.neighbours) == len(run.distances) == run.trials
    assert all(0 <= d <= 1 for d in run.distances) and len(set(run.neighbours)) > 1


def test_the_cost_model_prices_a_shape_by_its_quiet_epochs_not_its_loaded_ones(table_path, tmp_path):
    import pandas as pd

    quiet = pd.read_parquet(table_path).assign(seconds=10.0)
    loaded = quiet.copy()
    loaded.loc[loaded.index % 3 != 0, "seconds"] = 50.0  # two epochs in three recorded while other jobs ran
    costs = []
    for name, t in (("quiet", quiet), ("loaded", loaded)):
        path = tmp_path / f"{name}.parquet"
        t.to_parquet(path)
        path.with_suffix(".json").write_text(table_path.with_suffix(".json").read_text())
        costs.append(Table.load(path).cost)
    assert costs[0] == costs[1] == [10.0] * 12  # a median would have priced the loaded table at 50 s an epoch


def test_paper_strategy_runs_every_fixed_epoch_once(table_path):
    table = Table.load(table_path)
    run = replay(table, Strategy("paper", None), workers=4, budget_s=math.inf, seed=0)
    assert run.epochs == sum(len(c) for c, _ in table.fixed.values())
    assert run.compute[-1] <= efficiency.sum_epochs_cost(table)


def test_efficiency_command_writes_json_page_and_table(table_path, tmp_path, capsys):
    out = tmp_path / "eff.json"
    assert efficiency.main(["--table", str(table_path), "--workers", "2", "--seeds", "3", "--budget-trials", "5",
                            "--grace", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (w,) = result["by_workers"]
    assert list(w["strategies"]) == [s.name for s in efficiency.STRATEGIES]
    rnd = w["strategies"]["random"]
    assert rnd["test_at_budget"]["median"] == pytest.approx(w["random_final_test_miou"])
    assert w["strategies"]["paper's seven"]["seeds"] == 1 and rnd["seeds"] == 3
    assert len(rnd["curve"]["median"]) == efficiency.GRID
    assert 0 <= rnd["mapped_distance_median"] <= 1 and 0 <= rnd["retrained_share_median"] < 1
    assert result["configurations"] == 12 and result["with_seeds"] == 2
    # a search is read at the paper's compute only where its budget reaches that far; the paper's row always
    paper_row = w["strategies"][efficiency.PAPER]["test_at_paper_compute"]["median"]
    assert paper_row == pytest.approx(w["paper_best_test_miou"])
    within = w["paper_compute_s"] <= w["budget_s"]
    assert math.isfinite(rnd["test_at_paper_compute"]["median"]) == within
    assert (0 <= rnd["beats_paper_share"] <= 1) if within else math.isnan(rnd["beats_paper_share"])
    assert w["strategies"][efficiency.PAPER]["beats_paper_share"] == 0  # its own best is not above itself
    html = out.with_suffix(".html").read_text()
    assert "plotly" in html.lower() and "TPE + ASHA (segtune)" in html
    printed = capsys.readouterr().out
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- efficiency:start -->\nPLACEHOLDER\n<!-- efficiency:end -->\nafter\n")
    assert efficiency.main(["--table", str(table_path), "--workers", "2", "--seeds", "2",
                            "--out", str(out), "--into", str(readme)]) == 0
    again = json.loads(out.read_text())
    assert again["budget_trials"] == 6  # by default half the table's 12 configurations
    (w6,) = again["by_workers"]
    assert w6["paper_compute_s"] > w6["budget_s"]  # the paper's rows outlast 6 trials: no figure there
    assert not math.isfinite(w6["strategies"]["random"]["test_at_paper_compute"]["median"])
    assert math.isnan(w6["strategies"]["random"]["beats_paper_share"])
    text = readme.read_text()
    assert "PLACEHOLDER" not in text and "| TPE + ASHA (segtune) |" in text and text.endswith("<!-- efficiency:end -->\nafter\n")
    assert "| TPE + ASHA (segtune) |" in printed and "random search's final test mIoU" in printed
    assert "nearest-configuration approximation at W = 2" in printed


def test_efficiency_without_a_table_says_how_to_build_it(tmp_path, capsys):
    assert efficiency.main(["--table", str(tmp_path / "none.parquet")]) == 2
    assert "python -m bench.curves build" in capsys.readouterr().err


def test_strategies_include_the_older_protocol_and_random_baselines():
    kinds = {s.name: (s.sampler.kind if s.sampler else None, s.asha, s.prune_aware) for s in efficiency.STRATEGIES}
    assert kinds["random"] == ("random", False, True) and kinds["random + ASHA"] == ("random", True, True)
    assert kinds["TPE + ASHA, older protocol"] == ("tpe", True, False)
    older = next(s for s in efficiency.STRATEGIES if not s.prune_aware)
    assert older.sampler == SamplerSpec(kind="tpe", n_startup_trials=10, constant_liar=False)
    # the two ablations differ from segtune's searcher in one setting each, and the older protocol in the other
    by_name = {s.name: s for s in efficiency.STRATEGIES}
    ours = by_name[efficiency.DEFAULT]
    assert ours.sampler.constant_liar is None and ours.prune_aware  # None: on whenever trials run in parallel
    assert ours.metric == "val_miou_avg5" == SpaceFile.model_fields["metric"].default  # what a space searches on
    single = by_name["TPE + ASHA, best single epoch"]
    assert single == dataclasses.replace(ours, name=single.name, metric="val_miou")
    protocol, liar = by_name["TPE + ASHA, pruning protocol only"], by_name["TPE + ASHA, constant liar only"]
    assert protocol.prune_aware and protocol.sampler.constant_liar is False and protocol.metric == older.metric
    assert not liar.prune_aware and liar.sampler.constant_liar is True and liar.metric == older.metric == "val_miou"
    for base in ("random", "random + ASHA"):  # the metric on its own, on the random baselines
        assert by_name[f"{base}, 5-epoch mean"] == dataclasses.replace(
            by_name[base], name=f"{base}, 5-epoch mean", metric="val_miou_avg5")
    assert efficiency.STRATEGIES[-1].sampler is None  # the paper's seven: the tests replay every other one


def test_efficiency_refuses_a_table_with_too_few_configurations(table_path, tmp_path, capsys):
    import pandas as pd

    table = pd.read_parquet(table_path)
    few = table[(table["kind"] == "fixed") | table["trial_id"].isin(table.loc[table["kind"] == "searched", "trial_id"]
                                                                     .unique()[:2])]
    path = tmp_path / "few.parquet"
    few.to_parquet(path)
    path.with_suffix(".json").write_text(table_path.with_suffix(".json").read_text())
    assert efficiency.main(["--table", str(path), "--out", str(tmp_path / "e.json")]) == 2
    assert "2 finished sampled configurations so far" in capsys.readouterr().err


def test_a_search_on_the_5_epoch_mean_ranks_its_trials_by_it(table_path):
    from bench.replay import CURVE_KEYS
    from seg.epoch_metrics import avg5

    table = Table.load(table_path)
    col = {k: i for i, k in enumerate(CURVE_KEYS)}
    for c in (c for cs in table.curves for c in cs):  # the trainer's own definition, from each curve's val_miou
        vals = c[:, col["val_miou"]].tolist()
        assert c[:, [col["val_miou_avg5"], col["max_val_miou_avg5"]]].tolist() == [
            pytest.approx(list(avg5(vals[:i + 1]))) for i in range(len(vals))]
    on_mean = Strategy("random, 5-epoch mean", SamplerSpec(kind="random"), metric="val_miou_avg5")
    run = replay(table, on_mean, workers=2, budget_s=4 * table.full_cost(), seed=0)
    tops = {float(v) for cs in table.curves for c in cs for v in c[:, col["max_val_miou_avg5"]]}
    singles = {float(v) for cs in table.curves for c in cs for v in c[:, col["best_val_miou"]]}
    assert run.val and all(v in tops for v in run.val) and not all(v in singles for v in run.val)


@pytest.mark.parametrize("xs, bar, want", [([0.1, 0.2, 0.3, 0.4], 0.25, 0.5), ([0.1, math.nan, 0.3], 0.2, 0.5),
                                           ([0.2, 0.2], 0.2, 0.0), ([math.nan, math.nan], 0.1, math.nan)])
def test_share_of_seeds_above_the_paper(xs, bar, want):
    got = efficiency._share_above(xs, bar)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
