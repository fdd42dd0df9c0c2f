"""The leaderboard: an experiment folder -> one fixed-schema row per trial (and one per trial-epoch) -> Parquet.

Sources, all inside `results/<name>/`: segtune's per-trial records `trials/<trial_id>.json` (written by the driver as
results arrive) and, for trials the driver never recorded (it was killed first), Tune's own `tune/<pass>/<trial>/`
folders (`params.json`, `result.json`, `error.txt`). Rows are keyed by trial id and epochs by number, so results
that arrive twice after a resume collapse to one.

    python -m search.leaderboard results/quick          # regenerate leaderboard.parquet + history.parquet

`LEADERBOARD_SCHEMA` and `HISTORY_SCHEMA` map every column to (pandas dtype, description); tests check them and
docs/DESIGN.md lists the same columns.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import typing
from pathlib import Path
from typing import Any

import pandas as pd

from search.seeds import SEED_COLUMNS, add_seed_columns, ranked
from search.trainable import (final_status, last_exception_line, merge_result, read_record,
                              split_config, trial_id_from_dirname)
from search.trainable import trial_name as _trial_name
from seg.config import TrainConfig
from seg.data.voc import VOC_CLASSES

IOU_COLUMNS = tuple(f"iou_{c}" for c in VOC_CLASSES)
STATUSES = ("completed", "pruned", "failed", "running")


def _dtype(annotation: Any) -> str:
    """pandas dtype of a TrainConfig field's column: nullable ints/bools, floats, everything else as strings."""
    args = {a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)}
    if typing.get_origin(annotation) is typing.Literal:
        return "string"
    if args == {bool}:
        return "boolean"
    if args == {int}:
        return "Int64"
    if args <= {float, int}:
        return "float64"
    return "string"  # str, Literal, tuples (written as "(100, 50, 50)")


def _train_columns() -> dict[str, tuple[str, str]]:
    return {name: (_dtype(f.annotation), f"TrainConfig.{name} of the trial (resolved; tuples as strings)")
            for name, f in TrainConfig.model_fields.items()}


LEADERBOARD_SCHEMA: dict[str, tuple[str, str]] = {
    "trial_id": ("string", "Ray Tune trial id (unique in the experiment; the row key)"),
    "name": ("string", "fixed-trial name (baseline, 4a, ...) or search-NNNN for searched trials"),
    "kind": ("string", "fixed | searched | seed (a rerun of another trial with another seed: search/seeds.py)"),
    "status": ("string", "completed | pruned | failed | running"),
    "pruned_at_epoch": ("Int64", "last epoch of a trial ASHA stopped early; null unless pruned"),
    "error": ("string", "the error, e.g. 'NonFiniteLossError: training loss became nan ...'; null unless failed"),
    **_train_columns(),
    "epochs_run": ("Int64", "epochs trained (one result each)"),
    "best_epoch": ("Int64", "epoch of the best val_miou checkpoint"),
    "best_val_miou": ("float64", "best validation mIoU over the epochs run"),
    "val_pixel_acc": ("float64", "validation pixel accuracy of the best checkpoint"),
    "test_miou": ("float64", "test mIoU of the best checkpoint"),
    "test_pixel_acc": ("float64", "test pixel accuracy of the best checkpoint"),
    **{c: ("float64", f"test IoU of class {c[4:]} at the best checkpoint (NaN where it never occurs)")
       for c in IOU_COLUMNS},
    "train_loss": ("float64", "training loss of the last epoch run"),
    "val_loss": ("float64", "validation loss of the last epoch run"),
    "wall_seconds": ("float64", "sum of the epochs' wall time (training + evaluation), seconds"),
    "gpu_seconds": ("float64", "wall_seconds x the GPU share the trial was given (0 on CPU)"),
    "images_per_s": ("float64", "training throughput, mean over the epochs run"),
    "compile_seconds": ("float64", "torch.compile time (first epoch), seconds"),
    "git_commit": ("string", "segtune checkout the driver ran from (+dirty when modified)"),
    "versions": ("string", "JSON of package versions (python, torch, ray, optuna, ...)"),
    "config_json": ("string", "JSON of the trial's resolved TrainConfig"),
    "hostname": ("string", "host the trial ran on"),
    "device_name": ("string", "training device, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (...)'"),
    "started_at": ("string", "ISO-8601 time the trial first started"),
    "finished_at": ("string", "ISO-8601 time the trial finished (null while running)"),
    # segtune additions beyond docs/DESIGN.md's list
    "node_id": ("string", "Ray node id the trial (last) ran on"),
    "gpu_ids": ("string", "GPU ids Ray assigned (comma-separated; CUDA_VISIBLE_DEVICES of the trial)"),
    "gpu_fraction": ("float64", "GPUs requested per trial (resources.gpus)"),
    "num_failures": ("Int64", "crashes Tune retried from the last checkpoint"),
    "objective": ("float64", "the value Optuna was told (last reported metric; 0.0 for a failed trial)"),
    "pretrained": ("boolean", "whether ImageNet weights were loaded"),
    **SEED_COLUMNS,  # seed_group, n_seeds, val_miou_mean/std, test_miou_mean/std (null outside seed groups)
}

