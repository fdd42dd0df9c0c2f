"""The Parquet tables: trial records -> one fixed-schema row per trial (and one per trial-epoch) -> Parquet.

    python -m search.leaderboard results/quick    # rebuild both files from the folder (search/leaderboard.py)

`leaderboard.parquet` has one row per trial, best first (`ranked`); `history.parquet` one row per trial and epoch.
`LEADERBOARD_SCHEMA` and `HISTORY_SCHEMA` map every column to (pandas dtype, description); the tests check them and
docs/DESIGN.md lists the same columns. Names follow search.vocab: `val_*` in the history is that epoch's value;
`best_*`, `test_*` and `iou_*` are the best-val-mIoU checkpoint's, in both tables.

Seed groups (search.seeds): every row of a seed group (an original trial and its `seed` reruns) carries
`seed_group`, `n_seeds` and the mean / sample std of best_val_miou and test_miou over the group's completed runs.

The leaderboard ranks by `objective`, what the search optimised (`max_val_miou_avg5` for the space's metric
`val_miou_avg5`, `best_val_miou` for `val_miou`; search.vocab.objective_key), and by its seed-group mean
(`objective_mean`) where a row has one, so a lucky seed cannot carry a configuration to the top.
Ray-free and torch-free.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pandas as pd

from search.records import collect_records, epochs_run
from search.vocab import (COMPLETED, FAILED, HOST, IOU_COLUMNS, IOU_PREFIX, KINDS, PRUNED, RUNNING, SCHEMA_VERSION,
                          SEED, STATUSES, finite, iou_columns, original_name)
from seg.config import TrainConfig
from seg.data.classes import column_names

LEADERBOARD_FILE, HISTORY_FILE = "leaderboard.parquet", "history.parquet"
FRAGMENTS_DIR = "fragments"  # per-trial fragments of both tables, not yet compacted (search.fragments)


SEED_COLUMNS: dict[str, tuple[str, str]] = {
    "seed_group": ("string", "name of the original trial whose seed reruns this row belongs to (the original "
                             "included); null outside seed groups"),
    "n_seeds": ("Int64", "completed runs (different seeds) in the row's seed group"),
    "val_miou_mean": ("float64", "mean best_val_miou over the seed group's completed runs"),
    "val_miou_std": ("float64", "sample standard deviation of best_val_miou over the group (null for one run)"),
    "test_miou_mean": ("float64", "mean test_miou over the seed group's completed runs"),
    "test_miou_std": ("float64", "sample standard deviation of test_miou over the group (null for one run)"),
    "objective_mean": ("float64", "mean objective over the seed group's completed runs (what the leaderboard ranks "
                                  "such a row by)"),
}



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


# The paper's per-batch-mean scores of the best checkpoint (seg.metrics.BatchMeanScores): only for comparing
# with the paper's Table 4; nothing ranks on them.
PAPER_COLUMNS: dict[str, tuple[str, str]] = {
    "best_val_miou_paper": ("float64", "paper-style (per-batch mean) validation mIoU of the best checkpoint"),
    "best_val_pixel_acc_paper": ("float64", "paper-style validation pixel accuracy of the best checkpoint"),
    "test_miou_paper": ("float64", "paper-style (per-batch mean) test mIoU of the best checkpoint"),
    "test_pixel_acc_paper": ("float64", "paper-style test pixel accuracy of the best checkpoint"),
}


def leaderboard_schema(iou_cols: tuple[str, ...] = IOU_COLUMNS) -> dict[str, tuple[str, str]]:
    """The leaderboard's columns for an experiment whose classes give `iou_cols` (VOC's 21 by default)."""
    return {**_LEADERBOARD_HEAD, **_iou_schema(iou_cols, "at the best checkpoint (NaN where it never occurs)"),
            **_LEADERBOARD_TAIL}


def history_schema(iou_cols: tuple[str, ...] = IOU_COLUMNS) -> dict[str, tuple[str, str]]:
    """The history's columns for an experiment whose classes give `iou_cols`."""
    return {**_HISTORY_HEAD, **_iou_schema(iou_cols, "of the best checkpoint so far"), **_HISTORY_TAIL}


def _iou_schema(iou_cols: tuple[str, ...], when: str) -> dict[str, tuple[str, str]]:
    return {c: ("float64", f"test IoU of class {c.removeprefix(IOU_PREFIX)} {when}") for c in iou_cols}


