"""segtune data: the VOC reader, an offline synthetic stand-in, the on-device split cache, augmentation.

Names are imported on first use (PEP 562), so `import seg.data.classes` or `from seg.data import VOC_CLASSES`
does not pull in torch; `from seg.data import load_split` does.
"""
from __future__ import annotations

from typing import Any

from seg.data.classes import IGNORE_INDEX, NUM_CLASSES, VOC_CLASSES

_VOC = ("VOC_PALETTE", "DataError", "read_split_ids", "voc_dataset")  # numpy + PIL
_AUGMENT = ("augment_batch", "batch_indices", "normalize")  # torch
_CACHE = ("SplitData", "class_pixel_counts", "load_split")  # torch
__all__ = ["IGNORE_INDEX", "NUM_CLASSES", "VOC_CLASSES", *_VOC, *_AUGMENT, *_CACHE, "make_synthetic_voc"]


def __getattr__(name: str) -> Any:
    if name in _VOC:
        from seg.data import voc as home
    elif name in _AUGMENT:
        from seg.data import augment as home
    elif name in _CACHE:
        from seg.data import cache as home
    elif name == "make_synthetic_voc":
        from seg.data import synthetic as home
    else:
        raise AttributeError(f"module 'seg.data' has no attribute {name!r}")
    return getattr(home, name)
