"""The paper's Table 4 (§4) as data: best-checkpoint validation and test scores of its seven experiments.

The paper trained on PASCAL VOC 2007 (segmentation subset) at 224x224; the numbers are copied verbatim.
Keys are segtune's fixed-trial names (`spaces/paper.yaml`), values use the leaderboard's column names so
the report can line them up with a leaderboard row without a mapping.
"""

from __future__ import annotations

PAPER_DATASET = "PASCAL VOC 2007"
PAPER_IMAGE_SIZE = 224  # px, square

# leaderboard column -> the paper's column title
TABLE4_COLUMNS = {
    "best_val_miou": "Best validation IoU",
    "best_val_pixel_acc": "Best validation pixel accuracy",
    "test_miou": "IoU on test",
    "test_pixel_acc": "Pixel accuracy on test",
}

# fixed-trial name -> (paper label, {column: value})
TABLE4: dict[str, tuple[str, dict[str, float]]] = {
    name: (label, dict(zip(TABLE4_COLUMNS, values)))
    for name, label, values in [
        ("baseline", "Baseline", (0.05486, 0.73823, 0.04800, 0.70578)),
        ("4a", "4a", (0.04985, 0.72074, 0.04811, 0.69542)),
        ("4b", "4b", (0.04497, 0.71236, 0.04174, 0.69448)),
        ("4c", "4c", (0.04271, 0.60852, 0.04214, 0.59277)),
        ("5a", "5a", (0.04245, 0.48558, 0.04275, 0.46131)),
        ("5b", "5b", (0.11415, 0.72988, 0.10563, 0.70622)),
        ("5c", "5c", (0.04887, 0.51972, 0.05137, 0.54130)),
    ]
}
FIXED_NAMES = tuple(TABLE4)  # the paper's order

PAPER_SUFFIX = "_paper"  # the leaderboard's paper-style (per-batch mean) twin of a column: docs/DESIGN.md


def paper_style(column: str) -> str:
    """`test_miou` -> `test_miou_paper`: the same score under the paper's per-batch metric."""
    return column + PAPER_SUFFIX
