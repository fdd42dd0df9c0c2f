"""The experiment report: one self-contained HTML page built from an experiment folder (docs/DESIGN.md).

    python -m search.report results/<name>      # writes results/<name>/report.html

Reads `experiment.json` (optional), `leaderboard.parquet`, `history.parquet` and `masks/<trial_id>.npz`; never
imports Ray. The page works offline from file://: plotly.js is inlined once in <head>, the figures carry only their
data, the leaderboard is a small vanilla-JS table, and mask thumbnails are base64 PNG/JPEG. Every section renders
from whatever exists and says why it is empty. The search calls `write_report` after each finished trial.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots
from PIL import Image

from search.paper_table4 import FIXED_NAMES, PAPER_DATASET, PAPER_IMAGE_SIZE, TABLE4, TABLE4_COLUMNS
from search.tables import ranked
from search.vocab import HOST, IOU_COLUMNS, STATUSES
from seg.data.classes import VOC_CLASSES
from seg.data.voc import VOC_PALETTE

REPORT_NAME = "report.html"
METRIC_COLUMNS = [
    "best_val_miou",
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
    *IOU_COLUMNS,
]
CURVE_METRICS = {
    "train_loss": "train loss",
    "val_loss": "val loss",
    "val_miou": "val mIoU",
    "val_pixel_acc": "val pixel accuracy",
}  # the paper's Figures 1-7
# TrainConfig fields about where/how a run executes, not what it learns: never shown as hyperparameters
RUN_FIELDS = {
    "data_root",
    "cache_dir",
    "download",
    "device",
    "num_masks",
    "pretrained_path",
    "amp",
    "channels_last",
    "compile",
    "fused_optimizer",
    "seed",
    "synthetic_counts",
    "synthetic_size",
}

MAX_CURVE_TRIALS = 200  # learning-curve traces: 4 per trial
MAX_HEATMAP_ROWS = 80
LOG_LOSS_RATIO = 1e3  # loss panels switch to a log axis when the largest loss is this many times the smallest
GALLERY_TOP = 6  # searched trials in the mask gallery, after the fixed ones
THUMB_PX = 96  # stored thumbnail edge; smaller masks are stored as-is and scaled up by CSS
OVERLAY_ALPHA = 0.55
MIN_IMPORTANCE_TRIALS = 4
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
]
STATUS_COLORS = {"completed": "#2ca02c", "pruned": "#ff7f0e", "failed": "#d62728", "running": "#1f77b4"}

log = logging.getLogger(__name__)


# ==== loading ===============================================================================================
@dataclass
class Experiment:
    path: Path
    meta: dict[str, Any]  # experiment.json, {} when missing
    lb: pd.DataFrame  # leaderboard, ranked (seed-group mean, else best_val_miou), with a unique `label` per trial
    hist: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # what could not be read, shown in the header

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.resolve().name)


def load_experiment(exp_dir: Path) -> Experiment:
    """Reads the experiment folder; anything missing or unreadable becomes an empty frame plus a note."""
    exp_dir = Path(exp_dir)
    notes: list[str] = []
    meta: dict[str, Any] = {}
    try:
        meta = json.loads((exp_dir / "experiment.json").read_text())
    except FileNotFoundError:
        notes.append(
            "experiment.json is missing: data set, hardware and dates are taken from the leaderboard."
        )
    except (OSError, ValueError) as e:
        notes.append(f"experiment.json could not be read ({e}).")
    lb = _read_parquet(exp_dir / "leaderboard.parquet", notes)
    hist = _read_parquet(exp_dir / "history.parquet", notes)
    return Experiment(
        exp_dir,
        meta if isinstance(meta, dict) else {},
        _prepare_leaderboard(lb),
        _prepare_history(hist),
        notes,
    )


def _read_parquet(path: Path, notes: list[str]) -> pd.DataFrame:
    if not path.is_file():
        notes.append(f"{path.name} does not exist yet.")
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as e:  # a damaged file must not take the whole report down
        notes.append(f"{path.name} could not be read ({type(e).__name__}: {e}).")
        return pd.DataFrame()


def _prepare_leaderboard(lb: pd.DataFrame) -> pd.DataFrame:
    lb = lb.copy()
    for col, default in [
        ("trial_id", None),
        ("name", None),
        ("kind", "searched"),
        ("status", "completed"),
        ("arch", None),
        ("error", None),
        ("started_at", None),
        ("finished_at", None),
    ]:
        if col not in lb.columns:
            lb[col] = default
    for col in METRIC_COLUMNS:
        lb[col] = pd.to_numeric(lb[col], errors="coerce") if col in lb.columns else np.nan
    lb["trial_id"] = [str(t) if _present(t) else f"row{i}" for i, t in enumerate(lb["trial_id"])]
    lb["name"] = [str(n) if _present(n) else t for n, t in zip(lb["name"], lb["trial_id"])]
    lb["status"] = lb["status"].fillna("completed").astype(str)
    lb["kind"] = lb["kind"].fillna("searched").astype(str)
    for col in ("trial_id", "name", "status", "kind"):  # str even when empty, for the .str accessor
        lb[col] = lb[col].astype(object)
    # ranked by the seed-group mean of best_val_miou where there is one (a lucky seed does not win), else by it
    lb = ranked(lb)
    lb["rank"] = np.arange(1, len(lb) + 1)
    dup = lb["name"].duplicated(keep=False)  # seed reruns share a name: tell them apart by id
    lb["label"] = pd.Series(
        [f"{n} ({t})" if d else n for n, t, d in zip(lb["name"], lb["trial_id"], dup)],
        index=lb.index,
        dtype=object,
    )
    return lb


def _prepare_history(hist: pd.DataFrame) -> pd.DataFrame:
    if hist.empty or "trial_id" not in hist.columns or "epoch" not in hist.columns:
        return pd.DataFrame(columns=["trial_id", "epoch", *CURVE_METRICS])
    hist = hist.copy()
    hist["trial_id"] = hist["trial_id"].astype(str)
    for col in ["epoch", *CURVE_METRICS]:
        hist[col] = pd.to_numeric(hist[col], errors="coerce") if col in hist.columns else np.nan
    return hist.sort_values(["trial_id", "epoch"], kind="stable")


def _present(v: Any) -> bool:
    return (
        v is not None and not (isinstance(v, float) and math.isnan(v)) and v is not pd.NA and v is not pd.NaT
    )


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def hyperparameter_columns(lb: pd.DataFrame) -> list[str]:
    """TrainConfig fields present as leaderboard columns, minus run plumbing (device, paths, seed...)."""
    try:
        from seg.config import TrainConfig

        fields = list(TrainConfig.model_fields)
    except Exception:  # fall back to the resolved configs stored with each trial
        fields = []
        for cj in lb.get("config_json", pd.Series(dtype=object)).dropna():
            try:
                fields += [k for k in json.loads(cj) if k not in fields]
            except ValueError:
                pass
    return [f for f in fields if f in lb.columns and f not in RUN_FIELDS]


def varying(lb: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if _labels(lb[c]).nunique() > 1] if len(lb) > 1 else []


def _labels(s: pd.Series) -> pd.Series:
    """Values as category labels; missing ones (None / NaN) become "None", the config's spelling."""
    return s.map(lambda v: str(v) if _present(v) else "None").astype(object)


