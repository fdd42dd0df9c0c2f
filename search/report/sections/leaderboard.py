"""Leaderboard: every trial, ranked, in a table the page's script sorts, filters and pages (assets/report.js), and
the seed-robust ranking (one row per seed group) where the experiment has seed reruns.

At 10,000 trials the page cannot hold 10,000 table rows: the first PAGE_ROWS rows are in the HTML (readable without
the script), and every row's cell texts ride along once as compact JSON (`<script id="lb-data">`), from which the
script renders the page of rows that the filters, the sort order and the pager select."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pandas as pd

from search.report.html import e, empty, fmt, status_badge, table
from search.report.load import ReportData, hyperparameter_columns, iou_columns_of, varying
from search.report.values import finite, present, scalar
from search.vocab import IOU_PREFIX

SCORES = [  # (header, column)
    ("#", "rank"),
    ("name", "label"),
    ("kind", "kind"),
    ("status", "status"),
    ("arch", "arch"),
    ("val mIoU", "best_val_miou"),
    ("val mIoU avg5", "max_val_miou_avg5"),
    ("val px acc", "best_val_pixel_acc"),
    ("test mIoU", "test_miou"),
    ("test px acc", "test_pixel_acc"),
]
SEED_SCORES = [
    ("val mIoU mean ± std", "val_miou_mean"),
    ("test mIoU mean ± std", "test_miou_mean"),
    ("seeds", "n_seeds"),
]  # only when the experiment has seed reruns
RUN = [
    ("epochs", "epochs_run"),
    ("best ep.", "best_epoch"),
    ("pruned at", "pruned_at_epoch"),
    ("train s", "wall_seconds"),
    ("img/s", "images_per_s"),
]
SEED_STATS = ("val_miou_mean", "val_miou_std", "test_miou_mean", "test_miou_std", "n_seeds")
MEAN_STD = {"val_miou_mean": "val_miou_std", "test_miou_mean": "test_miou_std"}  # shown as "mean ± std"
FILTERS = ("status", "arch", "kind")  # <select> filters, in the controls' order
ROW_ATTRS = ("status", "kind", "arch")  # each row carries the filtered values as data-<name> attributes
ERROR_CHARS = 60  # shown of an error message; the message is the cell's tooltip
ERROR_TITLE_CHARS = 500  # of the message in the tooltip
PAGE_ROWS = 50  # table rows on the page at once; the pager shows the others


class Column(NamedTuple):
    header: str
    key: str  # leaderboard column
    css: str  # "hp" and "iou" columns are toggled by the page's checkboxes


class Row(NamedTuple):
    label: str
    filters: dict[str, str]  # ROW_ATTRS -> value ("" when missing)
    values: dict[str, Any]  # column -> plain value (None when missing), for every Column and the stds


class SeedRow(NamedTuple):
    group: str
    name: str  # the group's best run
    # SEED_STATS:
    val_miou_mean: float | None
    val_miou_std: float | None
    test_miou_mean: float | None
    test_miou_std: float | None
    n_seeds: int | None


class LeaderboardInfo(NamedTuple):
    columns: list[Column]
    rows: list[Row]  # ranked; empty when no trial has finished
    options: dict[str, list[str]]  # FILTERS -> the values to choose from
    seed_rows: list[SeedRow]  # empty without seed reruns


def columns(lb: pd.DataFrame, seeds: bool) -> list[Column]:
    hp = varying(lb, hyperparameter_columns(lb))
    cols = [Column(h, c, "") for h, c in SCORES + (SEED_SCORES if seeds else []) + RUN]
    cols += [Column(c, c, "hp") for c in hp if c != "arch"]
    cols += [Column(c.removeprefix(IOU_PREFIX), c, "iou") for c in iou_columns_of(lb)]
    return cols + [Column("error", "error", "")]


def seed_rows(lb: pd.DataFrame) -> list[SeedRow]:
    """One row per seed group, ranked by the mean best val mIoU over its seeds."""
    group = "seed_group" if "seed_group" in lb.columns else "name"
    g = lb[lb["val_miou_mean"].notna()].drop_duplicates(group).sort_values("val_miou_mean", ascending=False)
    return [
        SeedRow(str(r[group]), str(r["name"]), *(scalar(r[c]) for c in SEED_STATS))
        for _, r in g.iterrows()
    ]


def info(data: ReportData) -> LeaderboardInfo:
    lb = data.lb
    if lb.empty:
        return LeaderboardInfo([], [], {}, [])
    seeds = bool(lb["val_miou_mean"].notna().any())
    cols = columns(lb, seeds)
    keys = list(dict.fromkeys([c.key for c in cols] + list(MEAN_STD.values())))
    # column by column, not row by row (iterrows): seconds, not minutes, at 10,000 trials
    values = {k: [scalar(v) for v in lb[k]] if k in lb.columns else [None] * len(lb) for k in keys}
    attrs = {a: [str(v) if present(v) else "" for v in lb[a]] for a in ROW_ATTRS}
    rows = [
        Row(label=str(label), filters={a: attrs[a][i] for a in ROW_ATTRS}, values={k: values[k][i] for k in keys})
        for i, label in enumerate(lb["label"])
    ]
    options = {col: sorted({str(v) for v in lb[col].dropna()}) for col in FILTERS}
    return LeaderboardInfo(cols, rows, options, seed_rows(lb) if seeds else [])


def numeric(col: Column, values: dict[str, Any]) -> bool:
    v = values.get(col.key)
    return finite(v) and not isinstance(v, bool)


def cell_text(col: Column, values: dict[str, Any]) -> str:
    """A cell as plain text: what the page shows (the script sorts numeric columns by its leading number)."""
    v = values.get(col.key)
    if col.key in MEAN_STD and numeric(col, values):
        return f"{fmt(v)} ± {fmt(values.get(MEAN_STD[col.key]))}"
    if col.key == "error":
        return str(v)[:ERROR_TITLE_CHARS] if present(v) else ""
    return fmt(v, 3 if col.key.startswith(IOU_PREFIX) else 4)


def cell(col: Column, values: dict[str, Any]) -> str:
    txt = cell_text(col, values)
    if col.key == "error" and txt:
        txt = f'<span title="{e(txt)}">{e(txt[:ERROR_CHARS])}</span>'
    elif col.key == "status":
        txt = status_badge(values.get(col.key))
    else:
        txt = e(txt)
    sort = f' data-v="{float(values[col.key])!r}"' if numeric(col, values) else ""
    return f'<td class="{col.css}"{sort}>{txt}</td>'


def row_html(r: Row, cols: list[Column]) -> str:
    attrs = " ".join(f'data-{a}="{e(v)}"' for a, v in r.filters.items())
    return f'<tr {attrs} data-name="{e(r.label).lower()}">{"".join(cell(c, r.values) for c in cols)}</tr>'


NUMERIC_KEYS = {"rank", "best_val_miou", "max_val_miou_avg5", "best_val_pixel_acc", "test_miou", "test_pixel_acc",
                "epochs_run", "best_epoch", "pruned_at_epoch", "wall_seconds", "images_per_s", "n_seeds", *MEAN_STD}


def payload(info: LeaderboardInfo) -> str:
    """Every row's cell texts as JSON, safe inside <script> (assets/report.js renders pages of them)."""
    cols = [{"h": c.header, "k": c.key, "c": c.css,
             "n": int(c.key in NUMERIC_KEYS or c.key.startswith(IOU_PREFIX) or c.css == "hp")} for c in info.columns]
    rows = [[cell_text(c, r.values) for c in info.columns] for r in info.rows]
    data = {"columns": cols, "rows": rows, "page": PAGE_ROWS, "attrs": list(ROW_ATTRS)}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")




