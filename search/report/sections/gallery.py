"""Mask gallery (the paper's Figures 8-9): the same val images for every trial; a top row with each image, its
ground truth and the ground truth on it, then one row per trial with its best checkpoint's prediction and the
prediction on the image. Fixed trials first (the paper's order), then the top searched trials."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from search.report.html import e, empty, fmt
from search.report.images import image_jpeg, mask_png, overlay
from search.report.load import ReportData, class_info, display_order, load_masks
from search.report.values import finite, scalar
from search.vocab import FIXED
from seg.data.classes import IGNORE_INDEX

GALLERY_TOP = 6  # searched trials in the gallery, after the fixed ones
GALLERY_FIXED = 12  # fixed trials in the gallery at most (the best by val mIoU): a grid written out as 2,500
# fixed trials made a 43 MB gallery
VOID_LABEL = "void (not scored)"


class GalleryRow(NamedTuple):
    trial_id: str
    label: str
    kind: str
    val_miou: float | None
    epoch: int | None  # the best epoch the masks come from
    cells: list[list[str] | None]  # per image id: [prediction, prediction on the image] data URIs; None: missing


class GalleryInfo(NamedTuple):
    why_empty: str | None  # set when there is nothing to show
    ids: list[str]  # val image ids, one column each
    reference: list[list[str]]  # per id: [image, ground truth, ground truth on the image] data URIs
    rows: list[GalleryRow]
    legend: list[tuple[str, tuple[int, int, int]]]  # (class, RGB) in the experiment's palette, void last
    unreadable: int  # masks files that could not be read
    fixed_with_masks: int  # fixed trials that have masks; at most GALLERY_FIXED of them are shown


def nothing(why: str) -> GalleryInfo:
    return GalleryInfo(why, [], [], [], [], 0, 0)


def fixed_candidates(data: ReportData) -> pd.DataFrame:
    """The fixed trials with a masks file, best first (the leaderboard's ranking)."""
    lb = data.lb
    fixed = lb[lb["kind"] == FIXED]
    have = fixed["trial_id"].map(lambda t: data.masks_file(t).is_file()).astype(bool)
    return fixed[have]


def gallery_trials(data: ReportData) -> list[pd.Series]:
    """Fixed trials (at most GALLERY_FIXED, the best by val mIoU; the paper's first, in its order), then the top
    searched trials, all with a masks file."""
    lb = data.lb
    have = lambda r: data.masks_file(r["trial_id"]).is_file()  # noqa: E731
    shown = fixed_candidates(data).head(GALLERY_FIXED)
    fixed = [r for _, r in display_order(shown).iterrows()]
    fixed_ids = set(lb.loc[lb["kind"] == FIXED, "trial_id"])
    top = []
    for _, r in lb[lb["best_val_miou"].notna() & ~lb["trial_id"].isin(fixed_ids)].iterrows():  # ranked: stop early
        if len(top) == GALLERY_TOP:
            break
        if have(r) and finite(r["best_val_miou"]):
            top.append(r)
    return fixed + top


def prediction_cell(image: np.ndarray | None, mask: np.ndarray, palette: np.ndarray) -> list[str]:
    """The mask in the palette, and the mask on its image when the sizes agree."""
    on_image = image is not None and image.shape[:2] == mask.shape
    return [mask_png(mask, palette), *([image_jpeg(overlay(image, mask, palette))] if on_image else [])]


def gallery_row(r: pd.Series, m: dict[str, np.ndarray], ids: list[str], ref_images: np.ndarray,
                palette: np.ndarray) -> GalleryRow:
    where = {str(i): k for k, i in enumerate(m["ids"])}
    images = m.get("images", ref_images)  # a searched image_size gives each trial its own images
    cells = [None if where.get(i) is None else prediction_cell(images[where[i]], m["pred"][where[i]], palette)
             for i in ids]
    epoch = int(m["epoch"]) if "epoch" in m and np.size(m["epoch"]) == 1 else None
    return GalleryRow(str(r["trial_id"]), str(r["label"]), str(r["kind"]), scalar(r["best_val_miou"]), epoch, cells)


def info(data: ReportData) -> GalleryInfo:
    trials = gallery_trials(data)
    if not trials:
        folder = data.path / "masks"
        why = "no masks/ folder" if not folder.is_dir() else "no fixed or top trial has a masks/<trial_id>.npz"
        return nothing(f"No predicted masks to show ({why}; trials keep masks only when num_masks > 0).")
    loaded = [(r, load_masks(data.masks_file(r["trial_id"]))) for r in trials]
    loaded = [(r, m) for r, m in loaded if m is not None and {"ids", "pred"} <= set(m)]
    ref = next((m for _, m in loaded if {"images", "gt"} <= set(m)), None)
    if ref is None:
        return nothing("The masks files could not be read (see the log).")
    ids = [str(i) for i in ref["ids"]]
    classes = class_info(data)
    palette = np.array(classes.palette_256(), dtype=np.uint8)  # (256, 3)
    pairs = zip(ref["images"], ref["gt"])
    reference = [[image_jpeg(im), mask_png(gt, palette), image_jpeg(overlay(im, gt, palette))] for im, gt in pairs]
    swatches = [*zip(classes.names, classes.palette), (VOID_LABEL, palette[IGNORE_INDEX].tolist())]
    return GalleryInfo(
        why_empty=None,
        ids=ids,
        reference=reference,
        rows=[gallery_row(r, m, ids, ref["images"], palette) for r, m in loaded],
        legend=[(c, tuple(rgb)) for c, rgb in swatches],
        unreadable=len(trials) - len(loaded),
        fixed_with_masks=len(fixed_candidates(data)),
    )


def thumbs(srcs: list[str]) -> str:
    return "".join(f'<img src="{s}" alt="">' for s in srcs)


def row_html(r: GalleryRow) -> str:
    cells = "".join("<td>—</td>" if c is None else f"<td>{thumbs(c)}</td>" for c in r.cells)
    ep = f", epoch {r.epoch}" if r.epoch is not None else ""
    sub = f"{e(r.kind)}, val mIoU {fmt(r.val_miou)}{ep}"
    return f'<tr data-trial="{e(r.trial_id)}"><th>{e(r.label)}<br><span class="sub">{sub}</span></th>{cells}</tr>'


def fixed_text(n: int) -> str:
    if n <= GALLERY_FIXED:
        return "the fixed ones"
    return f'<span id="gallery-fixed-cap">the {GALLERY_FIXED} best of the {n} fixed trials by val mIoU</span>'


def render(info: GalleryInfo) -> str:
    if info.why_empty is not None:
        return empty(info.why_empty)
    head = "<th>trial</th>" + "".join(f"<th>{e(i)}</th>" for i in info.ids)
    top = "".join(f"<td>{thumbs(srcs)}</td>" for srcs in info.reference)
    rows = [f"<tr><th>image / ground truth</th>{top}</tr>", *map(row_html, info.rows)]
    legend = "".join(f'<span><i style="background:rgb({r},{g},{b})"></i>{e(c)}</span>' for c, (r, g, b) in info.legend)
    note = f'<p class="note">{info.unreadable} masks file(s) could not be read.</p>' if info.unreadable else ""
    return (
        f'<div class="legend">{legend}</div>{note}<div class="tablewrap tall"><table id="gallery-table" '
        f'class="gallery"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        '<p class="hint">Top row: the val image, its ground truth, and the ground truth on the image. Trial rows: '
        "the prediction of the best-val-mIoU checkpoint (Figure 8) and the prediction on the image (Figure 9). "
        f"The trials shown: {fixed_text(info.fixed_with_masks)}, then the {GALLERY_TOP} best others with masks.</p>"
    )
