"""Learning curves (the paper's Figures 1-7): train/val loss, val mIoU and val pixel accuracy per epoch, one
colour per trial, pruned and failed trials dashed and marked where they stopped; a selector shows groups of trials
(the page's script restyles the figure, assets/report.js).

Up to MAX_CURVE_TRIALS trials every trial has its curves; beyond that (a search of thousands) the figure holds the
fixed trials, the TOP_CURVES best and a seeded random sample of SAMPLE_CURVES of the others, and says so."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search.report.html import COLORS, e, empty, figure
from search.report.load import CURVE_METRICS, ReportData, display_order, fixed_ids
from search.report.values import scalar
from search.vocab import FAILED, PRUNED, RUNNING

MAX_CURVE_TRIALS = 200  # traces: 4 per trial; more trials than this: fixed + top + a sample
TOP_CURVES = 25  # the best trials by rank, when sampling
SAMPLE_CURVES = 100  # of the other trials, drawn at random (SAMPLE_SEED), when sampling
SAMPLE_SEED = 0
LOG_LOSS_RATIO = 1e3  # loss panels switch to a log axis when the largest loss is this many times the smallest
LOSS_PANELS = ("train_loss", "val_loss")  # the top row; a diverged trial would flatten every other curve
TOP_GROUP = 5  # "fixed trials + top 5"
END_SYMBOLS = {PRUNED: "x", FAILED: "diamond", RUNNING: "circle-open"}  # marker at a curve's last epoch
END_MARKER_PX = 11
OTHER_COLOR = "#555"  # a trial in the history but not on the leaderboard
TARGET_TICKS = 10  # about this many epoch ticks


class Curve(NamedTuple):
    trial_id: str
    label: str
    status: str
    color: str
    epochs: list[int | float]
    values: dict[str, list[float]]  # CURVE_METRICS -> one value per epoch (NaN where missing)


class CurvesInfo(NamedTuple):
    curves: list[Curve]  # fixed trials in the paper's order, then by rank, then trials not on the leaderboard
    groups: dict[str, list[str]]  # selector entry -> trial ids; the first is shown at load
    log_panels: list[str]  # loss panels on a log axis
    dtick: int  # epochs between ticks
    note: str  # when trials were left out


def trial_list(data: ReportData) -> list[tuple[str, str, str]]:
    """(trial_id, label, status) of every trial with history: leaderboard ones first, then still-running ones."""
    lb, hist = data.lb, data.hist
    order = display_order(lb)
    order = order[order["trial_id"].isin(set(hist["trial_id"]))]
    trials = list(zip(order["trial_id"], order["label"], order["status"]))
    for t in sorted(set(hist["trial_id"]) - set(order["trial_id"])):  # in the history, not yet on the leaderboard
        name = str(hist.loc[hist["trial_id"] == t, "name"].iloc[0]) if "name" in hist else t
        trials.append((t, name, RUNNING))
    return trials


def sampled(data: ReportData, trials: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], str, list[str]]:
    """All trials, or (beyond MAX_CURVE_TRIALS) the fixed ones, the top TOP_CURVES and a random sample of the
    rest, in display order; the sentence that says which; the sampled ids."""
    if len(trials) <= MAX_CURVE_TRIALS:
        return trials, "", []
    fixed = fixed_ids(data.lb)
    ranked_ids = [t for t in data.lb["trial_id"] if t not in fixed]
    top = set(ranked_ids[:TOP_CURVES])
    rest = sorted(t for t, *_ in trials if t not in fixed and t not in top)
    sample = set(np.random.default_rng(SAMPLE_SEED).choice(rest, min(SAMPLE_CURVES, len(rest)), replace=False))
    keep = [tr for tr in trials if tr[0] in fixed or tr[0] in top or tr[0] in sample]
    n_fixed = sum(tr[0] in fixed for tr in keep)
    note = (f"{len(trials):,} trials: showing {len(keep)}: the {n_fixed} fixed trials, the top {len(top)} by val mIoU "
            f"and a random sample of {len(sample)} of the other {len(rest):,} (seed {SAMPLE_SEED}; 'sample' in the "
            f"selector). Every trial is in the leaderboard, the hyperparameter plots and search efficiency.")
    return keep, note, [tr[0] for tr in keep if tr[0] in sample]


def groups(data: ReportData, trials: list[tuple[str, str, str]], sample: list[str] = ()) -> dict[str, list[str]]:
    shown = {t for t, *_ in trials}
    fixed = fixed_ids(data.lb)
    fixed_shown = [t for t, *_ in trials if t in fixed]
    by_rank = [t for t in data.lb["trial_id"] if t in shown]
    out = {
        f"fixed trials + top {TOP_GROUP}": fixed_shown + [t for t in by_rank if t not in fixed_shown][:TOP_GROUP],
        "fixed trials": fixed_shown,
        "top 10": by_rank[:10],
        "pruned trials": [t for t, _, s in trials if s == PRUNED],
        **({"sample": sample} if sample else {}),
        "all shown" if sample else "all trials": [t for t, *_ in trials],
    }
    return {k: v for k, v in out.items() if v}


def log_panels(hist) -> list[str]:
    out = []
    for col in LOSS_PANELS:
        v = hist[col][np.isfinite(hist[col]) & (hist[col] > 0)]
        if len(v) and v.max() / v.min() > LOG_LOSS_RATIO:
            out.append(col)
    return out


def info(data: ReportData) -> CurvesInfo:
    hist = data.hist
    if hist.empty:
        return CurvesInfo([], {}, [], 1, "")
    trials, note, sample = sampled(data, trial_list(data))
    colors = {t: COLORS[i % len(COLORS)] for i, t in enumerate(display_order(data.lb)["trial_id"])}
    curves = []
    for tid, label, status in trials:
        h = hist[hist["trial_id"] == tid]
        values = {col: h[col].tolist() for col in CURVE_METRICS}
        curves.append(Curve(tid, str(label), str(status), colors.get(tid, OTHER_COLOR), h["epoch"].tolist(), values))
    dtick = max(1, round(hist["epoch"].max() / TARGET_TICKS)) if hist["epoch"].notna().any() else 1
    return CurvesInfo(curves, groups(data, trials, sample), log_panels(hist), int(scalar(dtick)), note)


def add_curve(fig: go.Figure, c: Curve, visible: bool) -> None:
    """The trial's four traces, one per panel; a marker only at the last epoch, where it stopped."""
    end = END_SYMBOLS.get(c.status)
    line = dict(color=c.color, width=1.6, dash="dash" if c.status in (PRUNED, FAILED) else "solid")
    sizes = [0] * (len(c.epochs) - 1) + [END_MARKER_PX if end else 0]
    marker = dict(size=sizes, symbol=end or "circle", color=c.color)
    for i, (col, title) in enumerate(CURVE_METRICS.items()):
        fig.add_trace(
            go.Scatter(
                x=np.asarray(c.epochs),
                y=np.asarray(c.values[col]),
                name=c.label,
                legendgroup=c.trial_id,
                showlegend=i == 0,
                meta=c.trial_id,
                mode="lines+markers",
                line=line,
                marker=marker,
                visible=True if visible else "legendonly",
                hovertemplate=f"{e(c.label)} ({c.status})<br>epoch %{{x}}<br>{title} %{{y:.4f}}<extra></extra>",
            ),
            row=i // 2 + 1,
            col=i % 2 + 1,
        )