def controls(options: dict[str, list[str]]) -> str:
    def select(col: str) -> str:
        choices = "".join(f'<option value="{e(v)}">{e(v)}</option>' for v in options[col])
        return '<option value="">all</option>' + choices

    return (
        '<div class="controls">'
        f'<label>status <select data-filter="status">{select("status")}</select></label>'
        f'<label>architecture <select data-filter="arch">{select("arch")}</select></label>'
        f'<label>fixed / searched <select data-filter="kind">{select("kind")}</select></label>'
        '<label>name <input type="search" data-filter="name" placeholder="filter"></label>'
        '<label><input type="checkbox" data-toggle="hp" checked> hyperparameters</label>'
        '<label><input type="checkbox" data-toggle="iou"> per-class test IoU</label>'
        '<span class="shown"></span></div>'
    )


def seed_table(rows: list[SeedRow]) -> str:
    cells = [
        [
            e(r.group),
            e(r.name),
            f"{fmt(r.val_miou_mean)} ± {fmt(r.val_miou_std)}",
            f"{fmt(r.test_miou_mean)} ± {fmt(r.test_miou_std)}",
            fmt(r.n_seeds),
        ]
        for r in rows
    ]
    return (
        '<h3>Seed-robust ranking</h3><p class="intro">Mean ± standard deviation over reruns with different seeds; '
        "ranked by the mean validation mIoU.</p>"
        + table(["seed group", "trial", "val mIoU", "test mIoU", "seeds"], cells, "small seeds")
    )


def render(info: LeaderboardInfo) -> str:
    if not info.rows:
        return empty("No trial has finished yet: leaderboard.parquet is empty or missing.")
    head = "".join(f'<th class="{c.css}" data-col="{i}">{e(c.header)}</th>' for i, c in enumerate(info.columns))
    rows = "".join(row_html(r, info.columns) for r in info.rows[:PAGE_ROWS])  # the rest: from the JSON
    body = (
        controls(info.options)
        + f'<div class="tablewrap"><table id="lb-table" class="lb hide-iou"><thead><tr>{head}</tr></thead>'
        + f"<tbody>{rows}</tbody></table></div>"
        + '<div class="pager"><button type="button" data-page="-1">‹ previous</button> <span class="page">page 1 '
        + f'of {-(-len(info.rows) // PAGE_ROWS):,}</span> <button type="button" data-page="1">next ›</button> '
        + f'<span class="hint">{PAGE_ROWS} rows a page; filters and sorting apply to all {len(info.rows):,} '
        + "trials.</span></div>"
        + f'<script type="application/json" id="lb-data">{payload(info)}</script>'
    )
    return body + (seed_table(info.seed_rows) if info.seed_rows else "")
