"""Search efficiency: the best val mIoU found so far against cumulative epochs and against cumulative trial-hours
(an epoch of a U-Net costs several of an FCN, so epochs alone mislead about what the search bought; pruned trials'
time counts), and GPU-hours where a GPU was used, each finished trial a point in the order it finished; trials,
epochs and time per status, and the share of the epoch budget that pruning saved."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search.report.analysis import (
    EfficiencySeries,
    StatusTotal,
    efficiency_series,
    finished,
    pruning_savings,
    status_totals,
)
from search.report.html import STATUS_COLORS, empty, figure, fmt, seconds, status_badge, table
from search.report.load import ReportData
from search.vocab import FINAL_STATUSES, PRUNED

PANELS = [("cum_epochs", "cumulative epochs", "vs cumulative epochs"),  # (series, x title, panel title)
          ("cum_trial_hours", "trial-hours (training + evaluation)", "vs cumulative trial-hours")]
GPU_PANEL = ("cum_gpu_hours", "GPU-hours", "vs cumulative GPU-hours")  # only when some trial used a GPU


class EfficiencyInfo(NamedTuple):
    series: EfficiencySeries  # empty lists when no trial has finished
    gpu: bool  # a second panel against GPU-hours
    totals: list[StatusTotal]  # per final status
    pruning_saved: tuple[float, float] | None  # (epochs not run, share of the full budget)


def info(data: ReportData) -> EfficiencyInfo:
    lb = finished(data.lb)
    gpu = bool(lb["gpu_seconds"].sum() > 0)
    return EfficiencyInfo(efficiency_series(lb), gpu, status_totals(lb, FINAL_STATUSES), pruning_savings(lb))


def add_panel(fig: go.Figure, s: EfficiencySeries, col: int, x_key: str) -> None:
    x = getattr(s, x_key)
    best = go.Scatter(
        x=np.asarray(x),
        y=np.asarray(s.best_so_far),
        mode="lines",
        line_shape="hv",
        name="best so far",
        line=dict(color="#333", width=2),
        showlegend=col == 1,
        hovertemplate="%{x:.1f}: best %{y:.4f}<extra></extra>",
    )
    fig.add_trace(best, row=1, col=col)
    for st in sorted(set(s.status)):
        idx = [i for i, v in enumerate(s.status) if v == st]
        marker = dict(color=STATUS_COLORS.get(st, "#777"), size=8, symbol="x" if st == PRUNED else "circle")
        points = go.Scatter(
            x=np.asarray([x[i] for i in idx]),
            y=np.asarray([s.best_val_miou[i] for i in idx]),
            mode="markers",
            name=st,
            legendgroup=st,
            showlegend=col == 1,
            marker=marker,
            text=[s.label[i] for i in idx],
            hovertemplate="%{text}<br>%{x:.1f}<br>val mIoU %{y:.4f}<extra>" + st + "</extra>",
        )
        fig.add_trace(points, row=1, col=col)


def plot(info: EfficiencyInfo) -> go.Figure:
    panels = PANELS + ([GPU_PANEL] if info.gpu else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for *_, t in panels], horizontal_spacing=0.08)
    for col, (x_key, x_title, _) in enumerate(panels, start=1):
        add_panel(fig, info.series, col, x_key)
        fig.update_xaxes(title_text=x_title, row=1, col=col)
    fig.update_yaxes(title_text="best val mIoU", row=1, col=1)
    return fig


def render(info: EfficiencyInfo) -> str:
    if not info.series.label:
        return empty("No finished trial yet.")
    rows = [[status_badge(t.status), str(t.trials), fmt(t.epochs), seconds(t.wall_seconds)] for t in info.totals]
    saved = ""
    if info.pruning_saved is not None:
        n, share = info.pruning_saved
        saved = f'<p class="hint">Pruning skipped {fmt(n)} epochs ({share:.0%} of the full budget).</p>'
    return (
        table(["status", "trials", "epochs run", "training time"], rows, "small")
        + saved
        + '<p class="hint">Trials in the order they finished; the line is the best val mIoU found so far, against '
        'the epochs and the hours of training and evaluation spent on every finished trial, pruned ones included.</p>'
        + figure(plot(info), "fig-efficiency", 400)
    )
