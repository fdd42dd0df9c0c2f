"""Reading an experiment folder into one plain object, `ReportData`, and the leaderboard/history preparation.

Anything missing or unreadable becomes an empty frame plus a note (shown in the header): the report renders from
whatever exists. The leaderboard comes back ranked like `search.tables.ranked` (the seed-group mean of the
objective where there is one, else the objective), with every column the sections read present and a unique
`label` per trial. Also here: experiment.json's values (by the keys search.run writes) and the plain facts the sections share (the best
trial, the fixed trials, the display order, what data and hardware the experiment ran on).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from search.report.paper_table4 import FIXED_NAMES
from search.report.values import fmt, labels, present
from search.fragments import read_tables
from search.tables import best_completed, ranked
from search.vocab import FIXED, HOST, IOU_PREFIX
from seg.config import NON_HYPERPARAMETERS, TrainConfig
from seg.data.classes import VOC, ClassInfo, column_names

METRIC_COLUMNS = [
    "best_val_miou",
    "max_val_miou_avg5",
    "objective",
    "objective_mean",
    "best_val_pixel_acc",
    "test_miou",
    "test_pixel_acc",
    "train_loss",
    "val_loss",
    "epochs_run",
    "best_epoch",
    "pruned_at_epoch",
    "wall_seconds",
    "gpu_seconds",
    "images_per_s",
    "compile_seconds",
    "val_miou_mean",
    "val_miou_std",
    "test_miou_mean",
    "test_miou_std",
    "n_seeds",
]  # numeric: coerced, NaN where absent (and every iou_<class> column the leaderboard has)
TEXT_DEFAULTS = [
    ("trial_id", None),
    ("name", None),
    ("kind", "searched"),
    ("status", "completed"),
    ("arch", None),
    ("error", None),
    ("started_at", None),
    ("finished_at", None),
]  # (column, value where the leaderboard lacks it)
CURVE_METRICS = {
    "train_loss": "train loss",
    "val_loss": "val loss",
    "val_miou": "val mIoU",
    "val_pixel_acc": "val pixel accuracy",
}  # history.parquet columns (each epoch's own): the paper's Figures 1-7
MASK_KEYS = ("ids", "images", "gt", "pred", "epoch")  # docs/DESIGN.md, "Masks"

log = logging.getLogger(__name__)


@dataclass
class ReportData:
    """Everything the report reads from one experiment folder."""

    path: Path
    meta: dict[str, Any]  # experiment.json, {} when missing
    lb: pd.DataFrame  # leaderboard, ranked (seed-group mean, else best_val_miou), with a unique `label` per trial
    hist: pd.DataFrame  # history, one row per trial and epoch, sorted by trial and epoch
    notes: list[str] = field(default_factory=list)  # what could not be read, shown in the header

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.resolve().name)

    def masks_file(self, trial_id: str) -> Path:
        return self.path / "masks" / f"{trial_id}.npz"


def load_report_data(exp_dir: Path) -> ReportData:
    """Reads the experiment folder; anything missing or unreadable becomes an empty frame plus a note."""
    exp_dir = Path(exp_dir)
    notes: list[str] = []
    meta = read_meta(exp_dir / "experiment.json", notes)
    lb, hist = read_tables(exp_dir, notes)  # the files, with a running search's newest fragments laid over them
    return ReportData(exp_dir, meta, prepare_leaderboard(lb), prepare_history(hist), notes)


def read_meta(path: Path, notes: list[str]) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        notes.append(f"{path.name} is missing: data set, hardware and dates are taken from the leaderboard.")
        return {}
    except (OSError, ValueError) as e:
        notes.append(f"{path.name} could not be read ({e}).")
        return {}
    return meta if isinstance(meta, dict) else {}


def prepare_leaderboard(lb: pd.DataFrame) -> pd.DataFrame:
    """Every column the sections read, typed; ranked; with `rank` (1 = best) and a unique `label`."""
    lb = lb.copy()
    for col, default in TEXT_DEFAULTS:
        if col not in lb.columns:
            lb[col] = default
    for col in METRIC_COLUMNS:
        lb[col] = pd.to_numeric(lb[col], errors="coerce") if col in lb.columns else np.nan
    for col in iou_columns_of(lb):
        lb[col] = pd.to_numeric(lb[col], errors="coerce")
    lb["trial_id"] = [str(t) if present(t) else f"row{i}" for i, t in enumerate(lb["trial_id"])]
    lb["name"] = [str(n) if present(n) else t for n, t in zip(lb["name"], lb["trial_id"])]
    lb["status"] = lb["status"].fillna("completed").astype(str)
    lb["kind"] = lb["kind"].fillna("searched").astype(str)
    for col in ("trial_id", "name", "status", "kind"):  # str even when empty, for the .str accessor
        lb[col] = lb[col].astype(object)
    # ranked by the seed-group mean of the objective where there is one (a lucky seed does not win), else by it
    lb = ranked(lb)
    lb["rank"] = np.arange(1, len(lb) + 1)
    dup = lb["name"].duplicated(keep=False)  # seed reruns share a name: tell them apart by id
    lb["label"] = pd.Series(
        [f"{n} ({t})" if d else n for n, t, d in zip(lb["name"], lb["trial_id"], dup)],
        index=lb.index,
        dtype=object,
    )
    return lb


def prepare_history(hist: pd.DataFrame) -> pd.DataFrame:
    if hist.empty or "trial_id" not in hist.columns or "epoch" not in hist.columns:
        return pd.DataFrame(columns=["trial_id", "epoch", *CURVE_METRICS])
    hist = hist.copy()
    hist["trial_id"] = hist["trial_id"].astype(str)
    for col in ["epoch", *CURVE_METRICS]:
        hist[col] = pd.to_numeric(hist[col], errors="coerce") if col in hist.columns else np.nan
    return hist.sort_values(["trial_id", "epoch"], kind="stable")


def load_masks(path: Path) -> dict[str, np.ndarray] | None:
    """A trial's masks file (docs/DESIGN.md), or None (logged) when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in MASK_KEYS if k in z.files}
    except Exception as e:
        log.warning("cannot read %s: %s", path, e)
        return None


