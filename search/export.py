"""Export a trial as a model folder: `python -m search.export RESULTS_DIR [--trial NAME] --out DIR`.

The trial (default: the leaderboard's best by its ranking, the first completed row with a score) is found in its
record (`trials/<id>.json`), whose `checkpoints` name the Tune checkpoints it wrote, newest first; the newest
readable one's Trainer state holds the best-val weights (`best_state`), the config, the classes and the best
metrics. `seg.export` writes the folder (config.yaml, weights.safetensors, classes.yaml, MODEL_CARD.md,
model.json; format in seg/export.py). Nothing is retrained, and no model is built here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from search import storage
from search.folder import EXPERIMENT_FILE, NotAnExperimentError, experiment_folder, moved_storage
from search.records import read_record, record_path, resume_checkpoints
from search.tables import LEADERBOARD_FILE, best_completed, write_tables
from search.tune.layout import state_location
from search.vocab import finite


class ExportError(ValueError):
    """What cannot be exported, and what to do instead."""


def leaderboard(exp_dir: Path) -> pd.DataFrame:
    """The experiment's ranked leaderboard (rebuilt from the records when the file is missing)."""
    path = exp_dir / LEADERBOARD_FILE
    if not path.is_file():
        path = write_tables(exp_dir)[0]
    return pd.read_parquet(path)


def choose_trial(board: pd.DataFrame, wanted: str | None) -> pd.Series:
    """The row named (or with the id) `wanted`, else the best completed row with a score (rows are ranked)."""
    if wanted is not None:
        rows = board[(board["name"] == wanted) | (board["trial_id"] == wanted)]
        if rows.empty:
            raise ExportError(f"--trial {wanted!r}: no such trial; the leaderboard has {list(board['name'])[:20]}")
        return rows.iloc[0]
    best = best_completed(board)
    if best is None:
        raise ExportError("no completed trial with a score to export; pass --trial NAME for another one")
    return best


def trial_state(exp_dir: Path, trial_id: str) -> tuple[bytes, str]:
    """(the newest readable checkpoint's Trainer state, its location) of a trial."""
    rec = read_record(record_path(exp_dir, trial_id)) or {}
    exp_json = exp_dir / EXPERIMENT_FILE
    stored = json.loads(exp_json.read_text()) if exp_json.is_file() else {}
    # a local folder moved since its last run: its checkpoints are here now (an object store's stay where they are)
    moved = {} if storage.is_uri(stored.get("storage") or "") else moved_storage(stored, str(exp_dir.resolve()))
    tried = []
    for location in dict.fromkeys((*resume_checkpoints(rec), *resume_checkpoints(rec, moved))):
        data = storage.read_bytes(state_location(location))
        if data:
            return data, location
        tried.append(location)
    status = rec.get("status", "unknown")
    raise ExportError(f"trial {rec.get('name', trial_id)} ({trial_id}, status {status}) has no readable checkpoint"
                      + (f" (tried {tried})" if tried else " (its record lists none)")
                      + "; export another trial with --trial NAME")


def export_trial(exp_dir: str | Path, out: str | Path, wanted: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Write the chosen trial's model folder; returns (folder, its model.json)."""
    from seg.export import MODEL_JSON, ModelFolderError, export_checkpoint  # torch: only to write the weights

    exp_dir = experiment_folder(exp_dir)
    row = choose_trial(leaderboard(exp_dir), wanted)
    data, location = trial_state(exp_dir, str(row["trial_id"]))
    provenance = {"experiment": exp_dir.resolve().name, "experiment_dir": str(exp_dir.resolve()),
                  "trial": str(row["name"]), "trial_id": str(row["trial_id"]), "checkpoint": location,
                  "leaderboard": {k: (float(row[k]) if finite(row[k]) else None)
                                  for k in ("best_val_miou", "test_miou", "test_pixel_acc")}}
    try:
        folder = export_checkpoint(data, out, provenance)
    except ModelFolderError as e:
        raise ExportError(f"{location}: {e}") from None
    meta = json.loads((folder / MODEL_JSON).read_text())
    return folder, meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("exp_dir", metavar="RESULTS_DIR", help="experiment folder, e.g. results/quick")
    ap.add_argument("--trial", default=None, help="trial name or id (default: the leaderboard's best)")
    ap.add_argument("--out", required=True, help="model folder to write")
    args = ap.parse_args(argv)
    try:
        folder, meta = export_trial(args.exp_dir, args.out, args.trial)
    except (ExportError, NotAnExperimentError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m, p = meta["metrics"], meta["provenance"]
    score = lambda k: f"{m[k]:.4f}" if finite(m.get(k)) else "-"  # noqa: E731
    print(f"exported {p['trial']} ({meta['arch']}, best epoch {m.get('best_epoch')}, val mIoU "
          f"{score('best_val_miou')}, test mIoU {score('test_miou')}) -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
