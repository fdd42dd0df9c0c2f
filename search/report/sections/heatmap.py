"""Per-class test IoU: a heatmap of trials (ranked by val mIoU) against the classes (VOC's 21, or the data's own)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

from search.report.html import e, empty, figure
from search.report.load import ReportData, class_label, iou_columns_of

MAX_HEATMAP_ROWS = 80
ROW_PX, BASE_PX, MIN_PX = 22, 160, 300  # figure height: BASE_PX + ROW_PX per trial, at least MIN_PX
ZMAX_FLOOR = 1e-6  # keeps the colour scale valid when every IoU is 0


class HeatmapInfo(NamedTuple):
    labels: list[str]  # trials, best first; empty when no trial has per-class IoU
    classes: list[str]
    iou: list[list[float]]  # (trial, class) test IoU, NaN where the class was never predicted nor present
    zmax: float
    note: str  # when trials were left out


def info(data: ReportData) -> HeatmapInfo:
    lb = data.lb
    cols = iou_columns_of(lb)
    rows = lb[lb[cols].notna().any(axis=1)] if len(lb) and cols else lb.iloc[:0]
    note = ""
    if len(rows) > MAX_HEATMAP_ROWS:
        note = f"Top {MAX_HEATMAP_ROWS} of {len(rows)} trials by val mIoU."
        rows = rows.iloc[:MAX_HEATMAP_ROWS]
    z = rows[cols].to_numpy(dtype=float)
    zmax = max(float(np.nanmax(z)), ZMAX_FLOOR) if len(rows) else ZMAX_FLOOR
    return HeatmapInfo(list(rows["label"]), [class_label(data, c) for c in cols], z.tolist(), zmax, note)


def render(info: HeatmapInfo) -> str:
    if not info.labels:
        return empty("No trial reports per-class IoU yet (the iou_<class> columns are empty).")
    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(info.iou, dtype=float),
            x=info.classes,
            y=info.labels,
            colorscale="Viridis",
            zmin=0,
            zmax=info.zmax,
            colorbar=dict(title=dict(text="test IoU")),
            hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(tickangle=-45, type="category")
    note = f'<p class="note">{e(info.note)}</p>' if info.note else ""
    return note + figure(fig, "fig-heatmap", max(BASE_PX + ROW_PX * len(info.labels), MIN_PX))
