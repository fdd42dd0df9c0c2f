"""README promises about the search command that need no Ray to check: `--fresh` from the command line, the MLflow
tracking URI forms (an `http://` server, a relative SQLite store name) and `tracking.progress_s`.

Each builds what `search.run` builds, from a real space file; where the command would start Ray (`search.run.search`,
the one step that opens a Ray session), a stand-in opens the experiment folder the way that step does and stops:
the promise is decided before it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import search_args, space_yaml


@pytest.fixture
def no_ray(monkeypatch) -> list:
    """search.run's Ray step replaced by one that only opens the experiment (experiment.json); records the
    locations it was given."""
    import search.run
    from search.experiment import open_experiment

    seen = []

    def opened_only(space, location, facts, args):
        seen.append(location)
        open_experiment(space, location).update(**facts)

    monkeypatch.setattr(search.run, "search", opened_only)
    return seen


def test_fresh_on_the_command_line_starts_a_new_experiment_beside_the_old(tmp_path, synthetic_root, no_ray):
    from search.run import main

    space, results = space_yaml(tmp_path, synthetic_root, "fixed_trials: {base: {}}\n"), tmp_path / "results"
    assert main(search_args(space, results)) == 0
    assert main(search_args(space, results)) == 0  # the same command again: the same experiment, resumed
    first = (results / "t" / "experiment.json").read_bytes()
    assert main(search_args(space, results, "--fresh")) == 0
    names = [loc.name for loc in no_ray]
    assert names[:2] == ["t", "t"] and names[2].startswith("t-") and names[2] != "t", names
    assert sorted(p.name for p in results.iterdir()) == sorted({"t", names[2]})
    assert (results / names[2] / "experiment.json").is_file()
    assert (results / "t" / "experiment.json").read_bytes() == first  # the old one is left alone


def _tracked(tmp_path: Path, synthetic_root: Path, tracking: str):
    from search.space import load_space

    return load_space(space_yaml(tmp_path, synthetic_root, f"fixed_trials: {{base: {{}}}}\ntracking: {tracking}\n"))


@pytest.mark.parametrize("uri,want", [
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),  # a tracking server: passed on as it is
    ("runs/mlflow.db", "sqlite:///{cwd}/runs/mlflow.db"),  # a relative store name: absolute, from the cwd
    ("sqlite:///{tmp}/m.db", "sqlite:///{tmp}/m.db"),
])
def test_mlflow_tracking_uri_forms(tmp_path, synthetic_root, monkeypatch, uri, want):
    from search.tune.passes import tracking_callbacks

    monkeypatch.chdir(tmp_path)  # Tune changes the working directory later: the path must be absolute by then
    space = _tracked(tmp_path, synthetic_root, f"{{mlflow: {{tracking_uri: '{uri.format(tmp=tmp_path)}'}}}}")
    (cb,) = tracking_callbacks(space, "search")
    assert cb.tracking_uri == want.format(cwd=tmp_path.resolve(), tmp=tmp_path)
    assert cb.experiment_name == "t" and cb.tags == {"segtune_pass": "search"}  # the space's name by default


def test_no_mlflow_section_no_callback(tmp_path, synthetic_root):
    from search.tune.passes import tracking_callbacks

    assert tracking_callbacks(_tracked(tmp_path, synthetic_root, "{progress_s: 5}"), "search") == []


@pytest.mark.parametrize("pass_name", ["fixed", "search"])
def test_progress_table_prints_every_progress_s(tmp_path, synthetic_root, pass_name):
    from search.tune.passes import progress_table

    space = _tracked(tmp_path, synthetic_root, "{progress_s: 7.5}")
    reporter = progress_table(space, pass_name)
    assert reporter._max_report_freqency == 7.5  # (sic) Ray's attribute for max_report_frequency
    (tmp_path / "d").mkdir()
    default = progress_table(_tracked(tmp_path / "d", synthetic_root, "{}"), pass_name)
    assert default._max_report_freqency == 30.0
