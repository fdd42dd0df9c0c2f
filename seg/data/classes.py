"""Class vocabularies as plain data (no numpy, no torch), so configs, tables and reports can name classes cheaply.

PASCAL VOC's 21 classes are the default; a folder dataset brings its own (`classes.yaml`, read by
`seg.data.registry`). Inside segtune the void label is always 255 ("void": object borders, difficult regions,
padding), never scored; a dataset with another ignore index is remapped to 255 when its masks are decoded.
`ClassInfo` carries names, palette and ignore index; `column_names` makes names safe for Parquet columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
NUM_CLASSES = len(VOC_CLASSES)  # 21
IGNORE_INDEX = 255  # "void": never scored, never trained on
MAX_CLASSES = 255  # class indices 0..254 fit a uint8 mask beside void (255)
RGB = tuple[int, int, int]


def voc_colormap(n: int = 256) -> list[RGB]:
    """The devkit's `VOClabelcolormap`: the bits of the label index spread over the high bits of R, G, B."""
    out = []
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


_VOC_COLORMAP = voc_colormap()


def column_names(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Names safe for a column (`iou_<name>`): lower case, runs of anything but [a-z0-9] -> '_', unique.

    VOC's names are already safe and come back unchanged; 'Traffic light' -> 'traffic_light'; an empty result
    becomes 'class<i>'; a repeat gets '_<i>' appended.
    """
    out: list[str] = []
    for i, name in enumerate(names):
        safe = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or f"class{i}"
        out.append(f"{safe}_{i}" if safe in out else safe)
    return tuple(out)


@dataclass(frozen=True)
class ClassInfo:
    """A dataset's classes: index i is `names[i]`, drawn in `palette[i]`; `ignore_index` is the dataset's void
    value on disk (remapped to IGNORE_INDEX = 255 when masks are decoded)."""

    names: tuple[str, ...]
    palette: tuple[RGB, ...]  # one RGB per class
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def columns(self) -> tuple[str, ...]:
        return column_names(self.names)

    def palette_256(self) -> list[RGB]:
        """256 colours for a PIL "P" image: the classes' own, void (255) in VOC's cream, the rest VOC's."""
        full = list(_VOC_COLORMAP)
        full[: self.num_classes] = self.palette
        return full

    def to_yaml_dict(self) -> dict:
        """The `classes.yaml` mapping (seg.data.registry reads it back)."""
        return {"names": list(self.names), "palette": [list(c) for c in self.palette],
                "ignore_index": self.ignore_index}


def default_palette(n: int) -> tuple[RGB, ...]:
    """VOC's colours for the first n indices (background black), as plain tuples."""
    return tuple(_VOC_COLORMAP[:n])


VOC = ClassInfo(VOC_CLASSES, default_palette(NUM_CLASSES))