def plot(info: CurvesInfo) -> go.Figure:
    fig = make_subplots(
        rows=2, cols=2, subplot_titles=list(CURVE_METRICS.values()), horizontal_spacing=0.08, vertical_spacing=0.12
    )
    shown = set(next(iter(info.groups.values())))
    for c in info.curves:
        add_curve(fig, c, c.trial_id in shown)
    for i in range(len(CURVE_METRICS)):
        fig.update_xaxes(title_text="epoch", row=i // 2 + 1, col=i % 2 + 1)
    for i, col in enumerate(LOSS_PANELS):
        if col in info.log_panels:
            fig.update_yaxes(type="log", row=1, col=i + 1)
            fig.layout.annotations[i].text += " (log scale)"
    fig.update_xaxes(tick0=0 if info.dtick > 1 else 1, dtick=info.dtick)
    fig.update_layout(legend=dict(title=dict(text="trial (click to toggle)")), hovermode="closest")
    return fig


def selector(info: CurvesInfo) -> str:
    opts = "".join(f'<option value="g:{e(k)}">{e(k)}</option>' for k in info.groups)
    opts += "".join(f'<option value="t:{e(c.trial_id)}">{e(c.label)} — {e(c.status)}</option>' for c in info.curves)
    return (
        f'<div class="controls"><label>show <select id="curve-select" data-fig="fig-curves">{opts}</select>'
        f'</label><span class="hint">Dashed with × at the end: pruned at that epoch; dashed with ◆: failed; '
        f"solid: ran all its epochs. Click legend entries to add or remove trials.</span></div>"
        f"<script>window.SEGTUNE_CURVE_GROUPS = {json.dumps(info.groups)};</script>"
    )


def render(info: CurvesInfo) -> str:
    if not info.curves:
        return empty("No per-epoch history yet (history.parquet is empty or missing).")
    note = f'<p class="note">{e(info.note)}</p>' if info.note else ""
    return note + selector(info) + figure(plot(info), "fig-curves", 720)