# ==== facts the sections share ==============================================================================
def iou_columns_of(lb: pd.DataFrame) -> list[str]:
    """The leaderboard's iou_<class> columns, in class order (VOC's 21, or the experiment's own classes)."""
    return [c for c in lb.columns if isinstance(c, str) and c.startswith(IOU_PREFIX)]


def class_info(data: ReportData) -> ClassInfo:
    """The experiment's classes (experiment.json `classes`, written by search.run), else VOC's."""
    c = data.meta.get("classes")
    try:
        names = tuple(str(n) for n in c["names"])
        palette = tuple(tuple(int(v) for v in rgb) for rgb in c["palette"])
        return ClassInfo(names, palette, int(c.get("ignore_index", 255))) if len(palette) == len(names) else VOC
    except (TypeError, KeyError, ValueError):
        return VOC


def class_label(data: ReportData, column: str) -> str:
    """The class name an iou_<class> column stands for (its own name where the experiment's classes say)."""
    info = class_info(data)
    names = dict(zip(column_names(info.names), info.names))
    key = column.removeprefix(IOU_PREFIX)
    return names.get(key, key)



def hyperparameter_columns(lb: pd.DataFrame) -> list[str]:
    """TrainConfig fields present as leaderboard columns, minus run plumbing (device, paths, seed...)."""
    return [f for f in TrainConfig.model_fields if f in lb.columns and f not in NON_HYPERPARAMETERS]


def varying(lb: pd.DataFrame, cols: list[str]) -> list[str]:
    """The columns with more than one value (missing counts as one value)."""
    return [c for c in cols if labels(lb[c]).nunique() > 1] if len(lb) > 1 else []