_LEADERBOARD_HEAD: dict[str, tuple[str, str]] = {
    "schema_version": ("Int64", f"layout version of this table (search.vocab.SCHEMA_VERSION, now {SCHEMA_VERSION})"),
    "trial_id": ("string", "Ray Tune trial id (unique in the experiment; the row key)"),
    "name": ("string", "fixed-trial name (baseline, 4a, ...) or search-NNNN for searched trials"),
    "kind": ("string", f"{' | '.join(KINDS)} (seed: a rerun of another trial with another seed, search/seeds.py)"),
    "status": ("string", " | ".join(STATUSES)),
    "pruned_at_epoch": ("Int64", "last epoch of a trial ASHA stopped early; null unless pruned"),
    "error": ("string", "the error, e.g. 'NonFiniteLossError: training loss became nan ...'; null unless failed"),
    **_train_columns(),
    "epochs_run": ("Int64", "epochs trained (one result each)"),
    "best_epoch": ("Int64", "epoch of the best val_miou checkpoint"),
    "best_val_miou": ("float64", "best validation mIoU over the epochs run"),
    "max_val_miou_avg5": ("float64", "highest mean validation mIoU of 5 consecutive epochs (fewer before epoch 5) "
                                     "over the epochs run"),
    "best_val_pixel_acc": ("float64", "validation pixel accuracy of the best checkpoint (history: val_pixel_acc "
                                      "is each epoch's own)"),
    "test_miou": ("float64", "test mIoU of the best checkpoint"),
    "test_pixel_acc": ("float64", "test pixel accuracy of the best checkpoint"),
    **PAPER_COLUMNS,
}
_LEADERBOARD_TAIL: dict[str, tuple[str, str]] = {
    "train_loss": ("float64", "training loss of the last epoch run"),
    "val_loss": ("float64", "validation loss of the last epoch run"),
    "wall_seconds": ("float64", "sum of the epochs' wall time (training + evaluation), seconds"),
    "gpu_seconds": ("float64", "wall_seconds x the GPU share the trial was given (0 on CPU)"),
    "images_per_s": ("float64", "training throughput, mean over the epochs run"),
    "compile_seconds": ("float64", "torch.compile time (first epoch), seconds"),
    "git_commit": ("string", "segtune checkout the driver ran from (+dirty when modified)"),
    "versions": ("string", "JSON of package versions (python, torch, ray, optuna, ...)"),
    "config_json": ("string", "JSON of the trial's resolved TrainConfig"),
    HOST: ("string", "host the trial (last) ran on"),
    "device_name": ("string", "training device, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (...)'"),
    "started_at": ("string", "ISO-8601 time the trial first started"),
    "finished_at": ("string", "ISO-8601 time the trial finished (null while running)"),
    # segtune additions beyond docs/DESIGN.md's list
    "node_id": ("string", "Ray node id the trial (last) ran on"),
    "gpu_ids": ("string", "GPU ids Ray assigned (comma-separated; CUDA_VISIBLE_DEVICES of the trial)"),
    "gpu_fraction": ("float64", "GPUs requested per trial (resources.gpus)"),
    "num_failures": ("Int64", "crashes Tune retried from the last checkpoint"),
    "objective": ("float64", "what Optuna is told for a completed trial: best_val_miou for metric val_miou, else the "
                  "metric (a pruned trial is told PRUNED with its per-epoch values; 0.0 for a failed trial)"),
    "pretrained": ("boolean", "whether ImageNet weights were loaded"),
    **SEED_COLUMNS,  # seed_group, n_seeds, val_miou_mean/std, test_miou_mean/std (null outside seed groups)
}

_HISTORY_HEAD: dict[str, tuple[str, str]] = {
    "trial_id": ("string", "Ray Tune trial id"),
    "name": ("string", "trial name"),
    "epoch": ("Int64", "1-based epoch"),
    "train_loss": ("float64", "mean training loss of the epoch"),
    "val_loss": ("float64", "validation loss"),
    "val_miou": ("float64", "validation mIoU of this epoch"),
    "val_pixel_acc": ("float64", "validation pixel accuracy of this epoch"),
    "val_miou_avg5": ("float64", "mean validation mIoU of the last 5 epochs (fewer before epoch 5)"),
    "max_val_miou_avg5": ("float64", "highest val_miou_avg5 so far"),
    "lr": ("float64", "learning rate at the end of the epoch"),
    "images_per_s": ("float64", "training throughput of the epoch"),
    "seconds": ("float64", "wall time of the epoch incl. evaluation"),
    "compile_seconds": ("float64", "torch.compile time (first epoch only)"),
    "best_epoch": ("Int64", "best-val-mIoU epoch so far"),
    "best_val_miou": ("float64", "best validation mIoU so far"),
    "best_val_pixel_acc": ("float64", "validation pixel accuracy of the best checkpoint so far"),
    "test_miou": ("float64", "test mIoU of the best checkpoint so far"),
    "test_pixel_acc": ("float64", "test pixel accuracy of the best checkpoint so far"),
    "val_miou_paper": ("float64", "paper-style (per-batch mean) validation mIoU of this epoch"),
    "val_pixel_acc_paper": ("float64", "paper-style (per-batch mean) validation pixel accuracy of this epoch"),
    **PAPER_COLUMNS,
}
_HISTORY_TAIL: dict[str, tuple[str, str]] = {
    "pretrained": ("boolean", "whether ImageNet weights were loaded"),
}
# VOC's (the default classes); an experiment on other data gets its own iou_<class> columns (experiment_iou_columns)
LEADERBOARD_SCHEMA = leaderboard_schema()
HISTORY_SCHEMA = history_schema()


