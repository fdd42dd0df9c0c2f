"""Growing an experiment's budget (search/grow.py) through open_experiment, with no Ray: what is accepted, what is
refused, and what experiment.json says afterwards. The end-to-end growth of a real search is in
tests/test_watch_grow.py."""
from __future__ import annotations

import json
import textwrap

import pytest

from search.experiment import open_experiment
from search.folder import locate
from search.records import write_record
from search.space import SpaceError, load_space
from search.synthetic import synthetic_record

SPACE = """
    name: g
    data: {dataset: synthetic, root: data/synthetic, image_size: 32}
    defaults: {epochs: 3}
    params:
      lr: {loguniform: [1.0e-4, 1.0e-2]}
    fixed_trials:
      base: {}
    budget: {num_samples: 4, max_concurrent: 2, max_failures: 1}
    seeds: {top_k: 1, seeds: [7]}
    """


def write(tmp_path, text: str):
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def started(tmp_path, searched: int = 4):
    """An experiment whose passes are all done, with `searched` final searched records."""
    path = write(tmp_path, SPACE)
    space = load_space(path)
    loc = locate(space, str(tmp_path / "results"))
    exp = open_experiment(space, loc)
    for i in range(searched):
        write_record(exp.dir, synthetic_record(i, {"lr": 1e-3, "epochs": 3}, epochs_run=3))
    exp.update(passes={"fixed": "done", "search": "done", "seeds": "done"}, seed_plan=[["search-0001", 7, {}]])
    return path, loc, exp


def test_more_samples_reopen_the_search_and_the_seed_plan(tmp_path, capsys):
    path, loc, exp = started(tmp_path)
    path.write_text(path.read_text().replace("num_samples: 4", "num_samples: 6"))
    grown = open_experiment(load_space(path), loc)
    meta = grown.read()
    assert meta["space_hash"] == load_space(path).hash and meta["space"]["budget"]["num_samples"] == 6
    assert meta["passes"] == {"fixed": "done"} and meta["seed_plan"] is None
    change = meta["budget_changes"][-1]
    assert change["changes"] == ["budget.num_samples: 4 -> 6"] and change["searched_trials_before"] == 4
    assert change["reopened"] == ["search", "seeds"]
    assert "continues with the same study" in capsys.readouterr().out
    # the same command again: a plain resume, nothing more to accept
    again = open_experiment(load_space(path), loc).read()
    assert again["budget_changes"] == meta["budget_changes"] and again["passes"] == {"fixed": "done"}


def test_concurrency_and_failures_change_without_reopening(tmp_path):
    path, loc, exp = started(tmp_path)
    edited = path.read_text().replace("max_concurrent: 2, max_failures: 1", "max_concurrent: 3, max_failures: 4")
    path.write_text(edited)
    meta = open_experiment(load_space(path), loc).read()
    assert meta["passes"] == {"fixed": "done", "search": "done", "seeds": "done"}
    assert sorted(meta["budget_changes"][-1]["changes"]) == ["budget.max_concurrent: 2 -> 3",
                                                              "budget.max_failures: 1 -> 4"]


def test_fewer_samples_than_ran_are_refused(tmp_path):
    path, loc, exp = started(tmp_path)
    before = exp.json_path.read_text()
    path.write_text(path.read_text().replace("num_samples: 4", "num_samples: 3"))
    with pytest.raises(SpaceError) as e:
        open_experiment(load_space(path), loc)
    msg = str(e.value)
    assert "g.yaml" in msg and "budget.num_samples: 4 -> 3" in msg and "already run 4 searched trials" in msg
    assert "4 or more" in msg and "--fresh" in msg
    assert exp.json_path.read_text() == before  # nothing was changed


def test_a_budget_edit_beside_another_edit_is_still_refused(tmp_path):
    path, loc, exp = started(tmp_path)
    before = json.loads(exp.json_path.read_text())
    path.write_text(path.read_text().replace("num_samples: 4", "num_samples: 6").replace("1.0e-2]", "1.0e-1]"))
    with pytest.raises(SpaceError) as e:
        open_experiment(load_space(path), loc)
    assert "params.lr.values" in str(e.value) and "only its budget" in str(e.value)
    assert json.loads(exp.json_path.read_text())["space_hash"] == before["space_hash"]
