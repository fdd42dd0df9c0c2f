"""Class vocabularies as plain data (no numpy, no torch), so configs, tables and reports can name classes cheaply.

PASCAL VOC's 21 classes are the default; index 255 is "void" (object borders, difficult regions), never scored.
"""
from __future__ import annotations

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
NUM_CLASSES = len(VOC_CLASSES)  # 21
IGNORE_INDEX = 255  # "void": never scored, never trained on