HISTORY_SCHEMA: dict[str, tuple[str, str]] = {
    "trial_id": ("string", "Ray Tune trial id"),
    "name": ("string", "trial name"),
    "epoch": ("Int64", "1-based epoch"),
    "train_loss": ("float64", "mean training loss of the epoch"),
    "val_loss": ("float64", "validation loss"),
    "val_miou": ("float64", "validation mIoU of this epoch"),
    "val_pixel_acc": ("float64", "validation pixel accuracy of this epoch"),
    "lr": ("float64", "learning rate at the end of the epoch"),
    "images_per_s": ("float64", "training throughput of the epoch"),
    "seconds": ("float64", "wall time of the epoch incl. evaluation"),
    "compile_seconds": ("float64", "torch.compile time (first epoch only)"),
    "best_epoch": ("Int64", "best-val-mIoU epoch so far"),
    "best_val_miou": ("float64", "best validation mIoU so far"),
    "best_val_pixel_acc": ("float64", "validation pixel accuracy of the best checkpoint so far"),
    "test_miou": ("float64", "test mIoU of the best checkpoint so far"),
    "test_pixel_acc": ("float64", "test pixel accuracy of the best checkpoint so far"),
    **{c: ("float64", f"test IoU of class {c[4:]} of the best checkpoint so far") for c in IOU_COLUMNS},
    "pretrained": ("boolean", "whether ImageNet weights were loaded"),
}


# ---------------------------------------------------------------------------------------------------------------
# Collecting trials
# ---------------------------------------------------------------------------------------------------------------
def collect_records(exp_dir: Path) -> dict[str, dict[str, Any]]:
    """trial_id -> record, from segtune's records and Tune's trial folders (history merged by epoch)."""
    records: dict[str, dict[str, Any]] = {}
    known = _known_trial_ids(exp_dir)
    for path in sorted((exp_dir / "trials").glob("*.json")):
        rec = read_record(path)
        if rec and "trial_id" in rec:
            records[rec["trial_id"]] = rec
    for trial_dir in sorted((exp_dir / "tune").glob("*/*/")):
        tune_rec = _record_from_tune(trial_dir)
        if tune_rec is None:
            continue
        rec = records.get(tune_rec["trial_id"])
        if rec is None:
            records[tune_rec["trial_id"]] = tune_rec
        else:  # epochs that reached Tune's log after the driver's last record write
            merged = {int(h["epoch"]): h for h in (*tune_rec["history"], *rec.get("history", []))}
            rec["history"] = [merged[e] for e in sorted(merged)]
    return {tid: r for tid, r in records.items()
            if r.get("pass_name") not in known or tid in known[r.get("pass_name")]}


