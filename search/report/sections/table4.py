"""Paper Table 4 side by side: for each of the paper's seven experiments, its value, segtune's fixed trial of the
same name, and the difference, for the four Table 4 columns; and a bar chart of test mIoU, paper vs segtune."""

from __future__ import annotations

from typing import NamedTuple

import plotly.graph_objects as go

from search.paper_table4 import FIXED_NAMES, PAPER_DATASET, PAPER_IMAGE_SIZE, TABLE4, TABLE4_COLUMNS
from search.report.html import e, empty, figure, fmt
from search.report.load import ReportData, data_description, fixed_trials
from search.report.values import finite, scalar

BAR_COLUMN = "test_miou"
BAR_COLORS = {"paper": "#9e9e9e", "segtune": "#1f77b4"}


class Cell(NamedTuple):
    column: str  # leaderboard column (= search.paper_table4 key)
    paper: float
    ours: float | None  # None: not run, or no value
    diff: float | None  # ours - paper


class Row(NamedTuple):
    name: str  # fixed-trial name, e.g. "4a"
    label: str  # the paper's
    status: str | None  # None: not run in this experiment
    cells: list[Cell]  # in TABLE4_COLUMNS order


class Table4Info(NamedTuple):
    note: str  # what was compared with what
    titles: list[str]  # the paper's column titles
    rows: list[Row]  # empty when the experiment has no fixed trial
    bar_labels: list[str]
    bar_paper: list[float]
    bar_ours: list[float | None]


def info(data: ReportData) -> Table4Info:
    fixed = fixed_trials(data.lb)
    note = (
        f"Paper: {PAPER_DATASET} at {PAPER_IMAGE_SIZE}x{PAPER_IMAGE_SIZE} px. "
        f"segtune: {data_description(data)}. Δ = segtune − paper; segtune's values are those of the "
        "best-validation-mIoU checkpoint, as in the paper."
    )
    rows = []
    for name, (label, paper) in TABLE4.items():
        r = fixed.get(name)
        cells = []
        for col, pv in paper.items():
            ours = scalar(r[col]) if r is not None else None
            cells.append(Cell(col, pv, ours, ours - pv if finite(ours) else None))
        rows.append(Row(name, label, None if r is None else str(r["status"]), cells))
    return Table4Info(
        note=note,
        titles=list(TABLE4_COLUMNS.values()),
        rows=rows if fixed else [],
        bar_labels=[TABLE4[n][0] for n in FIXED_NAMES],
        bar_paper=[TABLE4[n][1][BAR_COLUMN] for n in FIXED_NAMES],
        bar_ours=[scalar(fixed[n][BAR_COLUMN]) if n in fixed else None for n in FIXED_NAMES],
    )


def cell_html(c: Cell) -> str:
    cls = "" if c.diff is None else "pos" if c.diff > 0 else "neg" if c.diff < 0 else ""
    diff = "—" if c.diff is None else f"{c.diff:+.5f}"
    return (
        f'<span class="paper">{c.paper:.5f}</span> · <span class="ours">{fmt(c.ours, 5)}</span> · '
        f'<span class="diff {cls}">{diff}</span>'
    )


def table_html(info: Table4Info) -> str:
    head = ["model", "status"] + [f'{e(t)}<br><span class="sub">paper · segtune · Δ</span>' for t in info.titles]
    rows = []
    for r in info.rows:
        cells = [f"<b>{e(r.label)}</b>", e(r.status) if r.status is not None else "not run"]
        cells += [cell_html(c) for c in r.cells]
        rows.append(f'<tr data-model="{e(r.name)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'<table id="t4-table" class="small t4"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def bars(info: Table4Info) -> go.Figure:
    fig = go.Figure()
    for who, vals in [("paper", info.bar_paper), ("segtune", info.bar_ours)]:
        fig.add_bar(
            x=info.bar_labels,
            y=vals,
            name=who,
            marker_color=BAR_COLORS[who],
            hovertemplate="%{x}: %{y:.4f}<extra>" + who + "</extra>",
        )
    fig.update_layout(
        barmode="group",
        title=dict(text="Test mIoU: paper vs segtune"),
        yaxis_title="test mIoU",
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
    )
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
