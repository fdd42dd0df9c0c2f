"""Leaderboard: every trial, ranked, in a table the page's script sorts and filters (assets/report.js), and the
seed-robust ranking (one row per seed group) where the experiment has seed reruns."""

from __future__ import annotations

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
ERROR_CHARS = 60  # shown of an error message; the whole message is the cell's tooltip


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
    keys = [c.key for c in cols] + list(MEAN_STD.values())
    rows = [
        Row(
            label=str(r["label"]),
            filters={a: str(r.get(a)) if present(r.get(a)) else "" for a in ROW_ATTRS},
            values={k: scalar(r.get(k)) for k in keys},
        )
        for _, r in lb.iterrows()
    ]
    options = {col: sorted({str(v) for v in lb[col].dropna()}) for col in FILTERS}
    return LeaderboardInfo(cols, rows, options, seed_rows(lb) if seeds else [])


def cell(col: Column, values: dict[str, Any]) -> str:
    v = values.get(col.key)
    num = finite(v) and not isinstance(v, bool)
    if col.key in MEAN_STD and num:
        txt = f"{fmt(v)} ± {fmt(values.get(MEAN_STD[col.key]))}"
    elif col.key == "error" and present(v):
        txt = f'<span title="{e(v)}">{e(str(v)[:ERROR_CHARS])}</span>'
    elif col.key == "status":
        txt = status_badge(v)
    else:
        txt = e(fmt(v, 3 if col.key.startswith(IOU_PREFIX) else 4))
    sort = f' data-v="{float(v)!r}"' if num else ""
    return f'<td class="{col.css}"{sort}>{txt}</td>'


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
    rows = []
    for r in info.rows:
        attrs = " ".join(f'data-{a}="{e(v)}"' for a, v in r.filters.items())
        cells = "".join(cell(c, r.values) for c in info.columns)
        rows.append(f'<tr {attrs} data-name="{e(r.label).lower()}">{cells}</tr>')
    body = (
        controls(info.options)
        + f'<div class="tablewrap"><table id="lb-table" class="lb hide-iou"><thead><tr>{head}</tr></thead>'
        + f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    return body + (seed_table(info.seed_rows) if info.seed_rows else "")