# ---------------------------------------------------------------------------------------------------------------
# Rows and tables
# ---------------------------------------------------------------------------------------------------------------
def leaderboard_row(rec: dict[str, Any], provenance: dict[str, Any],
                    iou_cols: tuple[str, ...] = IOU_COLUMNS) -> dict[str, Any]:
    cfg, hist = rec.get("config", {}), rec.get("history", [])
    last = hist[-1] if hist else {}
    seconds = [h["seconds"] for h in hist if finite(h.get("seconds"))]
    ips = [h["images_per_s"] for h in hist if finite(h.get("images_per_s"))]
    gpus = float(rec.get("gpus") or rec.get("gpu_fraction") or 0.0)
    status = rec.get("status", RUNNING)
    row = {
        "schema_version": SCHEMA_VERSION, "trial_id": rec["trial_id"], "name": rec.get("name"), "kind": rec.get("kind"), "status": status,
        "pruned_at_epoch": rec.get("pruned_at_epoch") if status == PRUNED else None,
        "error": rec.get("error") if status == FAILED else None,
        **{f: _cell(cfg.get(f)) for f in TrainConfig.model_fields},
        "epochs_run": epochs_run(rec),
        "best_epoch": last.get("best_epoch"), "best_val_miou": last.get("best_val_miou"),
        "max_val_miou_avg5": last.get("max_val_miou_avg5"),
        "best_val_pixel_acc": last.get("best_val_pixel_acc"), "test_miou": last.get("test_miou"),
        "test_pixel_acc": last.get("test_pixel_acc"), **{c: last.get(c) for c in PAPER_COLUMNS},
        **{c: last.get(c) for c in iou_cols},
        "train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
        "wall_seconds": sum(seconds), "gpu_seconds": sum(seconds) * gpus,
        "images_per_s": sum(ips) / len(ips) if ips else None,
        "compile_seconds": sum(h.get("compile_seconds") or 0.0 for h in hist),
        "git_commit": provenance.get("git_commit"), "versions": json.dumps(provenance.get("versions", {}),
                                                                          sort_keys=True),
        "config_json": json.dumps(cfg, sort_keys=True), HOST: rec.get(HOST),
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
    """(leaderboard, history) of an experiment folder; leaderboard best first: by the seed-group mean of the
    objective where there is one, else by the objective (`ranked`)."""
    exp_dir = Path(exp_dir)
    provenance = provenance_of(exp_dir)
    records = collect_records(exp_dir)
    iou_cols = experiment_iou_columns(exp_dir, records)
    board = typed_frame([leaderboard_row(r, provenance, iou_cols) for r in records.values()],
                        leaderboard_schema(iou_cols))
    board = ranked(add_seed_columns(board))
    hist_rows = [{"trial_id": r["trial_id"], "name": r.get("name"), **h}
                 for r in records.values() for h in r.get("history", [])]
    history = typed_frame(hist_rows, history_schema(iou_cols)).sort_values(["trial_id", "epoch"], kind="stable")
    return board, history.reset_index(drop=True)


def experiment_iou_columns(exp_dir: Path, records: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """The experiment's `iou_<class>` columns: from the class names in experiment.json (search.run writes them),
    else the iou_* keys the trials reported, else VOC's."""
    try:
        names = json.loads((Path(exp_dir) / "experiment.json").read_text()).get("classes", {}).get("names")
    except (OSError, ValueError, AttributeError):
        names = None
    if names:
        return iou_columns(column_names(names))
    for rec in records.values():
        keys = [k for k in (rec.get("history") or [{}])[-1] if k.startswith(IOU_PREFIX)]
        if keys:
            return tuple(keys)
    return IOU_COLUMNS


def provenance_of(exp_dir: Path) -> dict[str, Any]:
    """The git commit and package versions experiment.json recorded ({} without it)."""
    try:
        exp = json.loads((exp_dir / "experiment.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"git_commit": exp.get("git_commit"), "versions": exp.get("versions", {})}


def write_tables(exp_dir: Path) -> tuple[Path, Path]:
    """Rebuild leaderboard.parquet and history.parquet from the records, atomically (tmp file + os.replace); the
    fragments that existed before (search.fragments) are in the rebuild, so they are deleted after it."""
    from seg.atomic import atomic_write

    folded = [p for t in ("leaderboard", "history") for p in fragment_files(exp_dir, t)]
    board, history = build_tables(exp_dir)
    out = []
    for df, name in ((board, LEADERBOARD_FILE), (history, HISTORY_FILE)):
        out.append(atomic_write(Path(exp_dir) / name, lambda tmp, df=df: df.to_parquet(tmp, index=False)))
    remove_files(folded)
    return out[0], out[1]


def fragment_files(exp_dir: Path, table: str) -> list[Path]:
    """The complete fragments of one table (`leaderboard` or `history`); tmp files of a write in progress start
    with '.' and are skipped."""
    return sorted(p for p in (Path(exp_dir) / FRAGMENTS_DIR / table).glob("[!.]*.parquet"))


def remove_files(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


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
        (e[:60] + "..." if isinstance(e, str) and len(e) > 60 else e) if s == FAILED else
        (f"at epoch {p}" if s == PRUNED else "") for s, e, p in
        zip(board["status"].head(n), board["error"].head(n), board["pruned_at_epoch"].head(n))]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 70):
        return top.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")


def add_seed_columns(board: pd.DataFrame) -> pd.DataFrame:
    """Fill SEED_COLUMNS on every row of a seed group (an original with at least one `seed` rerun, and those
    reruns); other rows keep nulls. Aggregates are over the group's completed rows."""
    board = board.copy()
    reruns = board["kind"] == SEED
    group = pd.Series(pd.NA, index=board.index, dtype="string")
    group[reruns] = board.loc[reruns, "name"].map(original_name)
    originals = set(group[reruns].dropna())
    is_original = ~reruns & board["name"].isin(originals)
    group[is_original] = board.loc[is_original, "name"]
    board["seed_group"] = group
    done = board[group.notna() & (board["status"] == COMPLETED)].assign(_score=rank_score(board))
    agg = done.groupby("seed_group").agg(
        n_seeds=("name", "size"), val_miou_mean=("best_val_miou", "mean"), val_miou_std=("best_val_miou", "std"),
        test_miou_mean=("test_miou", "mean"), test_miou_std=("test_miou", "std"),
        objective_mean=("_score", "mean"))
    for col in agg.columns:
        board[col] = board["seed_group"].map(agg[col]).astype(SEED_COLUMNS[col][0])
    return board


def best_completed(board: pd.DataFrame) -> pd.Series | None:
    """The best row of a ranked leaderboard among the completed trials with a score (what search.export exports
    and the report calls the best trial), or None."""
    done = board[(board["status"] == COMPLETED) & board["best_val_miou"].map(finite)]
    return done.iloc[0] if len(done) else None


def rank_score(board: pd.DataFrame) -> pd.Series:
    """A row's own score: its objective, else (tables written before the column was filled) its best_val_miou."""
    score = board["best_val_miou"].astype("float64")
    if "objective" in board.columns:
        score = pd.to_numeric(board["objective"], errors="coerce").astype("float64").fillna(score)
    return score


def ranked(board: pd.DataFrame) -> pd.DataFrame:
    """Best first: by the seed-group mean of the objective where a row has one, else its own objective
    (`rank_score`). A seed group's rows stay together (best run first); ties by name. Works on frames without
    the seed columns too."""
    own = score = rank_score(board)
    for mean in ("objective_mean", "val_miou_mean"):  # the second in tables written before the first
        if mean in board.columns:
            score = board[mean].astype("float64").fillna(score)
            break
    group = board["name"].astype("string")
    if "seed_group" in board.columns:
        group = board["seed_group"].astype("string").fillna(group)
    keyed = board.assign(_score=score, _group=group, _own=own)
    keyed = keyed.sort_values(["_score", "_group", "_own", "name"], ascending=[False, True, False, True],
                              na_position="last", kind="stable")
    return keyed.drop(columns=["_score", "_group", "_own"]).reset_index(drop=True)
