"""Overview: the experiment, its data and hardware, its dates, the trial counts by status, the compute spent,
and the best trial (with its seed group's mean ± std where it has seed reruns)."""

from __future__ import annotations

import json
from typing import NamedTuple

from search.report.html import e, fmt, seconds, status_badge, when
from search.report.load import ReportData, best_trial, data_description, extreme, hardware_text, meta_value
from search.report.values import present, scalar
from search.vocab import FINAL_STATUSES, STATUSES


class Best(NamedTuple):
    label: str
    trial_id: str
    arch: str
    status: str
    val_miou: float | None  # this row's own best_val_miou
    test_miou: float | None
    test_pixel_acc: float | None
    seed_group: str | None  # None: the trial has no seed reruns
    n_seeds: int | None
    val_miou_mean: float | None
    val_miou_std: float | None  # None for a group of one completed run
    test_miou_mean: float | None
    test_miou_std: float | None


class HeaderInfo(NamedTuple):
    name: str
    space: str | None
    space_hash: str | None
    data: str
    hardware: str
    started: str | None  # ISO-8601
    finished: str | None  # None: still running
    n_trials: int
    status_counts: list[tuple[str, int]]  # the final statuses always, others when some trial has them
    epochs: int | float | None  # summed over the trials
    wall_seconds: float
    gpu_seconds: float
    best: Best | None
    notes: list[str]  # what could not be read
    lineage: list[str]  # where the study's priors came from (warm start) and how the budget grew
    meta_json: str | None  # experiment.json, pretty-printed


def best_info(data: ReportData) -> Best | None:
    bt = best_trial(data.lb)
    if bt is None:
        return None
    # a seed group's rows carry its mean (docs/DESIGN.md, seed reruns); other rows have nulls there
    group = scalar(bt.get("seed_group")) or bt["name"] if present(bt.get("val_miou_mean")) else None
    stat = (lambda col: scalar(bt.get(col))) if group is not None else (lambda col: None)
    return Best(
        label=str(bt["label"]),
        trial_id=str(bt["trial_id"]),
        arch=str(bt.get("arch") or ""),
        status=str(bt["status"]),
        val_miou=scalar(bt["best_val_miou"]),
        test_miou=scalar(bt["test_miou"]),
        test_pixel_acc=scalar(bt["test_pixel_acc"]),
        seed_group=None if group is None else str(group),
        n_seeds=stat("n_seeds"),
        val_miou_mean=stat("val_miou_mean"),
        val_miou_std=stat("val_miou_std"),
        test_miou_mean=stat("test_miou_mean"),
        test_miou_std=stat("test_miou_std"),
    )


def info(data: ReportData) -> HeaderInfo:
    lb, meta = data.lb, data.meta
    counts = lb["status"].value_counts()
    order = [*STATUSES, *sorted(set(counts.index) - set(STATUSES))]
    return HeaderInfo(
        name=data.name,
        space=meta_value(meta, "space_file", str),
        space_hash=meta_value(meta, "space_hash", str),
        data=data_description(data),
        hardware=hardware_text(data),
        started=meta_value(meta, "started_at", str) or extreme(lb["started_at"], min),
        finished=meta_value(meta, "finished_at", str) or extreme(lb["finished_at"], max),
        n_trials=len(lb),
        status_counts=[(s, int(counts.get(s, 0))) for s in order if counts.get(s, 0) or s in FINAL_STATUSES],
        epochs=scalar(lb["epochs_run"].sum(min_count=1)),
        wall_seconds=scalar(lb["wall_seconds"].sum()),
        gpu_seconds=scalar(lb["gpu_seconds"].sum()),
        best=best_info(data),
        notes=list(data.notes),
        lineage=lineage(meta),
        meta_json=json.dumps(meta, indent=2, default=str) if meta else None,
    )


def lineage(meta: dict) -> list[str]:
    """experiment.json's `warm_start` (search/tune/warmstart.py) and `budget_changes` (search/grow.py), in words."""
    out = []
    warm = meta.get("warm_start")
    if isinstance(warm, dict):
        out.append(f"Warm-started from {warm.get('source')}: {warm.get('added')} of its {warm.get('of')} trials "
                   f"were added to the Optuna study as prior knowledge ({warm.get('skipped')} skipped: failed, "
                   f"unscored or outside this space). They are not rows of this report.")
    for change in meta.get("budget_changes") or []:
        if isinstance(change, dict):
            out.append(f"Budget changed {when(change.get('at'))} after {change.get('searched_trials_before')} searched "
                       f"trials: {'; '.join(change.get('changes') or [])}.")
    return out


def best_html(b: Best | None) -> str:
    if b is None:
        return "no trial has a validation score yet"
    text = (
        f'<b id="best-trial">{e(b.label)}</b> ({e(b.trial_id)}, {e(b.arch)}): '
        f"val mIoU <b>{fmt(b.val_miou)}</b>, test mIoU {fmt(b.test_miou)}, "
        f"test pixel acc. {fmt(b.test_pixel_acc)}, {e(b.status)}"
    )
    if b.seed_group is not None:
        text += (
            f'; <span id="best-seed-group">seed group {e(b.seed_group)} over {fmt(b.n_seeds)} seeds: '
            f"val mIoU <b>{fmt(b.val_miou_mean)} ± {fmt(b.val_miou_std)}</b>, "
            f"test mIoU {fmt(b.test_miou_mean)} ± {fmt(b.test_miou_std)}</span>"
        )
    return text


def render(info: HeaderInfo) -> str:
    counts = ", ".join(f"{status_badge(s)} {n}" for s, n in info.status_counts)
    experiment = (
        f"<b>{e(info.name)}</b>"
        + (f" — space {e(info.space)}" if info.space else "")
        + (f" <code>{e(str(info.space_hash)[:12])}</code>" if info.space_hash else "")
    )
    compute = f"{fmt(info.epochs)} epochs, training {seconds(info.wall_seconds)}"
    if info.gpu_seconds > 0:
        compute += f", {info.gpu_seconds / 3600:.2f} GPU-hours"
    rows = [
        ("Experiment", experiment),
        ("Data", e(info.data)),
        ("Hardware", e(info.hardware)),
        ("Dates", f"{when(info.started)} → {when(info.finished) if present(info.finished) else 'still running'}"),
        ("Trials", f'<span id="trial-count">{info.n_trials}</span>: <span id="status-counts">{counts}</span>'),
        ("Compute", compute),
        ("Best trial", best_html(info.best)),
        *([("Lineage", '<span id="lineage">' + "<br>".join(map(e, info.lineage)) + "</span>")] if info.lineage else []),
    ]
    body = '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"
    body += "".join(f'<p class="note">{e(n)}</p>' for n in info.notes)
    if info.meta_json is not None:
        body += f"<details><summary>experiment.json</summary><pre>{e(info.meta_json)}</pre></details>"
    return body