def best_trial(lb: pd.DataFrame) -> pd.Series | None:
    done = lb[(lb["status"] == "completed") & lb["best_val_miou"].notna()]
    pool = done if len(done) else lb[lb["best_val_miou"].notna()]
    return pool.iloc[0] if len(pool) else None  # lb is ranked


def fixed_trials(lb: pd.DataFrame) -> dict[str, pd.Series]:
    """The best row per paper experiment name (case-insensitive), in the paper's order."""
    out = {}
    names = lb["name"].str.lower()
    for n in FIXED_NAMES:
        rows = lb[names == n]
        if len(rows):
            out[n] = rows.iloc[0]
    return out


# ==== small html helpers ====================================================================================
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any, digits: int = 4) -> str:
    if not _present(v):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "—"
        if float(v).is_integer() and abs(v) >= 1:
            return f"{int(v):,}"
        return f"{v:.{digits}f}" if abs(v) >= 10**-digits or v == 0 else f"{v:.2e}"
    return str(v)


def _seconds(v: Any) -> str:
    if not _finite(v):
        return "—"
    v = float(v)
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min" if v < 7200 else f"{v / 3600:.2f} h"


def _empty(why: str) -> str:
    return f'<p class="empty">{_e(why)}</p>'


def _section(sid: str, title: str, body: str, intro: str = "") -> str:
    intro = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{intro}{body}</section>'


def _figure(fig: go.Figure, div_id: str, height: int, margin: dict | None = None) -> str:
    fig.update_layout(template="plotly_white", height=height, margin=margin or dict(l=60, r=30, t=50, b=50))
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOT_CONFIG,
        default_height=f"{height}px",
    )


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escape with _e before)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _lookup(meta: dict, *keys: str, kind: type | tuple[type, ...] = object, depth: int = 3) -> Any:
    """The first of `keys` in experiment.json whose value is a `kind`, searched breadth first.

    experiment.json's nesting belongs to the search, so the report looks values up by name, not by path."""
    level = [meta]
    for _ in range(depth):
        for d in level:
            for k in keys:
                if _present(d.get(k)) and isinstance(d[k], kind):
                    return d[k]
        level = [v for d in level for v in d.values() if isinstance(v, dict)]
    return None


def _when(v: Any) -> str:
    """ISO-8601 -> '2026-11-24 10:00 UTC'."""
    t = pd.to_datetime(v, errors="coerce", utc=True, format="ISO8601") if _present(v) else pd.NaT
    return "—" if pd.isna(t) else t.strftime("%Y-%m-%d %H:%M UTC")


def hardware_text(exp: Experiment) -> str:
    hw = _lookup(exp.meta, "hardware", kind=dict) or {}
    cpus = next((hw[k] for k in ("cluster_cpus", "cpus", "cpu_count") if _present(hw.get(k))), None)
    gpus = next((hw[k] for k in ("cluster_gpus", "gpus", "gpu_count") if _present(hw.get(k))), None)
    names = hw.get("gpu_names") or []
    nodes = hw.get("cluster_nodes")
    parts = [
        f"{_fmt(nodes)} node(s)" if nodes else "",
        f"{_fmt(cpus)} CPUs" if cpus is not None else "",
        f"{_fmt(gpus)} GPUs" if gpus is not None else "",
        ", ".join(sorted(set(map(str, names)))),
        str(hw.get("cpu") or ""),
        f"host {hw[HOST]}" if hw.get(HOST) else "",
    ]
    text = "; ".join(p for p in parts if p)
    if not text:  # no experiment.json: what the trials ran on
        text = "; ".join(
            filter(None, [_column_value(exp.lb, "device_name"), _column_value(exp.lb, HOST)])
        )
    return text or "unknown"


def _extreme(s: pd.Series, pick) -> str | None:
    t = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601").dropna()
    return pick(t).isoformat() if len(t) else None


def _column_value(lb: pd.DataFrame, col: str) -> str | None:
    if col not in lb.columns:
        return None
    vals = sorted({str(v) for v in lb[col].dropna()})
    return ", ".join(vals) if vals else None


def _trial_colors(lb: pd.DataFrame) -> dict[str, str]:
    return {t: COLORS[i % len(COLORS)] for i, t in enumerate(_display_order(lb)["trial_id"])}


def _display_order(lb: pd.DataFrame) -> pd.DataFrame:
    """Fixed trials in the paper's order first, then the rest by rank."""
    key = lb["name"].str.lower().map({n: i for i, n in enumerate(FIXED_NAMES)}).fillna(len(FIXED_NAMES))
    return lb.assign(_k=key).sort_values(["_k", "rank"], kind="stable").drop(columns="_k")


# ==== 1. header =============================================================================================
def data_description(exp: Experiment) -> str:
    """e.g. 'voc 2007 at 224x224 px; train/val/test = 209/213/210 images'."""
    lb, meta = exp.lb, exp.meta
    dataset = _lookup(meta, "dataset", kind=str) or _column_value(lb, "dataset") or "unknown data set"
    year = _lookup(meta, "year", kind=(str, int)) or _column_value(lb, "year")
    size = _lookup(meta, "image_size", kind=int) or _column_value(lb, "image_size")
    text = f"{dataset}{' ' + str(year) if year and str(year) not in str(dataset) else ''}"
    text += f" at {size}x{size} px" if size and "," not in str(size) else f" at {size} px" if size else ""
    splits = _lookup(meta, "split_sizes", "splits", "sizes", "n_images", kind=dict)
    if isinstance(splits, dict) and splits:
        text += f"; {'/'.join(map(str, splits))} = {'/'.join(_fmt(v) for v in splits.values())} images"
    return text


