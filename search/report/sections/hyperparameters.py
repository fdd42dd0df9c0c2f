"""Hyperparameters: parallel coordinates of the scored trials over the varying hyperparameters (log10 axes for
wide positive ranges, categories as ticks), and Optuna's fANOVA importance of each for the best val mIoU."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

from search.report.analysis import log_axis, numeric_param, param_importances
from search.report.html import e, empty, figure
from search.report.load import ReportData, hyperparameter_columns, varying
from search.report.values import labels

SCORE_LABEL = "val mIoU"
PARCOORDS_MARGIN = dict(l=110, r=110, t=90, b=40)  # px: room for the axis titles
BAR_PX, BASE_PX = 28, 120  # importance figure height: BASE_PX + BAR_PX per parameter


class Axis(NamedTuple):
    label: str
    values: list  # one per scored trial; log10 of the value on a log axis, the category's index for a category
    ticktext: list[str] | None  # category names, at ticks 0, 1, ...; None for a numeric axis


class HyperparametersInfo(NamedTuple):
    n_scored: int  # completed and pruned trials with a val mIoU
    axes: list[Axis]  # one per varying hyperparameter
    score: list[float]  # best val mIoU per scored trial: the last axis and the line colour
    importances: dict[str, float]  # most important first; empty when they cannot be computed
    importance_note: str  # how they were computed, or why not


def axis(c: str, s) -> Axis:
    if numeric_param(s):
        logged = log_axis(s)
        return Axis(f"log10 {c}" if logged else c, (np.log10(s) if logged else s).tolist(), None)
    cats = sorted(labels(s).unique())
    return Axis(c, labels(s).map({v: i for i, v in enumerate(cats)}).tolist(), cats)


def info(data: ReportData) -> HyperparametersInfo:
    lb = data.lb
    scored = lb[lb["best_val_miou"].notna()]
    hp = varying(scored, hyperparameter_columns(scored))
    axes = [axis(c, scored[c]) for c in hp]  # none with fewer than two scored trials (nothing varies)
    importances, how = param_importances(lb)
    return HyperparametersInfo(len(scored), axes, scored["best_val_miou"].tolist(), importances, how)


def parcoords(info: HyperparametersInfo) -> str:
    dims = [dict(label=a.label, values=np.asarray(a.values)) for a in info.axes]
    for d, a in zip(dims, info.axes):
        if a.ticktext is not None:  # a category axis: ticks 0, 1, ... named by the categories
            d.update(tickvals=list(range(len(a.ticktext))), ticktext=a.ticktext)
    score = np.asarray(info.score)
    dims.append(dict(label=SCORE_LABEL, values=score))
    line = dict(color=score, colorscale="Viridis", showscale=True, colorbar=dict(title=dict(text=SCORE_LABEL)))
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    return (
        f'<p class="hint">{info.n_scored} scored trials (completed and pruned); drag along an axis to '
        "filter.</p>" + figure(fig, "fig-parcoords", 460, margin=PARCOORDS_MARGIN)
    )


def importance(info: HyperparametersInfo) -> str:
    if not info.importances:
        return empty(info.importance_note)
    names = list(info.importances)[::-1]  # plotly draws the first bar at the bottom
    fig = go.Figure(
        go.Bar(
            x=[info.importances[n] for n in names],
            y=names,
            orientation="h",
            marker_color="#1f77b4",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(xaxis_title="importance (share of val mIoU variance)")
    height = BASE_PX + BAR_PX * len(names)
    return f'<p class="hint">{e(info.importance_note)}</p>' + figure(fig, "fig-importance", height)


def render(info: HyperparametersInfo) -> str:
    if not info.axes:
        top = empty(
            f"Parallel coordinates need at least two scored trials with a varying hyperparameter "
            f"({info.n_scored} scored, {len(info.axes)} varying)."
        )
    else:
        top = parcoords(info)
    return top + "<h3>Hyperparameter importance (fANOVA)</h3>" + importance(info)