def best_trial(lb: pd.DataFrame) -> pd.Series | None:
    """The top-ranked completed trial with a score, else the top-ranked scored one, else None."""
    best = best_completed(lb)
    if best is not None:
        return best
    scored = lb[lb["best_val_miou"].notna()]
    return scored.iloc[0] if len(scored) else None  # lb is ranked


def fixed_ids(lb: pd.DataFrame) -> set[str]:
    return set(lb.loc[lb["kind"] == FIXED, "trial_id"])


def display_order(lb: pd.DataFrame) -> pd.DataFrame:
    """Fixed trials in the paper's order first, then the rest by rank."""
    key = lb["name"].str.lower().map({n: i for i, n in enumerate(FIXED_NAMES)}).fillna(len(FIXED_NAMES))
    return lb.assign(_k=key).sort_values(["_k", "rank"], kind="stable").drop(columns="_k")


def meta_value(meta: dict, key: str, kind: type | tuple[type, ...] = object) -> Any:
    """experiment.json's `key` (search.run writes every key the report reads at the top level) when it is a
    `kind`, else None."""
    value = meta.get(key)
    return value if present(value) and isinstance(value, kind) else None


def column_value(lb: pd.DataFrame, col: str) -> str | None:
    """The distinct values of a leaderboard column, joined with ', ', or None."""
    if col not in lb.columns:
        return None
    vals = sorted({str(v) for v in lb[col].dropna()})
    return ", ".join(vals) if vals else None


def extreme(s: pd.Series, pick: Callable) -> str | None:
    """min / max of a column of ISO-8601 times, as ISO-8601."""
    t = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601").dropna()
    return pick(t).isoformat() if len(t) else None


def data_description(data: ReportData) -> str:
    """e.g. 'voc 2007 at 224x224 px; train/val/test = 209/213/210 images'."""
    lb, meta = data.lb, data.meta
    dataset = meta_value(meta, "dataset", str) or column_value(lb, "dataset") or "unknown data set"
    year = meta_value(meta, "year", (str, int)) or column_value(lb, "year")
    year = year if str(dataset).startswith("voc") else None  # a folder or synthetic set has no VOC year
    size = meta_value(meta, "image_size", int) or column_value(lb, "image_size")
    text = f"{dataset}{' ' + str(year) if year and str(year) not in str(dataset) else ''}"
    text += f" at {size}x{size} px" if size and "," not in str(size) else f" at {size} px" if size else ""
    splits = meta_value(meta, "split_sizes", dict)  # search.preflight.prepare_data
    if isinstance(splits, dict) and splits:
        text += f"; {'/'.join(map(str, splits))} = {'/'.join(fmt(v) for v in splits.values())} images"
    return text


def hardware_text(data: ReportData) -> str:
    """e.g. '2 CPUs; 1 GPUs; NVIDIA H100': from experiment.json, else what the trials ran on."""
    hw = meta_value(data.meta, "hardware", dict) or {}  # search.provenance.hardware
    cpus = next((hw[k] for k in ("cluster_cpus", "cpu_count") if present(hw.get(k))), None)
    gpus = hw.get("cluster_gpus")
    names = hw.get("gpu_names") or []
    nodes = hw.get("cluster_nodes")
    parts = [
        f"{fmt(nodes)} node(s)" if nodes else "",
        f"{fmt(cpus)} CPUs" if cpus is not None else "",
        f"{fmt(gpus)} GPUs" if gpus is not None else "",
        ", ".join(sorted(set(map(str, names)))),
        str(hw.get("cpu") or ""),
        f"host {hw[HOST]}" if hw.get(HOST) else "",
    ]
    text = "; ".join(p for p in parts if p)
    if not text:  # no experiment.json: what the trials ran on
        text = "; ".join(filter(None, [column_value(data.lb, "device_name"), column_value(data.lb, HOST)]))
    return text or "unknown"