def _known_trial_ids(exp_dir: Path) -> dict[str, set[str]]:
    """pass -> the trial ids Tune finished that pass with (experiment.json; only for finished passes)."""
    try:
        exp = json.loads((exp_dir / "experiment.json").read_text())
    except (OSError, ValueError):
        return {}
    return {p: set(ids) for p, ids in (exp.get("trial_ids") or {}).items()}


def _record_from_tune(trial_dir: Path) -> dict[str, Any] | None:
    params, results = trial_dir / "params.json", trial_dir / "result.json"
    if not params.is_file():
        return None
    try:
        config = json.loads(params.read_text())
        lines = results.read_text().splitlines() if results.is_file() else []
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return None
    trial_id = next((r["trial_id"] for r in rows if "trial_id" in r), None) or trial_id_from_dirname(
        trial_dir.name, config)
    name, kind, fields = split_config(config)
    rec: dict[str, Any] = {"trial_id": trial_id, "name": _trial_name(trial_id, config), "kind": kind,
                           "config": fields, "history": [], "metric": "val_miou", "status": "running",
                           "pass_name": trial_dir.parent.name, "trial_dir": str(trial_dir)}
    for row in rows:
        merge_result(rec, row)
    error = trial_dir / "error.txt"
    if error.is_file():
        text = error.read_text()
        rec.update(status="failed", error=last_exception_line(text), error_type="crash")
    elif rec["status"] != "failed" and final_status(rec)["status"] == "completed":
        rec.update(final_status(rec))
    # else: no driver record and not finished: still running, or the driver died before recording its end
    return rec