def section_header(exp: Experiment) -> str:
    lb, meta = exp.lb, exp.meta
    counts = lb["status"].value_counts()
    status_txt = ", ".join(
        f'<span class="st st-{_e(s)}">{_e(s)}</span> {counts.get(s, 0)}'
        for s in [*STATUSES, *sorted(set(counts.index) - set(STATUSES))]
        if counts.get(s, 0) or s in ("completed", "pruned", "failed")
    )
    started = _lookup(meta, "started", "started_at", kind=str) or _extreme(lb["started_at"], min)
    finished = _lookup(meta, "finished", "finished_at", kind=str) or _extreme(lb["finished_at"], max)
    bt = best_trial(lb)
    best = (
        f'<b id="best-trial">{_e(bt["label"])}</b> ({_e(bt["trial_id"])}, {_e(bt.get("arch") or "")}): '
        f"val mIoU <b>{_fmt(bt['best_val_miou'])}</b>, test mIoU {_fmt(bt['test_miou'])}, "
        f"test pixel acc. {_fmt(bt['test_pixel_acc'])}, {_e(bt['status'])}"
        if bt is not None
        else "no trial has a validation score yet"
    )
    space = _lookup(meta, "space_file", "space_path", "space", kind=str)
    space_hash = _lookup(meta, "space_hash", kind=str)
    rows = [
        (
            "Experiment",
            f"<b>{_e(exp.name)}</b>"
            + (f" — space {_e(space)}" if space else "")
            + (f" <code>{_e(str(space_hash)[:12])}</code>" if space_hash else ""),
        ),
        ("Data", _e(data_description(exp))),
        ("Hardware", _e(hardware_text(exp))),
        ("Dates", f"{_when(started)} → {_when(finished) if _present(finished) else 'still running'}"),
        ("Trials", f'<span id="trial-count">{len(lb)}</span>: <span id="status-counts">{status_txt}</span>'),
        (
            "Compute",
            f"{_fmt(lb['epochs_run'].sum(min_count=1))} epochs, training {_seconds(lb['wall_seconds'].sum())}"
            + (f", {lb['gpu_seconds'].sum() / 3600:.2f} GPU-hours" if lb["gpu_seconds"].sum() > 0 else ""),
        ),
        ("Best trial", best),
    ]
    body = '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"
    if exp.notes:
        body += "".join(f'<p class="note">{_e(n)}</p>' for n in exp.notes)
    if meta:
        dump = _e(json.dumps(meta, indent=2, default=str))
        body += f"<details><summary>experiment.json</summary><pre>{dump}</pre></details>"
    return body


