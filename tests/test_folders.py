"""The experiment folder as the commands read it: damaged trial records, folders that are not experiments."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.records import collect_records, record_path, write_record
from search.tune.layout import PARAMS_FILE, RESULT_FILE, TUNE_DIR
from search.vocab import COMPLETED, KIND_KEY, NAME_KEY, FIXED


def _tune_folder(exp: Path, tune_id: str, name: str, epochs: int) -> Path:
    """What Tune writes for a finished fixed trial: params.json and one result line per epoch."""
    folder = exp / TUNE_DIR / "fixed" / "run-0" / f"{name}_{tune_id}"
    folder.mkdir(parents=True)
    config = {"epochs": epochs, "lr": 1e-3, NAME_KEY: name, KIND_KEY: FIXED}
    (folder / PARAMS_FILE).write_text(json.dumps(config))
    rows = [{"trial_id": tune_id, "epoch": e, "val_miou": 0.1 * e, "best_val_miou": 0.1 * e} for e in
            range(1, epochs + 1)]
    (folder / RESULT_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_truncated_record_is_named_and_rebuilt_from_tunes_folder(tmp_path):
    exp = tmp_path / "exp"
    _tune_folder(exp, "aaa_00000", "baseline", epochs=2)
    write_record(exp, {"trial_id": "aaa_00000", "name": "baseline", "kind": FIXED, "config": {"epochs": 2},
                       "history": [], "status": COMPLETED})
    path = record_path(exp, "aaa_00000")
    path.write_text(path.read_text()[:25])  # a disk that filled up mid-write
    with pytest.warns(RuntimeWarning, match=r"trial record .*aaa_00000\.json could not be read.*rebuilt from"):
        recs = collect_records(exp)
    assert recs["aaa_00000"]["status"] == COMPLETED and len(recs["aaa_00000"]["history"]) == 2


def test_a_truncated_record_without_a_tune_folder_is_named_not_dropped_silently(tmp_path):
    exp = tmp_path / "exp"
    write_record(exp, {"trial_id": "bbb_00000", "name": "x", "config": {}, "history": []})
    record_path(exp, "bbb_00000").write_text('{"trial_id": "bbb_')
    with pytest.warns(RuntimeWarning, match=r"bbb_00000\.json could not be read .*left out of the tables"):
        assert collect_records(exp) == {}



COMMANDS = ("search.leaderboard", "search.report", "search.export")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_refuses_a_folder_that_is_not_an_experiment_and_names_what_it_found(command, tmp_path, capsys):
    import importlib

    main = importlib.import_module(command).main
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"")
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "experiment.json").write_text("{}")
    extra = ["--out", str(tmp_path / "model")] if command == "search.export" else []
    cases = {photos: "it holds cat.jpg", tmp_path / "missing": "it does not exist",
             tmp_path / "results": "it holds quick/ (experiments inside it: quick)"}
    for folder, found in cases.items():
        assert main([str(folder), *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"error: {folder} is not a segtune experiment folder: {found}, and no experiment.json or "
                         f"trials; pass the folder `python -m search.run` wrote, e.g. results/<name>"], lines
    assert not (tmp_path / "model").exists() and not list(photos.glob("*.parquet"))
