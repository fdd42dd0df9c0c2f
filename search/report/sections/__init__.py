"""The report's sections, in page order: one module each, with `info(data) -> plain data` (numbers, strings and
lists, testable without HTML) and `render(info) -> HTML`, like Optuna's `_get_*_info` / `_get_*_plot` pairs.

SECTIONS is the registry: the page, its navigation bar and the section ids (which the tests and the page's script
rely on) all come from it. A new section is a module with `info` and `render`, registered here.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

from search.report.sections import (
    cost,
    curves,
    efficiency,
    gallery,
    header,
    heatmap,
    hyperparameters,
    leaderboard,
    table4,
)


class Section(NamedTuple):
    id: str  # the <section> id and the nav anchor
    title: str  # the nav shows it up to " ("
    intro: str  # HTML under the title, "" for none
    module: ModuleType  # has info(ReportData) and render(info) -> str


SECTIONS = (
    Section("overview", "Overview", "", header),
    Section(
        "leaderboard",
        "Leaderboard",
        "Click a header to sort; filter by status, architecture and fixed vs searched. Scores are those of each "
        "trial's best-validation-mIoU checkpoint; per-class IoU is on the test split.",
        leaderboard,
    ),
    Section("table4", "Paper Table 4 side by side", "", table4),
    Section("curves", "Learning curves (paper Figures 1–7)", "", curves),
    Section("gallery", "Mask gallery (paper Figures 8–9)", "", gallery),
    Section(
        "heatmap",
        "Per-class test IoU",
        "Trials ranked by val mIoU; blank cells: class never predicted nor present.",
        heatmap,
    ),
    Section("hyperparameters", "Hyperparameters", "", hyperparameters),
    Section("efficiency", "Search efficiency", "", efficiency),
    Section("cost", "Cost: test mIoU against training time", "", cost),
)
