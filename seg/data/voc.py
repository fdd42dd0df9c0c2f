"""PASCAL VOC segmentation: class names, palette, split lists and a checked reader for the VOCdevkit layout.

Everything that can go wrong with the files on disk is reported as a `DataError` that names the file and
says how to fix it. File access and download go through `torchvision.datasets.VOCSegmentation`; this module
adds the layout check, split-list validation and per-file decoding checks (corrupt files, sizes, labels).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from seg.data.classes import IGNORE_INDEX, NUM_CLASSES, VOC, VOC_CLASSES, ClassInfo, voc_colormap

__all__ = ["IGNORE_INDEX", "NUM_CLASSES", "VOC_CLASSES", "VOC_PALETTE", "DataError", "read_split_ids", "voc_dataset"]

SPLITS = ("train", "val", "trainval", "test")
YEARS = ("2007", "2012")


VOC_PALETTE = np.array(voc_colormap(), dtype=np.uint8)  # (256, 3) uint8; index 255 is the cream void colour (224, 224, 192)


class DataError(ValueError):
    """A problem with the dataset on disk, explained for a person: which file, what is wrong, the fix."""


def voc_dir(root: str | Path, year: str = "2007") -> Path:
    """`<root>/VOCdevkit/VOC<year>`: the folder that holds JPEGImages/, SegmentationClass/ and ImageSets/."""
    return Path(root).expanduser() / "VOCdevkit" / f"VOC{year}"


def _layout_help(root: str | Path, year: str) -> str:
    return (
        f"expected the VOCdevkit layout under {Path(root).expanduser().resolve()}:\n"
        f"  <root>/VOCdevkit/VOC{year}/JPEGImages/<id>.jpg\n"
        f"  <root>/VOCdevkit/VOC{year}/SegmentationClass/<id>.png\n"
        f"  <root>/VOCdevkit/VOC{year}/ImageSets/Segmentation/{{train,val,trainval,test}}.txt\n"
        "To get it: set `download: true` (needs network access), or copy an extracted VOCdevkit/ folder into "
        "data_root, or use `dataset: synthetic` for an offline stand-in."
    )


def check_layout(root: str | Path, year: str = "2007") -> Path:
    """Raise DataError unless the three VOC folders exist; returns the VOC<year> folder."""
    if year not in YEARS:
        raise DataError(f"unknown VOC year {year!r}; choose one of {YEARS}")
    base = voc_dir(root, year)
    missing = [
        d for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation") if not (base / d).is_dir()
    ]
    if missing:
        what = f"{base} is missing {', '.join(missing)}" if base.is_dir() else f"{base} does not exist"
        raise DataError(f"{what}; {_layout_help(root, year)}")
    return base


def read_split_ids(root: str | Path, year: str = "2007", split: str = "train") -> list[str]:
    """The ids listed in `ImageSets/Segmentation/<split>.txt` (blank lines skipped, order kept)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {SPLITS}")
    path = check_layout(root, year) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        hint = " (VOC2012 has no public test split: use test_split: null)" if split == "test" else ""
        raise DataError(f"split file {path} does not exist{hint}; {_layout_help(root, year)}")
    try:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read split file {path}: {e}") from None
    if not ids:
        raise DataError(f"split file {path} is empty; it should list one image id per line")
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise DataError(f"split file {path} lists ids more than once: {dupes[:5]}")
    return ids


def _download(root: str | Path, year: str, split: str) -> None:
    """torchvision's downloader; network failures become a DataError that explains the manual route."""
    from torchvision.datasets import VOCSegmentation

    try:
        VOCSegmentation(str(root), year=year, image_set=split, download=True)
    except (
        OSError,
        RuntimeError,
    ) as e:  # URLError, socket errors and md5 failures are all OSError/RuntimeError
        raise DataError(
            f"downloading VOC{year} ({split}) failed: {e}. The network may be unreachable from this machine; "
            f"place the data by hand instead. {_layout_help(root, year)}"
        ) from None


def voc_dataset(root: str | Path, year: str = "2007", split: str = "train", download: bool = False):
    """A `torchvision.datasets.VOCSegmentation` for the split, once layout, split list and files are checked.

    Its `images` / `masks` path lists follow `read_split_ids` (torchvision would keep blank lines as ids).
    """
    from torchvision.datasets import VOCSegmentation

    if year == "2012" and split == "test":
        raise DataError("VOC2012 has no public segmentation test split; use test_split: null (val is the selection split)")
    if download and not (voc_dir(root, year) / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
        _download(root, year, split)
    ids = read_split_ids(root, year, split)  # checks the layout first
    ds = VOCSegmentation(str(root), year=year, image_set=split, download=False)
    base = voc_dir(root, year)
    ds.images = [str(base / "JPEGImages" / f"{i}.jpg") for i in ids]
    ds.targets = [str(base / "SegmentationClass" / f"{i}.png") for i in ids]
    ds.ids = ids
    missing = [p for pair in zip(ds.images, ds.targets, strict=True) for p in pair if not Path(p).is_file()]
    if missing:
        split_file = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(
            f"{split_file} names files that do not exist: {missing[0]}{more}; "
            "restore the files or remove their ids from the split file"
        )
    return ds


def read_image(path: str | Path) -> Image.Image:
    """Decode an image (any format PIL reads) fully (so truncation is caught here, not later) as RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib.error... for broken files
        raise DataError(
            f"cannot decode image {path}: {e}; the file is corrupt or truncated, replace it"
        ) from None


def read_mask(path: str | Path, classes: ClassInfo = VOC, classes_file: str | Path | None = None) -> Image.Image:
    """Decode a class-index PNG ("P" palette or "L"), checking every value is a class index or the void value;
    a dataset's own void value is remapped to 255 (IGNORE_INDEX), segtune's void everywhere."""
    try:
        with Image.open(path) as im:
            im.load()
            mask = im.copy()
    except Exception as e:
        raise DataError(
            f"cannot decode mask {path}: {e}; the file is corrupt or truncated, replace it"
        ) from None
    if mask.mode not in ("P", "L"):
        raise DataError(
            f"mask {path} has mode {mask.mode!r}; "
            "expected a palette ('P') or grayscale ('L') PNG of class indices"
        )
    values = np.asarray(mask)
    counts = np.bincount(values.ravel(), minlength=256)
    n, void = classes.num_classes, classes.ignore_index
    bad = [v for v in np.flatnonzero(counts).tolist() if v >= n and v != void]
    if bad:
        where = f" listed in {classes_file}" if classes_file else ""
        raise DataError(
            f"mask {path} has values {bad} outside the class indices "
            f"0..{n - 1}{where} and {void} (void)"
        )
    if void != IGNORE_INDEX and counts[void]:
        mask = Image.fromarray(np.where(values == void, IGNORE_INDEX, values).astype(np.uint8), "L")
    return mask


def read_pair(image_path: str | Path, mask_path: str | Path, classes: ClassInfo = VOC,
              classes_file: str | Path | None = None) -> tuple[Image.Image, Image.Image]:
    """One checked (RGB image, index mask) pair of equal size."""
    image, mask = read_image(image_path), read_mask(mask_path, classes, classes_file)
    if image.size != mask.size:
        raise DataError(
            f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} but image {image_path} is "
            f"{image.size[0]}x{image.size[1]} (WxH); they must match pixel for pixel"
        )
    return image, mask
