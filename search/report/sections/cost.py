"""Cost: test mIoU against training time, completed trials coloured by architecture, pruned ones greyed, and the
Pareto front over the completed trials (no other completed trial is both faster and better on test)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

from search.report.analysis import pareto_front
from search.report.html import e, empty, figure, fmt, seconds, table
from search.report.load import ReportData
from search.vocab import COMPLETED, PRUNED

FRONT_COLOR = "#d62728"
PRUNED_COLOR = "#bbb"
HOVER = "%{text}<br>%{x:.0f} s<br>test mIoU %{y:.4f}"


class Points(NamedTuple):
    name: str  # legend entry: an architecture, "pruned" or "Pareto front"
    wall_seconds: list[float]
    test_miou: list[float]
    labels: list[str]
    archs: list[str]


class CostInfo(NamedTuple):
    by_arch: list[Points]  # completed trials, one group per architecture (sorted)
    pruned: Points | None
    front: Points | None  # by increasing training time; None without a completed trial


def points(name: str, rows) -> Points:
    return Points(
        name,
        rows["wall_seconds"].tolist(),
        rows["test_miou"].tolist(),
        rows["label"].tolist(),
        [str(a) for a in rows["arch"]],
    )


def info(data: ReportData) -> CostInfo:
    lb = data.lb
    pts = lb[lb["test_miou"].notna() & lb["wall_seconds"].notna() & lb["status"].isin([COMPLETED, PRUNED])]
    done, pr = pts[pts["status"] == COMPLETED], pts[pts["status"] == PRUNED]
    by_arch = [points(str(arch), g) for arch, g in done.groupby(done["arch"].fillna("?").astype(str))]
    front = None
    if len(done):
        idx = pareto_front(done["wall_seconds"].to_numpy(float), done["test_miou"].to_numpy(float))
        front = points("Pareto front", done.iloc[idx])
    return CostInfo(by_arch, points("pruned", pr) if len(pr) else None, front)


def scatter(p: Points, **style) -> go.Scatter:
    return go.Scatter(
        x=np.asarray(p.wall_seconds), y=np.asarray(p.test_miou), name=p.name, text=p.labels, **style
    )


def plot(info: CostInfo) -> go.Figure:
    fig = go.Figure()
    for p in info.by_arch:
        fig.add_trace(scatter(p, mode="markers", marker=dict(size=9), hovertemplate=HOVER))
    if info.pruned is not None:
        marker = dict(symbol="x", color=PRUNED_COLOR, size=8)
        hover = HOVER.replace("%{text}", "%{text} (pruned)")
        fig.add_trace(scatter(info.pruned, mode="markers", marker=marker, hovertemplate=hover))
    if info.front is not None:
        fig.add_trace(
            scatter(
                info.front,
                mode="lines+markers",
                line_shape="hv",
                line=dict(color=FRONT_COLOR, width=2),
                marker=dict(size=14, symbol="circle-open", color=FRONT_COLOR),
                hovertemplate=HOVER + "<extra>front</extra>",
            )
        )
    fig.update_layout(xaxis_title="training time (wall_seconds)", yaxis_title="test mIoU")
    return fig


def front_table(front: Points) -> str:
    rows = [
        [e(label), e(arch), seconds(s), fmt(miou)]
        for label, arch, s, miou in zip(front.labels, front.archs, front.wall_seconds, front.test_miou)
    ]
    return table(["trial", "arch", "training time", "test mIoU"], rows, "small front")


def render(info: CostInfo) -> str:
    if not info.by_arch and info.pruned is None:
        return empty("No trial has both a test mIoU and a training time yet.")
    return (
        figure(plot(info), "fig-cost", 420)
        + '<p class="hint">Pareto front over completed trials: no other completed '
        "trial is both faster and better on test.</p>" + (front_table(info.front) if info.front is not None else "")
    )