# ==== 2. leaderboard ========================================================================================
def section_leaderboard(exp: Experiment) -> str:
    lb = exp.lb
    if lb.empty:
        return _empty("No trial has finished yet: leaderboard.parquet is empty or missing.")
    hp = varying(lb, hyperparameter_columns(lb))
    seeds = "val_miou_mean" in lb.columns and lb["val_miou_mean"].notna().any()
    cols: list[tuple[str, str, str]] = [  # (header, column, css class)
        ("#", "rank", ""),
        ("name", "label", ""),
        ("kind", "kind", ""),
        ("status", "status", ""),
        ("arch", "arch", ""),
        ("val mIoU", "best_val_miou", ""),
        ("val px acc", "best_val_pixel_acc", ""),
        ("test mIoU", "test_miou", ""),
        ("test px acc", "test_pixel_acc", ""),
    ]
    if seeds:
        cols += [
            ("val mIoU mean ± std", "val_miou_mean", ""),
            ("test mIoU mean ± std", "test_miou_mean", ""),
            ("seeds", "n_seeds", ""),
        ]
    cols += [
        ("epochs", "epochs_run", ""),
        ("best ep.", "best_epoch", ""),
        ("pruned at", "pruned_at_epoch", ""),
        ("train s", "wall_seconds", ""),
        ("img/s", "images_per_s", ""),
    ]
    cols += [(c, c, "hp") for c in hp if c != "arch"]
    cols += [(c.removeprefix("iou_"), c, "iou") for c in IOU_COLUMNS] + [("error", "error", "")]
    head = "".join(f'<th class="{k}" data-col="{i}">{_e(h)}</th>' for i, (h, _, k) in enumerate(cols))
    rows = []
    for _, r in lb.iterrows():
        cells = []
        for _, c, k in cols:
            v = r.get(c)
            num = _finite(v) and not isinstance(v, (bool, np.bool_))
            if c in ("val_miou_mean", "test_miou_mean") and num:
                txt = f"{_fmt(v)} ± {_fmt(r.get(c.replace('mean', 'std')))}"
            elif c == "error" and _present(v):
                txt = f'<span title="{_e(v)}">{_e(str(v)[:60])}</span>'
            elif c == "status":
                txt = f'<span class="st st-{_e(v)}">{_e(v)}</span>'
            else:
                txt = _e(_fmt(v, 3 if c.startswith("iou_") else 4))
            sort = f' data-v="{float(v)!r}"' if num else ""
            cells.append(f'<td class="{k}"{sort}>{txt}</td>')
        attrs = " ".join(
            f'data-{a}="{_e(r.get(a) if _present(r.get(a)) else "")}"' for a in ("status", "kind", "arch")
        )
        rows.append(f'<tr {attrs} data-name="{_e(r["label"]).lower()}">{"".join(cells)}</tr>')

    def options(col: str) -> str:
        vals = sorted({str(v) for v in lb[col].dropna()})
        return '<option value="">all</option>' + "".join(
            f'<option value="{_e(v)}">{_e(v)}</option>' for v in vals
        )

    controls = (
        '<div class="controls">'
        f'<label>status <select data-filter="status">{options("status")}</select></label>'
        f'<label>architecture <select data-filter="arch">{options("arch")}</select></label>'
        f'<label>fixed / searched <select data-filter="kind">{options("kind")}</select></label>'
        '<label>name <input type="search" data-filter="name" placeholder="filter"></label>'
        '<label><input type="checkbox" data-toggle="hp" checked> hyperparameters</label>'
        '<label><input type="checkbox" data-toggle="iou"> per-class test IoU</label>'
        '<span class="shown"></span></div>'
    )
    table = (
        f'<div class="tablewrap"><table id="lb-table" class="lb hide-iou"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    body = controls + table
    if seeds:
        body += section_seed_table(lb)
    return body


def section_seed_table(lb: pd.DataFrame) -> str:
    """One row per seed group, ranked by the mean best val mIoU over its seeds."""
    group = "seed_group" if "seed_group" in lb.columns else "name"
    g = lb[lb["val_miou_mean"].notna()].drop_duplicates(group).sort_values("val_miou_mean", ascending=False)
    rows = [
        [
            _e(r[group]),
            _e(r["name"]),
            f"{_fmt(r['val_miou_mean'])} ± {_fmt(r['val_miou_std'])}",
            f"{_fmt(r['test_miou_mean'])} ± {_fmt(r['test_miou_std'])}",
            _fmt(r["n_seeds"]),
        ]
        for _, r in g.iterrows()
    ]
    return (
        '<h3>Seed-robust ranking</h3><p class="intro">Mean ± standard deviation over reruns with different seeds; '
        "ranked by the mean validation mIoU.</p>"
        + _table(["seed group", "trial", "val mIoU", "test mIoU", "seeds"], rows, "small seeds")
    )


# ==== 3. Table 4 ============================================================================================
def section_table4(exp: Experiment) -> str:
    fixed = fixed_trials(exp.lb)
    note = (
        f"Paper: {PAPER_DATASET} at {PAPER_IMAGE_SIZE}x{PAPER_IMAGE_SIZE} px. "
        f"segtune: {data_description(exp)}. Δ = segtune − paper; segtune's values are those of the "
        "best-validation-mIoU checkpoint, as in the paper."
    )
    if not fixed:
        return f'<p class="intro">{_e(note)}</p>' + _empty(
            f"No fixed trial ({', '.join(FIXED_NAMES)}) in this experiment, so there is nothing to "
            "line up with the paper's Table 4 (run spaces/paper.yaml)."
        )
    head = ["model", "status"] + [
        f'{_e(t)}<br><span class="sub">paper · segtune · Δ</span>' for t in TABLE4_COLUMNS.values()
    ]
    rows = []
    for name, (label, paper) in TABLE4.items():
        r = fixed.get(name)
        cells = [f"<b>{_e(label)}</b>", _e(r["status"]) if r is not None else "not run"]
        for col, pv in paper.items():
            ours = r[col] if r is not None else np.nan
            diff = ours - pv if _finite(ours) else np.nan
            cls = "" if not _finite(diff) else "pos" if diff > 0 else "neg" if diff < 0 else ""
            cells.append(
                f'<span class="paper">{pv:.5f}</span> · <span class="ours">{_fmt(ours, 5)}</span> · '
                f'<span class="diff {cls}">{"—" if not _finite(diff) else f"{diff:+.5f}"}</span>'
            )
        rows.append(f'<tr data-model="{_e(name)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        f'<table id="t4-table" class="small t4"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    fig = go.Figure()
    labels = [TABLE4[n][0] for n in FIXED_NAMES]
    for who, vals, color in [
        ("paper", [TABLE4[n][1]["test_miou"] for n in FIXED_NAMES], "#9e9e9e"),
        ("segtune", [fixed[n]["test_miou"] if n in fixed else None for n in FIXED_NAMES], "#1f77b4"),
    ]:
        fig.add_bar(
            x=labels,
            y=vals,
            name=who,
            marker_color=color,
            hovertemplate="%{x}: %{y:.4f}<extra>" + who + "</extra>",
        )
    fig.update_layout(
        barmode="group",
        title=dict(text="Test mIoU: paper vs segtune"),
        yaxis_title="test mIoU",
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
    )
    return (
        f'<p class="intro">{_e(note)}</p><div class="row"><div>{table}</div><div class="grow">'
        f"{_figure(fig, 'fig-table4', 340)}</div></div>"
    )


# ==== 4. learning curves ====================================================================================
def section_curves(exp: Experiment) -> str:
    lb, hist = exp.lb, exp.hist
    if hist.empty:
        return _empty("No per-epoch history yet (history.parquet is empty or missing).")
    order = _display_order(lb)
    order = order[order["trial_id"].isin(set(hist["trial_id"]))]
    # trials in the history but not (yet) on the leaderboard, e.g. still running
    extra = sorted(set(hist["trial_id"]) - set(order["trial_id"]))
    trials = [(r["trial_id"], r["label"], r["status"], r.get("pruned_at_epoch")) for _, r in order.iterrows()]
    trials += [
        (t, str(hist.loc[hist["trial_id"] == t, "name"].iloc[0]) if "name" in hist else t, "running", None)
        for t in extra
    ]
    note = ""
    if len(trials) > MAX_CURVE_TRIALS:
        note = f"Showing the fixed trials and the top {MAX_CURVE_TRIALS} of {len(trials)} trials by val mIoU."
        trials = trials[:MAX_CURVE_TRIALS]
    colors = _trial_colors(lb)
    fixed_set = set(lb.loc[lb["kind"] == "fixed", "trial_id"])
    fixed_ids = [t for t, *_ in trials if t in fixed_set]
    ranked = [t for t in lb["trial_id"] if t in {x[0] for x in trials}]
    groups = {
        "fixed trials + top 5": fixed_ids + [t for t in ranked if t not in fixed_ids][:5],
        "fixed trials": fixed_ids,
        "top 10": ranked[:10],
        "pruned trials": [t for t, _, s, _ in trials if s == "pruned"],
        "all trials": [t for t, *_ in trials],
    }
    groups = {k: v for k, v in groups.items() if v}
    default = next(iter(groups.values()))
    fig = make_subplots(rows=2, cols=2, subplot_titles=list(CURVE_METRICS.values()), horizontal_spacing=0.08, vertical_spacing=0.12)
    for tid, label, status, pruned_at in trials:
        h = hist[hist["trial_id"] == tid]
        n = len(h)
        end_symbol = {"pruned": "x", "failed": "diamond", "running": "circle-open"}.get(status)
        for i, (col, title) in enumerate(CURVE_METRICS.items()):
            fig.add_trace(
                go.Scatter(
                    x=h["epoch"],
                    y=h[col],
                    name=label,
                    legendgroup=tid,
                    showlegend=i == 0,
                    meta=tid,
                    mode="lines+markers",
                    line=dict(
                        color=colors.get(tid, "#555"),
                        width=1.6,
                        dash="dash" if status in ("pruned", "failed") else "solid",
                    ),
                    marker=dict(
                        size=[0] * (n - 1) + [11 if end_symbol else 0],
                        symbol=end_symbol or "circle",
                        color=colors.get(tid, "#555"),
                    ),
                    visible=True if tid in default else "legendonly",
                    hovertemplate=f"{_e(label)} ({status})<br>epoch %{{x}}<br>{title} %{{y:.4f}}<extra></extra>",
                ),
                row=i // 2 + 1,
                col=i % 2 + 1,
            )
    for i in range(4):
        fig.update_xaxes(title_text="epoch", row=i // 2 + 1, col=i % 2 + 1)
    for i, col in enumerate(["train_loss", "val_loss"]):  # a diverged trial would flatten every other curve
        v = hist[col][np.isfinite(hist[col]) & (hist[col] > 0)]
        if len(v) and v.max() / v.min() > LOG_LOSS_RATIO:
            fig.update_yaxes(type="log", row=1, col=i + 1)
            fig.layout.annotations[i].text += " (log scale)"
    dtick = max(1, round(hist["epoch"].max() / 10)) if hist["epoch"].notna().any() else 1
    fig.update_xaxes(tick0=0 if dtick > 1 else 1, dtick=dtick)
    fig.update_layout(legend=dict(title=dict(text="trial (click to toggle)")), hovermode="closest")
    opts = "".join(f'<option value="g:{_e(k)}">{_e(k)}</option>' for k in groups)
    opts += "".join(f'<option value="t:{_e(t)}">{_e(lbl)} — {_e(s)}</option>' for t, lbl, s, _ in trials)
    select = (
        f'<div class="controls"><label>show <select id="curve-select" data-fig="fig-curves">{opts}</select>'
        f'</label><span class="hint">Dashed with × at the end: pruned at that epoch; dashed with ◆: failed; '
        f"solid: ran all its epochs. Click legend entries to add or remove trials.</span></div>"
        f"<script>window.SEGTUNE_CURVE_GROUPS = {json.dumps(groups)};</script>"
    )
    return (f'<p class="note">{_e(note)}</p>' if note else "") + select + _figure(fig, "fig-curves", 720)


# ==== 5. mask gallery =======================================================================================
def _b64(img: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 80} if fmt == "JPEG" else {"optimize": True}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _small(img: Image.Image, resample: int) -> Image.Image:
    return img if max(img.size) <= THUMB_PX else img.resize((THUMB_PX, THUMB_PX), resample)


def mask_png(mask: np.ndarray) -> str:
    """(S,S) uint8 class ids -> base64 PNG in the VOC palette (255 = void in cream)."""
    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(VOC_PALETTE.astype(np.uint8).flatten().tolist())
    return _b64(_small(img, Image.NEAREST), "PNG")


def image_jpeg(image: np.ndarray) -> str:
    return _b64(
        _small(Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB"), Image.BILINEAR), "JPEG"
    )


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend the palette colour of every non-background, non-void pixel into the image."""
    colour = VOC_PALETTE[mask].astype(np.float32)
    on = ((mask != 0) & (mask != 255))[..., None]
    out = np.where(on, (1 - OVERLAY_ALPHA) * image.astype(np.float32) + OVERLAY_ALPHA * colour, image)
    return out.round().clip(0, 255).astype(np.uint8)


def load_masks(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("ids", "images", "gt", "pred", "epoch") if k in z.files}
    except Exception as e:
        log.warning("cannot read %s: %s", path, e)
        return None


def gallery_trials(lb: pd.DataFrame, mask_dir: Path) -> list[pd.Series]:
    """Fixed trials (the paper's first, in its order), then the top searched trials, all with a masks file."""
    have = lambda r: (mask_dir / f"{r['trial_id']}.npz").is_file()  # noqa: E731
    fixed = [r for _, r in _display_order(lb[lb["kind"] == "fixed"]).iterrows() if have(r)]
    fixed_ids = {r["trial_id"] for r in fixed}
    top = [
        r
        for _, r in lb.iterrows()
        if r["trial_id"] not in fixed_ids and have(r) and _finite(r["best_val_miou"])
    ][:GALLERY_TOP]
    return fixed + top


def _thumbs(*srcs: str) -> str:
    return "".join(f'<img src="{s}" alt="">' for s in srcs)


def _mask_cell(image: np.ndarray | None, mask: np.ndarray) -> str:
    """The mask in the palette, and the mask on its image when the sizes agree."""
    on_image = image is not None and image.shape[:2] == mask.shape
    return f"<td>{_thumbs(mask_png(mask), *([image_jpeg(overlay(image, mask))] if on_image else []))}</td>"


def section_gallery(exp: Experiment) -> str:
    mask_dir = exp.path / "masks"
    trials = gallery_trials(exp.lb, mask_dir)
    if not trials:
        why = "no masks/ folder" if not mask_dir.is_dir() else "no fixed or top trial has a masks/<trial_id>.npz"
        return _empty(f"No predicted masks to show ({why}; trials keep masks only when num_masks > 0).")
    loaded = [(r, load_masks(mask_dir / f"{r['trial_id']}.npz")) for r in trials]
    loaded = [(r, m) for r, m in loaded if m is not None and {"ids", "pred"} <= set(m)]
    ref = next((m for _, m in loaded if {"images", "gt"} <= set(m)), None)
    if ref is None:
        return _empty("The masks files could not be read (see the log).")
    ids = [str(i) for i in ref["ids"]]
    head = "<th>trial</th>" + "".join(f"<th>{_e(i)}</th>" for i in ids)
    top = "".join(
        f"<td>{_thumbs(image_jpeg(im), mask_png(gt), image_jpeg(overlay(im, gt)))}</td>"
        for im, gt in zip(ref["images"], ref["gt"])
    )
    rows = [f"<tr><th>image / ground truth</th>{top}</tr>"]
    for r, m in loaded:
        where = {str(i): k for k, i in enumerate(m["ids"])}
        images = m.get("images", ref["images"])  # a searched image_size gives each trial its own images
        cells = "".join(
            "<td>—</td>" if where.get(i) is None else _mask_cell(images[where[i]], m["pred"][where[i]]) for i in ids
        )
        ep = f", epoch {int(m['epoch'])}" if "epoch" in m and np.size(m["epoch"]) == 1 else ""
        sub = f"{_e(r['kind'])}, val mIoU {_fmt(r['best_val_miou'])}{ep}"
        rows.append(f'<tr data-trial="{_e(r["trial_id"])}"><th>{_e(r["label"])}<br><span class="sub">{sub}</span>'
                    f"</th>{cells}</tr>")
    swatches = [*zip(VOC_CLASSES, VOC_PALETTE[:21]), ("void (not scored)", VOC_PALETTE[255])]
    legend = "".join(f'<span><i style="background:rgb({r},{g},{b})"></i>{_e(c)}</span>' for c, (r, g, b) in swatches)
    missing = len(trials) - len(loaded)
    note = f'<p class="note">{missing} masks file(s) could not be read.</p>' if missing else ""
    return (
        f'<div class="legend">{legend}</div>{note}<div class="tablewrap tall"><table id="gallery-table" '
        f'class="gallery"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        '<p class="hint">Top row: the val image, its ground truth, and the ground truth on the image. Trial rows: '
        "the prediction of the best-val-mIoU checkpoint (Figure 8) and the prediction on the image (Figure 9).</p>"
    )


# ==== 6. per-class IoU heatmap ==============================================================================
def section_heatmap(exp: Experiment) -> str:
    lb = exp.lb
    rows = lb[lb[list(IOU_COLUMNS)].notna().any(axis=1)] if len(lb) else lb
    if rows.empty:
        return _empty("No trial reports per-class IoU yet (the iou_<class> columns are empty).")
    note = ""
    if len(rows) > MAX_HEATMAP_ROWS:
        note = f"Top {MAX_HEATMAP_ROWS} of {len(rows)} trials by val mIoU."
        rows = rows.iloc[:MAX_HEATMAP_ROWS]
    z = rows[list(IOU_COLUMNS)].to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(VOC_CLASSES),
            y=list(rows["label"]),
            colorscale="Viridis",
            zmin=0,
            zmax=max(float(np.nanmax(z)), 1e-6),
            colorbar=dict(title=dict(text="test IoU")),
            hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(tickangle=-45, type="category")
    height = 160 + 22 * len(rows)
    return (f'<p class="note">{_e(note)}</p>' if note else "") + _figure(fig, "fig-heatmap", max(height, 300))


# ==== 7. hyperparameters ====================================================================================
def _numeric_param(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and s.notna().all()


def _log_axis(s: pd.Series) -> bool:
    return _numeric_param(s) and (s > 0).all() and s.max() / s.min() >= 100


def section_hyperparameters(exp: Experiment) -> str:
    lb = exp.lb
    scored = lb[lb["best_val_miou"].notna()]
    hp = varying(scored, hyperparameter_columns(scored))
    parts = []
    if len(scored) < 2 or not hp:
        parts.append(
            _empty(
                f"Parallel coordinates need at least two scored trials with a varying hyperparameter "
                f"({len(scored)} scored, {len(hp)} varying)."
            )
        )
    else:
        dims = []
        for c in hp:
            s = scored[c]
            if _numeric_param(s):
                logged = _log_axis(s)
                dims.append(dict(label=f"log10 {c}" if logged else c, values=np.log10(s) if logged else s))
            else:
                cats = sorted(_labels(s).unique())
                dims.append(
                    dict(
                        label=c,
                        values=_labels(s).map({v: i for i, v in enumerate(cats)}),
                        tickvals=list(range(len(cats))),
                        ticktext=cats,
                    )
                )
        dims.append(dict(label="val mIoU", values=scored["best_val_miou"]))
        fig = go.Figure(
            go.Parcoords(
                line=dict(
                    color=scored["best_val_miou"],
                    colorscale="Viridis",
                    showscale=True,
                    colorbar=dict(title=dict(text="val mIoU")),
                ),
                dimensions=dims,
            )
        )
        parts.append(
            f'<p class="hint">{len(scored)} scored trials (completed and pruned); drag along an axis to '
            "filter.</p>" + _figure(fig, "fig-parcoords", 460, margin=dict(l=110, r=110, t=90, b=40))
        )
    parts.append("<h3>Hyperparameter importance (fANOVA)</h3>" + importance_html(lb))
    return "".join(parts)


def _distribution(s: pd.Series):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if _numeric_param(s):
        lo, hi = s.min(), s.max()
        if pd.api.types.is_integer_dtype(s) or (s == s.round()).all() and not pd.api.types.is_float_dtype(s):
            return IntDistribution(int(lo), int(hi)), s.astype(int).tolist()
        return FloatDistribution(float(lo), float(hi), log=_log_axis(s)), s.astype(float).tolist()
    vals = _labels(s).tolist()
    return CategoricalDistribution(sorted(set(vals))), vals


def param_importances(lb: pd.DataFrame) -> tuple[dict[str, float], str]:
    """fANOVA importances of the varying hyperparameters over completed trials, or ({}, why not)."""
    done = lb[(lb["status"] == "completed") & lb["best_val_miou"].notna()]
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return {}, (
            f"Importance needs at least {MIN_IMPORTANCE_TRIALS} completed trials with a score "
            f"({len(done)} so far)."
        )
    hp = varying(done, hyperparameter_columns(done))
    if not hp:
        return {}, "No hyperparameter varies across the completed trials."
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists, values = {}, {}
    for c in hp:
        dists[c], values[c] = _distribution(done[c])
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                value=float(v), params={c: values[c][i] for c in hp}, distributions=dists
            )
            for i, v in enumerate(done["best_val_miou"])
        ]
    )
    method = "fANOVA"
    try:
        import sklearn  # noqa: F401  fANOVA's random forest

        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:
        method = "PED-ANOVA (fANOVA needs scikit-learn, which is not installed)"
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as e:
        return {}, f"{method} failed: {type(e).__name__}: {e}"
    return dict(imp), f"{method} over {len(done)} completed trials, target: best val mIoU."


def importance_html(lb: pd.DataFrame) -> str:
    imp, how = param_importances(lb)
    if not imp:
        return _empty(how)
    names = list(imp)[::-1]
    fig = go.Figure(
        go.Bar(
            x=[imp[n] for n in names],
            y=names,
            orientation="h",
            marker_color="#1f77b4",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(xaxis_title="importance (share of val mIoU variance)")
    return f'<p class="hint">{_e(how)}</p>' + _figure(fig, "fig-importance", 120 + 28 * len(names))


# ==== 8. search efficiency ==================================================================================
def _finish_order(lb: pd.DataFrame) -> pd.DataFrame:
    fin = pd.to_datetime(lb["finished_at"], errors="coerce", utc=True, format="ISO8601")
    fin = fin.fillna(pd.to_datetime(lb["started_at"], errors="coerce", utc=True, format="ISO8601"))
    return lb.assign(_t=fin).sort_values("_t", na_position="last", kind="stable").drop(columns="_t")


def section_efficiency(exp: Experiment) -> str:
    lb = exp.lb[exp.lb["status"] != "running"]
    if lb.empty:
        return _empty("No finished trial yet.")
    d = _finish_order(lb)
    d = d.assign(
        cum_epochs=d["epochs_run"].fillna(0).cumsum(),
        cum_gpu_h=d["gpu_seconds"].fillna(0).cumsum() / 3600,
        best_so_far=d["best_val_miou"].cummax(),
    )
    gpu = d["gpu_seconds"].sum() > 0
    fig = make_subplots(
        rows=1,
        cols=2 if gpu else 1,
        subplot_titles=["vs cumulative epochs"] + (["vs cumulative GPU-hours"] if gpu else []),
        horizontal_spacing=0.08,
    )
    for col, (x, xt) in enumerate(
        [("cum_epochs", "cumulative epochs")] + ([("cum_gpu_h", "GPU-hours")] if gpu else [])
    ):
        fig.add_trace(
            go.Scatter(
                x=d[x],
                y=d["best_so_far"],
                mode="lines",
                line_shape="hv",
                name="best so far",
                line=dict(color="#333", width=2),
                showlegend=col == 0,
                hovertemplate="%{x:.1f}: best %{y:.4f}<extra></extra>",
            ),
            row=1,
            col=col + 1,
        )
        for st, g in d.groupby("status"):
            fig.add_trace(
                go.Scatter(
                    x=g[x],
                    y=g["best_val_miou"],
                    mode="markers",
                    name=st,
                    legendgroup=st,
                    showlegend=col == 0,
                    marker=dict(
                        color=STATUS_COLORS.get(st, "#777"),
                        size=8,
                        symbol="x" if st == "pruned" else "circle",
                    ),
                    text=g["label"],
                    hovertemplate="%{text}<br>%{x:.1f}<br>val mIoU %{y:.4f}<extra>" + st + "</extra>",
                ),
                row=1,
                col=col + 1,
            )
        fig.update_xaxes(title_text=xt, row=1, col=col + 1)
    fig.update_yaxes(title_text="best val mIoU", row=1, col=1)
    counts = lb["status"].value_counts()
    rows = [
        [
            f'<span class="st st-{_e(s)}">{_e(s)}</span>',
            str(counts.get(s, 0)),
            _fmt(lb.loc[lb["status"] == s, "epochs_run"].sum()),
            _seconds(lb.loc[lb["status"] == s, "wall_seconds"].sum()),
        ]
        for s in ("completed", "pruned", "failed")
    ]
    saved = ""
    if "epochs" in lb.columns:
        pr = lb[lb["status"] == "pruned"]
        n = (pd.to_numeric(pr["epochs"], errors="coerce") - pr["epochs_run"]).clip(lower=0).sum()
        total = lb["epochs_run"].sum()
        share = n / max(n + total, 1)
        saved = f'<p class="hint">Pruning skipped {_fmt(n)} epochs ({share:.0%} of the full budget).</p>'
    return (
        _table(["status", "trials", "epochs run", "training time"], rows, "small")
        + saved
        + '<p class="hint">Trials in the order they finished; the line is the best val mIoU found so far.</p>'
        + _figure(fig, "fig-efficiency", 400)
    )


# ==== 9. cost ===============================================================================================
def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both lower cost and higher score, by increasing cost."""
    front, best = [], -np.inf
    for i in np.lexsort((-score, cost)):
        if score[i] > best:
            front.append(i)
            best = score[i]
    return np.array(front, dtype=int)


def section_cost(exp: Experiment) -> str:
    lb = exp.lb
    pts = lb[
        lb["test_miou"].notna() & lb["wall_seconds"].notna() & lb["status"].isin(["completed", "pruned"])
    ]
    if pts.empty:
        return _empty("No trial has both a test mIoU and a training time yet.")
    fig = go.Figure()
    done = pts[pts["status"] == "completed"]
    for arch, g in done.groupby(done["arch"].fillna("?").astype(str)):
        fig.add_trace(
            go.Scatter(
                x=g["wall_seconds"],
                y=g["test_miou"],
                mode="markers",
                name=arch,
                text=g["label"],
                marker=dict(size=9),
                hovertemplate="%{text}<br>%{x:.0f} s<br>test mIoU %{y:.4f}",
            )
        )
    pr = pts[pts["status"] == "pruned"]
    if len(pr):
        fig.add_trace(
            go.Scatter(
                x=pr["wall_seconds"],
                y=pr["test_miou"],
                mode="markers",
                name="pruned",
                text=pr["label"],
                marker=dict(symbol="x", color="#bbb", size=8),
                hovertemplate="%{text} (pruned)<br>%{x:.0f} s<br>test mIoU %{y:.4f}",
            )
        )
    front_html = ""
    if len(done):
        idx = pareto_front(done["wall_seconds"].to_numpy(float), done["test_miou"].to_numpy(float))
        f = done.iloc[idx]
        fig.add_trace(
            go.Scatter(
                x=f["wall_seconds"],
                y=f["test_miou"],
                mode="lines+markers",
                line_shape="hv",
                name="Pareto front",
                line=dict(color="#d62728", width=2),
                marker=dict(size=14, symbol="circle-open", color="#d62728"),
                text=f["label"],
                hovertemplate="%{text}<br>%{x:.0f} s<br>test mIoU %{y:.4f}<extra>front</extra>",
            )
        )
        front_html = _table(
            ["trial", "arch", "training time", "test mIoU"],
            [
                [_e(r["label"]), _e(r.get("arch")), _seconds(r["wall_seconds"]), _fmt(r["test_miou"])]
                for _, r in f.iterrows()
            ],
            "small front",
        )
    fig.update_layout(xaxis_title="training time (wall_seconds)", yaxis_title="test mIoU")
    return (
        _figure(fig, "fig-cost", 420)
        + '<p class="hint">Pareto front over completed trials: no other completed '
        "trial is both faster and better on test.</p>" + front_html
    )


# ==== page ==================================================================================================
SECTIONS = [  # (id, title, builder, intro)
    ("overview", "Overview", section_header, ""),
    (
        "leaderboard",
        "Leaderboard",
        section_leaderboard,
        "Click a header to sort; filter by status, architecture and fixed vs searched. Scores are those of each "
        "trial's best-validation-mIoU checkpoint; per-class IoU is on the test split.",
    ),
    ("table4", "Paper Table 4 side by side", section_table4, ""),
    ("curves", "Learning curves (paper Figures 1–7)", section_curves, ""),
    ("gallery", "Mask gallery (paper Figures 8–9)", section_gallery, ""),
    (
        "heatmap",
        "Per-class test IoU",
        section_heatmap,
        "Trials ranked by val mIoU; blank cells: class never predicted nor present.",
    ),
    ("hyperparameters", "Hyperparameters", section_hyperparameters, ""),
    ("efficiency", "Search efficiency", section_efficiency, ""),
    ("cost", "Cost: test mIoU against training time", section_cost, ""),
]

ERROR_HOOK = """<script>
document.documentElement.setAttribute('data-js-errors', '');
(function () {
  var errs = [];
  function note(msg) { errs.push(String(msg)); document.documentElement.setAttribute('data-js-errors', errs.join(' | ')); }
  window.addEventListener('error', function (e) { note((e.message || e) + ' (line ' + e.lineno + ':' + e.colno + ')'); });
  window.addEventListener('unhandledrejection', function (e) { note('unhandled rejection: ' + (e.reason && e.reason.message || e.reason)); });
})();
</script>"""

PAGE_JS = """<script>
(function () {
  var table = document.getElementById('lb-table');
  if (table) {
    var body = table.tBodies[0];
    var controls = document.querySelectorAll('[data-filter]');
    function apply() {
      var f = {}, n = 0;
      controls.forEach(function (c) { f[c.dataset.filter] = c.value.toLowerCase(); });
      Array.prototype.forEach.call(body.rows, function (r) {
        var ok = ['status', 'arch', 'kind'].every(function (k) { return !f[k] || (r.dataset[k] || '').toLowerCase() === f[k]; })
          && (!f.name || r.dataset.name.indexOf(f.name) >= 0);
        r.style.display = ok ? '' : 'none'; n += ok;
      });
      document.querySelector('.controls .shown').textContent = n + ' of ' + body.rows.length + ' trials';
    }
    controls.forEach(function (c) { c.addEventListener('input', apply); c.addEventListener('change', apply); });
    document.querySelectorAll('[data-toggle]').forEach(function (c) {
      c.addEventListener('change', function () { table.classList.toggle('hide-' + c.dataset.toggle, !c.checked); });
    });
    table.querySelectorAll('th').forEach(function (th, i) {
      th.addEventListener('click', function () {
        var desc = th.dataset.dir !== 'desc';
        table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
        th.dataset.dir = desc ? 'desc' : 'asc';
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[i], y = b.cells[i], xv = x.dataset.v, yv = y.dataset.v;
          if (xv === undefined && yv === undefined) { var c = x.textContent.localeCompare(y.textContent, undefined, {numeric: true}); return desc ? -c : c; }
          if (xv === undefined) return 1;
          if (yv === undefined) return -1;
          return desc ? yv - xv : xv - yv;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
    apply();
  }
  var sel = document.getElementById('curve-select');
  if (sel && window.Plotly) {
    sel.addEventListener('change', function () {
      var gd = document.getElementById(sel.dataset.fig), v = sel.value, ids;
      ids = v.slice(0, 2) === 'g:' ? window.SEGTUNE_CURVE_GROUPS[v.slice(2)] : [v.slice(2)];
      Plotly.restyle(gd, {visible: gd.data.map(function (t) { return ids.indexOf(t.meta) >= 0 ? true : 'legendonly'; })});
    });
  }
  document.documentElement.setAttribute('data-report-ready', '1');
})();
</script>"""

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #222; background: #fafafa; }
header.top { background: #1f3b57; color: #fff; padding: 14px 28px; position: sticky; top: 0; z-index: 10; }
header.top h1 { margin: 0; font-size: 20px; } header.top nav a { color: #cfe3f7; margin-right: 14px; font-size: 13px; }
main { padding: 8px 28px 40px; max-width: 1600px; }
section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px 18px 14px; margin: 16px 0; }
h2 { font-size: 18px; margin: 8px 0; } h3 { font-size: 15px; margin: 16px 0 6px; }
.intro, .hint { color: #555; font-size: 13px; } .empty { color: #8a6d3b; background: #fcf8e3; padding: 8px 12px; border-radius: 4px; }
.note { color: #8a6d3b; font-size: 13px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 6px 0; } dl.facts dt { font-weight: 600; color: #555; } dl.facts dd { margin: 0; }
table { border-collapse: collapse; font-size: 12.5px; } th, td { border-bottom: 1px solid #eee; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f5f7; position: sticky; top: 0; cursor: default; } td:first-child, th:first-child { text-align: left; }
table.lb th { cursor: pointer; user-select: none; } table.lb th[data-dir=desc]::after { content: ' ▼'; } table.lb th[data-dir=asc]::after { content: ' ▲'; }
table.lb td:nth-child(2), table.lb td:nth-child(3), table.lb td:nth-child(4), table.lb td:nth-child(5) { text-align: left; }
table.lb tbody tr:hover { background: #eef5fc; }
.hide-iou .iou, .hide-hp .hp { display: none; }
.tablewrap { overflow: auto; max-height: 620px; border: 1px solid #eee; } .tablewrap.tall { max-height: none; }
.controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin: 6px 0 8px; font-size: 13px; } .controls .shown { color: #777; }
.st { padding: 0 6px; border-radius: 8px; color: #fff; font-size: 11.5px; } .st-completed { background: #2ca02c; } .st-pruned { background: #ff7f0e; }
.st-failed { background: #d62728; } .st-running { background: #1f77b4; }
table.t4 td { text-align: center; } table.t4 td:first-child { text-align: left; } .t4 .paper { color: #777; } .t4 .ours { font-weight: 600; }
.diff.pos { color: #2a7d2a; } .diff.neg { color: #b22; } .sub { color: #888; font-weight: normal; font-size: 11px; }
.row { display: flex; gap: 20px; flex-wrap: wrap; align-items: flex-start; } .row .grow { flex: 1; min-width: 420px; }
table.gallery td, table.gallery th { text-align: center; vertical-align: middle; padding: 4px; } table.gallery th:first-child { text-align: left; }
table.gallery img { width: 96px; height: 96px; margin: 0 1px; image-rendering: pixelated; border: 1px solid #ddd; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 12px; margin: 6px 0 10px; }
.legend i { display: inline-block; width: 13px; height: 13px; margin-right: 4px; vertical-align: -2px; border: 1px solid #999; }
pre { max-height: 300px; overflow: auto; background: #f6f6f6; padding: 8px; font-size: 12px; }
"""


def render_report(exp: Experiment) -> str:
    """The whole page as one string."""
    parts = []
    for sid, title, build, intro in SECTIONS:
        try:
            body = build(exp)
        except Exception as e:  # one broken section must not cost the whole report
            log.exception("report section %s failed", sid)
            body = _empty(f"This section could not be built: {type(e).__name__}: {e}")
        parts.append(_section(sid, title, body, intro))
    nav = "".join(f'<a href="#{sid}">{_e(title.split(" (")[0])}</a>' for sid, title, *_ in SECTIONS)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>segtune — {_e(exp.name)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{ERROR_HOOK}<style>{CSS}</style>'
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<header class="top"><h1>segtune report: {_e(exp.name)}</h1><nav>{nav}</nav></header>'
        f'<main>{"".join(parts)}<p class="hint">Generated {now} from {_e(exp.path.resolve())}.</p></main>'
        f"{PAGE_JS}</body></html>"
    )


def write_report(exp_dir: Path) -> Path:
    """Builds `exp_dir/report.html` from the experiment folder, atomically; returns its path."""
    exp_dir = Path(exp_dir)
    page = render_report(load_experiment(exp_dir))
    from seg.atomic import atomic_write_text

    return atomic_write_text(exp_dir / REPORT_NAME, page)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.report", description=__doc__.split("\n")[0])
    ap.add_argument("exp_dir", type=Path, help="the experiment folder, e.g. results/quick")
    args = ap.parse_args(argv)
    if not args.exp_dir.is_dir():
        print(
            f"error: {args.exp_dir} is not a folder; pass an experiment folder such as results/<name>",
            file=sys.stderr,
        )
        return 2
    out = write_report(args.exp_dir)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