# ---------------------------------------------------------------------------------------------------------------
# Rows and tables
# ---------------------------------------------------------------------------------------------------------------
def leaderboard_row(rec: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    cfg, hist = rec.get("config", {}), rec.get("history", [])
    last = hist[-1] if hist else {}
    seconds = [h["seconds"] for h in hist if _finite(h.get("seconds"))]
    ips = [h["images_per_s"] for h in hist if _finite(h.get("images_per_s"))]
    gpus = float(rec.get("gpus") or rec.get("gpu_fraction") or 0.0)
    status = rec.get("status", "running")
    row = {
        "trial_id": rec["trial_id"], "name": rec.get("name"), "kind": rec.get("kind"), "status": status,
        "pruned_at_epoch": rec.get("pruned_at_epoch") if status == "pruned" else None,
        "error": rec.get("error") if status == "failed" else None,
        **{f: _cell(cfg.get(f)) for f in TrainConfig.model_fields},
        "epochs_run": max((int(h["epoch"]) for h in hist), default=0),
        "best_epoch": last.get("best_epoch"), "best_val_miou": last.get("best_val_miou"),
        "val_pixel_acc": last.get("best_val_pixel_acc"), "test_miou": last.get("test_miou"),
        "test_pixel_acc": last.get("test_pixel_acc"), **{c: last.get(c) for c in IOU_COLUMNS},
        "train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
        "wall_seconds": sum(seconds), "gpu_seconds": sum(seconds) * gpus,
        "images_per_s": sum(ips) / len(ips) if ips else None,
        "compile_seconds": sum(h.get("compile_seconds") or 0.0 for h in hist),
        "git_commit": provenance.get("git_commit"), "versions": json.dumps(provenance.get("versions", {}),
                                                                          sort_keys=True),
        "config_json": json.dumps(cfg, sort_keys=True), "hostname": rec.get("host"),
        "device_name": rec.get("device_name") or None, "started_at": rec.get("started_at"),
        "finished_at": rec.get("finished_at"), "node_id": rec.get("node_id"), "gpu_ids": rec.get("gpu_ids"),
        "gpu_fraction": gpus, "num_failures": rec.get("num_failures", 0), "objective": rec.get("objective"),
        "pretrained": last.get("pretrained"),
    }
    return row


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return str(tuple(v))
    return v


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def typed_frame(rows: list[dict[str, Any]], schema: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """A DataFrame with exactly the schema's columns, in order, with its dtypes (missing values as nulls)."""
    df = pd.DataFrame(rows, columns=list(schema))
    for col, (dtype, _) in schema.items():
        s = df[col]
        if dtype == "float64":
            df[col] = pd.to_numeric(s.astype(object).where(s.notna(), None), errors="coerce").astype("float64")
        elif dtype == "Int64":
            df[col] = pd.to_numeric(s.astype(object).where(s.notna(), None), errors="coerce").astype("Int64")
        elif dtype == "boolean":
            df[col] = s.astype(object).where(s.notna(), None).astype("boolean")
        else:
            df[col] = s.astype(object).where(s.notna(), None).map(
                lambda v: v if v is None or isinstance(v, str) else str(v)).astype("string")
    return df


def build_tables(exp_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(leaderboard, history) of an experiment folder; leaderboard best first: by the seed-group mean of
    best_val_miou where there is one, else by best_val_miou (search.seeds.ranked)."""
    exp_dir = Path(exp_dir)
    provenance = _provenance(exp_dir)
    records = collect_records(exp_dir)
    board = typed_frame([leaderboard_row(r, provenance) for r in records.values()], LEADERBOARD_SCHEMA)
    board = ranked(add_seed_columns(board))
    hist_rows = [{"trial_id": r["trial_id"], "name": r.get("name"), **h}
                 for r in records.values() for h in r.get("history", [])]
    history = typed_frame(hist_rows, HISTORY_SCHEMA).sort_values(["trial_id", "epoch"], kind="stable")
    return board, history.reset_index(drop=True)


def _provenance(exp_dir: Path) -> dict[str, Any]:
    try:
        exp = json.loads((exp_dir / "experiment.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"git_commit": exp.get("git_commit"), "versions": exp.get("versions", {})}


def write_tables(exp_dir: Path) -> tuple[Path, Path]:
    """Write leaderboard.parquet and history.parquet atomically (tmp file + os.replace)."""
    from seg.atomic import atomic_write

    board, history = build_tables(exp_dir)
    out = []
    for df, name in ((board, "leaderboard.parquet"), (history, "history.parquet")):
        out.append(atomic_write(Path(exp_dir) / name, lambda tmp, df=df: df.to_parquet(tmp, index=False)))
    return out[0], out[1]


TOP_COLUMNS = ("name", "kind", "status", "arch", "activation", "lr", "epochs", "epochs_run", "best_val_miou",
               "test_miou", "test_pixel_acc", "wall_seconds")


def format_top(board: pd.DataFrame, n: int = 15) -> str:
    """The first rows of a leaderboard as a plain-text table."""
    if board.empty:
        return "(no trials yet)"
    seeded = [c for c in ("val_miou_mean", "test_miou_mean", "n_seeds") if c in board and board[c].notna().any()]
    cols = list(TOP_COLUMNS)
    cols[cols.index("test_pixel_acc") + 1:cols.index("test_pixel_acc") + 1] = seeded  # ranked by val_miou_mean
    top = board.loc[:, cols].head(n).copy()
    top["error/pruned"] = [
        (e[:60] + "..." if isinstance(e, str) and len(e) > 60 else e) if s == "failed" else
        (f"at epoch {p}" if s == "pruned" else "") for s, e, p in
        zip(board["status"].head(n), board["error"].head(n), board["pruned_at_epoch"].head(n))]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 70):
        return top.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.leaderboard",
                                 description="Regenerate leaderboard.parquet and history.parquet from an "
                                             "experiment folder.")
    ap.add_argument("exp_dir", help="experiment folder, e.g. results/quick")
    ap.add_argument("--top", type=int, default=15, help="rows to print")
    args = ap.parse_args(argv)
    exp_dir = Path(args.exp_dir)
    if not (exp_dir / "experiment.json").is_file() and not (exp_dir / "trials").is_dir():
        print(f"error: {exp_dir} is not a segtune experiment folder (no experiment.json or trials/)", file=sys.stderr)
        return 2
    board_path, hist_path = write_tables(exp_dir)
    board = pd.read_parquet(board_path)
    print(format_top(board, args.top))
    print(f"\n{len(board)} trials -> {board_path}, {hist_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
