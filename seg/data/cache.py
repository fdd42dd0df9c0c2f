"""Decoded, resized splits as uint8 tensors, cached on disk once and then kept whole on the training device.

VOC splits are small (a few hundred images), so, as in airbench, every image of a split lives on the device as
one uint8 tensor and batches are sliced from it; nothing is decoded during training. The first load of a split
decodes, checks and resizes every file (errors appear here, once, naming the file) and saves the result under
`cfg.cache_dir`, keyed by everything that determines its content. Where the files are and what the classes are
comes from the dataset registry (seg.data.registry); how each image becomes image_size x image_size from the
resize policy (seg.data.resize).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seg.config import TrainConfig
from seg.data.classes import VOC, ClassInfo
from seg.data.folder import SplitFiles
from seg.data.registry import dataset_kind
from seg.data.resize import fit_image, fit_mask
from seg.data.voc import IGNORE_INDEX, NUM_CLASSES, read_pair

CACHE_FORMAT = 1  # bump when decoding/resizing changes, so stale caches are not reused
DECODE_THREADS = 4  # PIL releases the GIL while decoding and resizing


@dataclass
class SplitData:
    """One split at the training size: images uint8 (N, 3, S, S), masks uint8 (N, S, S) with 255 = void."""

    images: torch.Tensor
    masks: torch.Tensor
    ids: list[str]

    def to(self, device: torch.device | str) -> SplitData:
        return SplitData(self.images.to(device), self.masks.to(device), list(self.ids))

    def __len__(self) -> int:
        return len(self.ids)


def _decode(image_path: str, mask_path: str, size: int, policy: str, classes: ClassInfo,
            classes_file: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Checked pair at size x size under the resize policy: image (H, W, 3) bilinear, mask (H, W) nearest."""
    image, mask = read_pair(image_path, mask_path, classes, classes_file)
    return fit_image(image, size, policy), fit_mask(mask, size, policy)  # class indices are never blended


def decode_split(files: SplitFiles, size: int, policy: str = "squash", classes: ClassInfo = VOC,
                 classes_file: str | None = None) -> SplitData:
    """Decode and resize every (image, mask) of a split on a small thread pool."""
    n = len(files.images)
    with ThreadPoolExecutor(min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        pairs = list(pool.map(_decode, files.images, files.masks, [size] * n, [policy] * n, [classes] * n,
                              [classes_file] * n))
    images = (
        torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).contiguous()
    )  # (N, 3, S, S)
    masks = torch.from_numpy(np.stack([p[1] for p in pairs]))  # (N, S, S)
    return SplitData(images, masks, list(files.ids))


def cache_key(files: SplitFiles, root: Path, year: str, split: str, size: int, extra: tuple = ()) -> str:
    """Hash of everything the cached tensors depend on; a touched or replaced file changes it."""
    stats = [(st.st_size, st.st_mtime_ns) for p in (*files.images, *files.masks) for st in [os.stat(p)]]
    blob = json.dumps([CACHE_FORMAT, str(root), year, split, files.ids, size, stats, *extra])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(cfg: TrainConfig, split: str, key: str) -> Path:
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.data_root) / ".segtune-cache"
    tag = f"voc{cfg.year}" if dataset_kind(cfg).classes_file(cfg) is None else dataset_kind(cfg).tag
    return cache_dir.expanduser().resolve() / f"{tag}-{split}-{cfg.image_size}px-{key}.pt"


def _read_cache(path: Path, n: int, size: int) -> SplitData | None:
    """The cached split, or None (with a warning) when the file is unreadable or not what it should be."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        data = SplitData(d["images"], d["masks"], list(d["ids"]))
        ok = data.images.shape == (n, 3, size, size) and data.masks.shape == (n, size, size)
        if ok and data.images.dtype == data.masks.dtype == torch.uint8:
            return data
        problem = "has unexpected shapes or dtypes"
    except Exception as e:  # truncated zip, unpickling error, missing key...
        problem = f"is unreadable ({type(e).__name__}: {e})"
    warnings.warn(f"cache file {path} {problem}; rebuilding it", RuntimeWarning, stacklevel=3)
    return None


def _write_cache(path: Path, data: SplitData) -> None:
    """tmp + os.replace: readers see the old file or the whole new one, never a partial write."""
    from seg.atomic import atomic_write

    state = {"images": data.images, "masks": data.masks, "ids": data.ids, "format": CACHE_FORMAT}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_split(cfg: TrainConfig, split: str, device: torch.device | str = "cpu") -> SplitData:
    """A whole split at `cfg.image_size`, from the disk cache when it is current, moved to `device`."""
    cfg = cfg.resolved()
    kind = dataset_kind(cfg)
    files = kind.split_files(cfg, split)  # generates synthetic data first; checks the layout and the file lists
    classes, classes_file, policy = kind.classes(cfg), kind.classes_file(cfg), cfg.effective_resize
    # VOC read the VOC way keeps the key it always had; anything else also keys on policy and classes
    extra = () if classes_file is None and policy == "squash" else (kind.tag, policy, classes.num_classes,
                                                                     classes.ignore_index)
    path = cache_path(cfg, split, cache_key(files, Path(cfg.data_root), cfg.year, split, cfg.image_size, extra))
    data = _read_cache(path, len(files.ids), cfg.image_size) if path.is_file() else None
    if data is None:
        data = decode_split(files, cfg.image_size, policy, classes, None if classes_file is None else str(classes_file))
        _write_cache(path, data)
    return data.to(device)


def class_pixel_counts(masks: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Labelled pixels per class, LongTensor (num_classes,) on the masks' device; void (255) is not counted."""
    counts = torch.bincount(
        masks.reshape(-1), minlength=IGNORE_INDEX + 1
    )  # (256,); uint8 input, no copy to long
    return counts[:num_classes].long()
