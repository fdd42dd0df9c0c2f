"""segtune data: the VOC reader, an offline synthetic stand-in, the on-device split cache, augmentation."""

from seg.data.augment import augment_batch, batch_indices, normalize
from seg.data.cache import SplitData, class_pixel_counts, load_split
from seg.data.synthetic import make_synthetic_voc
from seg.data.voc import (
    IGNORE_INDEX,
    NUM_CLASSES,
    VOC_CLASSES,
    VOC_PALETTE,
    DataError,
    read_split_ids,
    voc_dataset,
)

__all__ = [
    "IGNORE_INDEX", "NUM_CLASSES", "VOC_CLASSES", "VOC_PALETTE", "DataError", "SplitData", "augment_batch",
    "batch_indices", "class_pixel_counts", "load_split", "make_synthetic_voc", "normalize", "read_split_ids",
    "voc_dataset",
]  # fmt: skip
