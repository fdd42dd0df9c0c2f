"""Decoded, resized splits as uint8 tensors, cached on disk once and then kept whole on the training device.

VOC splits are small (a few hundred images), so, as in airbench, every image of a split lives on the device as
one uint8 tensor and batches are sliced from it; nothing is decoded during training. The first load of a split
decodes, checks and resizes every file (errors appear here, once, naming the file) and saves the result under
`cfg.cache_dir`, keyed by everything that determines its content.
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
from PIL import Image

from seg.config import TrainConfig
from seg.data.synthetic import make_synthetic_voc
from seg.data.voc import IGNORE_INDEX, NUM_CLASSES, read_pair, voc_dataset

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


def _decode(image_path: str, mask_path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked pair resized to size x size: image antialiased bilinear (H, W, 3), mask nearest (H, W)."""
    image, mask = read_pair(image_path, mask_path)
    image = np.asarray(image.resize((size, size), Image.BILINEAR))  # PIL filters over the whole footprint
    mask = np.asarray(mask.resize((size, size), Image.NEAREST))  # class indices must never be blended
    return image, mask


def decode_split(ds, size: int) -> SplitData:
    """Decode and resize every (image, mask) of a VOCSegmentation dataset on a small thread pool."""
    with ThreadPoolExecutor(min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        pairs = list(pool.map(_decode, ds.images, ds.masks, [size] * len(ds.images)))
    images = (
        torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).contiguous()
    )  # (N, 3, S, S)
    masks = torch.from_numpy(np.stack([p[1] for p in pairs]))  # (N, S, S)
    return SplitData(images, masks, list(ds.ids))


def cache_key(ds, root: Path, year: str, split: str, size: int) -> str:
    """Hash of everything the cached tensors depend on; a touched or replaced file changes it."""
    stats = [(st.st_size, st.st_mtime_ns) for p in (*ds.images, *ds.masks) for st in [os.stat(p)]]
    blob = json.dumps([CACHE_FORMAT, str(root), year, split, ds.ids, size, stats])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(cfg: TrainConfig, split: str, key: str) -> Path:
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.data_root) / ".segtune-cache"
    return cache_dir.expanduser().resolve() / f"voc{cfg.year}-{split}-{cfg.image_size}px-{key}.pt"


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
    if cfg.dataset == "synthetic":
        make_synthetic_voc(cfg.data_root, cfg.synthetic_counts, cfg.synthetic_size, seed=0)
    ds = voc_dataset(cfg.data_root, cfg.year, split, download=cfg.download)
    path = cache_path(cfg, split, cache_key(ds, Path(cfg.data_root), cfg.year, split, cfg.image_size))
    data = _read_cache(path, len(ds.ids), cfg.image_size) if path.is_file() else None
    if data is None:
        data = decode_split(ds, cfg.image_size)
        _write_cache(path, data)
    return data.to(device)


def class_pixel_counts(masks: torch.Tensor) -> torch.Tensor:
    """Labelled pixels per class, LongTensor (21,) on the masks' device; void (255) is not counted."""
    counts = torch.bincount(
        masks.reshape(-1), minlength=IGNORE_INDEX + 1
    )  # (256,); uint8 input, no copy to long
    return counts[:NUM_CLASSES].long()
