"""Paper Table 4 side by side, like with like: for each of the paper's seven experiments (and segtune's extra
rows such as `5b-scratch`), the paper's value, segtune's value under the paper's per-batch metric (`*_paper`),
their difference, and segtune's dataset-level value; a "background everywhere" row gives the floor under both
metrics. Also as Markdown (`python -m search.report --markdown`), so the README's table is generated, never typed.

The paper never defines its IoU; its numbers fit a per-batch mean (seg.metrics.BatchMeanScores), which scores
"background everywhere" at about the paper's baseline. Comparing the paper with segtune's dataset-level mIoU would
compare two metrics (off by ~0.02 for the same predictor), so the difference column uses the paper-style one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go

from search.report.paper_table4 import FIXED_NAMES, PAPER_DATASET, PAPER_IMAGE_SIZE, TABLE4, TABLE4_COLUMNS, paper_style
from search.report.html import e, empty, figure, fmt
from search.report.load import ReportData, data_description
from search.report.values import finite, scalar

BAR_COLUMN = "test_miou"
BAR_COLORS = {"paper": "#9e9e9e", "segtune": "#1f77b4"}
FLOOR_NAME, FLOOR_LABEL = "floor", "background everywhere"


class Cell(NamedTuple):
    column: str  # dataset-level leaderboard column (= a search.report.paper_table4 key)
    paper: float | None  # the paper's value; None for a row the paper does not have
    ours_paper: float | None  # segtune under the paper's per-batch metric (column + "_paper")
    diff: float | None  # ours_paper - paper
    ours: float | None  # segtune, dataset-level (what a search ranks on)


class Row(NamedTuple):
    name: str  # fixed-trial name, e.g. "4a"; FLOOR_NAME for the floor row
    label: str  # the paper's, or segtune's for extra rows
    status: str | None  # None: not run in this experiment
    cells: list[Cell]  # in TABLE4_COLUMNS order


class Table4Info(NamedTuple):
    note: str  # what was compared with what
    titles: list[str]  # the paper's column titles
    rows: list[Row]  # empty when the experiment has no fixed trial of the paper
    floor: Row | None  # "background everywhere" (from experiment.json), None when not recorded
    bar_labels: list[str]
    bar_paper: list[float]
    bar_ours: list[float | None]  # segtune's paper-style test mIoU


def row_names(lb: pd.DataFrame) -> list[str]:
    """The paper's names in its order, each followed by segtune's variants of it (`5b-scratch` after `5b`)."""
    names = [str(n) for n in lb["name"].dropna().unique()] if "name" in lb else []
    out = []
    for n in FIXED_NAMES:
        out += [n] + sorted(m for m in names if m.lower().startswith(n.lower() + "-"))
    return out


def trial_rows(lb: pd.DataFrame) -> dict[str, pd.Series]:
    """name -> the best fixed row of that name (case-insensitive), for every name of `row_names`."""
    if lb.empty or "name" not in lb:
        return {}
    fixed = lb[lb["kind"] == "fixed"] if "kind" in lb else lb
    names = fixed["name"].str.lower()
    return {n: fixed[names == n.lower()].iloc[0] for n in row_names(fixed) if (names == n.lower()).any()}


def value(row: Any, column: str) -> float | None:
    if row is None:
        return None
    v = scalar(row.get(column))  # a leaderboard row (Series) or experiment.json's floor (dict)
    return v if finite(v) else None


def cells(paper: dict[str, float] | None, row: Any) -> list[Cell]:
    out = []
    for col in TABLE4_COLUMNS:
        pv = paper.get(col) if paper else None
        theirs = value(row, paper_style(col))
        out.append(Cell(col, pv, theirs, theirs - pv if theirs is not None and pv is not None else None,
                        value(row, col)))
    return out


def info(data: ReportData) -> Table4Info:
    found = trial_rows(data.lb)
    note = (
        f"Paper: {PAPER_DATASET} at {PAPER_IMAGE_SIZE}x{PAPER_IMAGE_SIZE} px. segtune: {data_description(data)}. "
        "Each cell: paper · segtune under the paper's per-batch metric · Δ (segtune − paper, like with like), and "
        "below it segtune's dataset-level score, the one searches rank on. Scores are those of the best-validation-"
        "mIoU checkpoint, as in the paper."
    )
    rows = []
    for name in row_names(data.lb):
        r = found.get(name)
        label, paper = TABLE4[name] if name in TABLE4 else (name, None)
        if paper is None and r is None:
            continue
        rows.append(Row(name, label, None if r is None else str(r["status"]), cells(paper, r)))
    floor = data.meta.get("floor") if isinstance(data.meta.get("floor"), dict) else None
    return Table4Info(
        note=note,
        titles=list(TABLE4_COLUMNS.values()),
        rows=rows if found else [],
        floor=Row(FLOOR_NAME, FLOOR_LABEL, None, cells(None, floor)) if floor else None,
        bar_labels=[TABLE4[n][0] for n in FIXED_NAMES],
        bar_paper=[TABLE4[n][1][BAR_COLUMN] for n in FIXED_NAMES],
        bar_ours=[value(found.get(n), paper_style(BAR_COLUMN)) for n in FIXED_NAMES],
    )


# ---- HTML ---------------------------------------------------------------------------------------------------
def cell_html(c: Cell) -> str:
    cls = "" if c.diff is None else "pos" if c.diff > 0 else "neg" if c.diff < 0 else ""
    diff = "—" if c.diff is None else f"{c.diff:+.5f}"
    return (
        f'<span class="paper">{fmt(c.paper, 5)}</span> · <span class="ours">{fmt(c.ours_paper, 5)}</span> · '
        f'<span class="diff {cls}">{diff}</span><br><span class="sub">dataset-level '
        f'<span class="dataset">{fmt(c.ours, 5)}</span></span>'
    )


def table_html(info: Table4Info) -> str:
    head = ["model", "status"] + [f'{e(t)}<br><span class="sub">paper · segtune · Δ</span>' for t in info.titles]
    rows = []
    for r in info.rows + ([info.floor] if info.floor else []):
        status = "" if r.name == FLOOR_NAME else e(r.status) if r.status is not None else "not run"
        cells = [f"<b>{e(r.label)}</b>", status] + [cell_html(c) for c in r.cells]
        rows.append(f'<tr data-model="{e(r.name)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'<table id="t4-table" class="small t4"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def bars(info: Table4Info) -> go.Figure:
    fig = go.Figure()
    for who, vals in [("paper", info.bar_paper), ("segtune", info.bar_ours)]:
        fig.add_bar(x=info.bar_labels, y=vals, name=who, marker_color=BAR_COLORS[who],
                    hovertemplate="%{x}: %{y:.4f}<extra>" + who + "</extra>")
    if info.floor:
        floor = next(c.ours_paper for c in info.floor.cells if c.column == BAR_COLUMN)
        if floor is not None:
            fig.add_hline(y=floor, line_dash="dot", annotation_text=FLOOR_LABEL, annotation_position="top left")
    fig.update_layout(barmode="group", title=dict(text="Test mIoU, the paper's per-batch metric: paper vs segtune"),
                      yaxis_title="test mIoU (per-batch mean)",
                      legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return fig


def render(info: Table4Info) -> str:
    note = f'<p class="intro">{e(info.note)}</p>'
    if not info.rows:
        return note + empty(
            f"No fixed trial ({', '.join(FIXED_NAMES)}) in this experiment, so there is nothing to "
            "line up with the paper's Table 4 (run spaces/paper.yaml)."
        )
    return (
        f'{note}<div class="row"><div>{table_html(info)}</div><div class="grow">'
        f"{figure(bars(info), 'fig-table4', 340)}</div></div>"
    )


# ---- Markdown (README) --------------------------------------------------------------------------------------
def markdown(info: Table4Info, data_text: str) -> str:
    """Table 4 as a Markdown table: each column as `paper / segtune paper-style (Δ) / segtune dataset-level`."""
    if not info.rows:
        return "No fixed trial of the paper in this experiment.\n"
    head = "| model | status | " + " | ".join(info.titles) + " |"
    lines = [f"segtune: {data_text}. Each cell: paper / segtune under the paper's per-batch metric (Δ) / segtune "
             "dataset-level; the best-validation-mIoU checkpoint of each trial.", "", head,
             "|" + "---|" * (len(info.titles) + 2)]
    for r in info.rows + ([info.floor] if info.floor else []):
        status = "" if r.name == FLOOR_NAME else r.status or "not run"
        parts = []
        for c in r.cells:
            diff = f" ({c.diff:+.4f})" if c.diff is not None else ""
            parts.append(f"{fmt(c.paper, 4)} / {fmt(c.ours_paper, 4)}{diff} / {fmt(c.ours, 4)}")
        lines.append(f"| {r.label} | {status} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"
