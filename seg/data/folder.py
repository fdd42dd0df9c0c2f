"""Your own data: a folder of images and index masks, its classes in `classes.yaml`, checked before training.

    <root>/classes.yaml        names: [background, road, car]   # index = position; class 0 is the background
                               palette: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional, RGB per class
                               ignore_index: 255                # optional: the void value in the masks
    <root>/images/<id>.<ext>   any format PIL reads (jpg, png, tif, bmp, webp, ...)
    <root>/masks/<id>.png      class indices (palette "P" or grayscale "L" PNG), same size as the image
    <root>/splits/<split>.txt  optional: one id per line for train / val / test (trainval = train + val when
                               absent); without splits/, the ids are split by `split_fractions`, shuffled
                               with `split_seed` (the same seed gives the same split everywhere)

Every mistake is a `DataError` naming the file or key and the fix. Only yaml and the file system here; the
pixels are checked when a split is decoded (seg.data.voc.read_pair, against these classes).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seg.data.classes import IGNORE_INDEX, MAX_CLASSES, ClassInfo, default_palette
from seg.data.voc import DataError

CLASSES_FILE = "classes.yaml"
IMAGES, MASKS, SPLITS = "images", "masks", "splits"
CLASSES_KEYS = ("names", "palette", "ignore_index")
MASK_SUFFIX = ".png"
LAYOUT = (
    "a folder dataset is <root>/classes.yaml (names: [background, ...]; optional palette: [[r, g, b], ...] and "
    "ignore_index: 255), <root>/images/<id>.<ext>, <root>/masks/<id>.png and optionally "
    "<root>/splits/{train,val,test}.txt (see README, 'Your own data')"
)


@dataclass(frozen=True)
class SplitFiles:
    """One split's ids and the paths of their images and masks (same order)."""

    ids: list[str]
    images: list[str]
    masks: list[str]


def _classes_error(path: Path, key: str, what: str) -> DataError:
    return DataError(f"{path}: {key}: {what}; {LAYOUT}")


def _names(path: Path, names: Any) -> tuple[str, ...]:
    if isinstance(names, dict):  # {0: background, 1: car}: indices must be 0..N-1
        if sorted(names) != list(range(len(names))):
            raise _classes_error(path, "names", f"indices must be 0..{len(names) - 1} (got {sorted(names)})")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise _classes_error(path, "names", f"expected a list of class names (got {names!r})")
    if not 2 <= len(names) <= MAX_CLASSES:
        raise _classes_error(path, "names", f"list 2..{MAX_CLASSES} classes (got {len(names)})")
    dupes = sorted(n for n, k in Counter(names).items() if k > 1)
    if dupes:
        raise _classes_error(path, "names", f"names repeat: {dupes}")
    return tuple(n.strip() for n in names)


def _palette(path: Path, palette: Any, n: int) -> tuple[tuple[int, int, int], ...]:
    if palette is None:
        return default_palette(n)
    if not isinstance(palette, list) or len(palette) != n:
        raise _classes_error(path, "palette", f"expected {n} [r, g, b] colours, one per name (got {palette!r})")
    for i, c in enumerate(palette):
        if not (isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)):
            raise _classes_error(path, f"palette[{i}]", f"expected [r, g, b] with integers 0..255 (got {c!r})")
    return tuple(tuple(c) for c in palette)


def read_classes(root: str | Path) -> ClassInfo:
    """`<root>/classes.yaml` as a ClassInfo; a missing or malformed file raises DataError naming the key."""
    path = Path(root).expanduser().resolve() / CLASSES_FILE
    if not path.is_file():
        raise DataError(f"{path} does not exist; {LAYOUT}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{path}: not valid YAML: {e}; {LAYOUT}") from None
    if not isinstance(data, dict) or "names" not in data:
        raise _classes_error(path, "names", "missing (expected a mapping with names: [background, ...])")
    unknown = sorted(set(data) - set(CLASSES_KEYS))
    if unknown:
        raise _classes_error(path, unknown[0], f"unknown key; allowed: {', '.join(CLASSES_KEYS)}")
    names = _names(path, data["names"])
    ignore = data.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or isinstance(ignore, bool) or not len(names) <= ignore <= IGNORE_INDEX:
        raise _classes_error(path, "ignore_index", f"must be an integer {len(names)}..{IGNORE_INDEX}, not a "
                                                   f"class index (got {ignore!r})")
    return ClassInfo(names, _palette(path, data.get("palette"), len(names)), ignore)


def _stems(folder: Path, what: str) -> dict[str, Path]:
    """id -> file in `folder` (hidden files skipped); two files with one id is an error."""
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; {LAYOUT}")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.stem in out:
            raise DataError(f"{what} {out[p.stem]} and {p} have the same id {p.stem!r}; keep one")
        out[p.stem] = p
    if not out:
        raise DataError(f"{folder} holds no {what} files; {LAYOUT}")
    return out


def pair_files(root: str | Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(images, masks) by id; an image without a mask, or a mask without an image, raises DataError."""
    root = Path(root).expanduser().resolve()
    images, masks = _stems(root / IMAGES, "image"), _stems(root / MASKS, "mask")
    for i, p in masks.items():
        if p.suffix.lower() != MASK_SUFFIX:
            raise DataError(f"mask {p} is not a .png; masks must be class-index PNGs named <id>.png")
        if i not in images:
            raise DataError(f"mask {p} has no image: no {root / IMAGES}/{i}.* exists; add the image or remove "
                            "the mask")
    for i, p in images.items():
        if i not in masks:
            raise DataError(f"image {p} has no mask: {root / MASKS / (i + MASK_SUFFIX)} does not exist; add the "
                            "mask or remove the image")
    return images, masks


def _split_ids(root: Path, split: str, ids: list[str], fractions: tuple[float, ...], seed: int) -> list[str]:
    folder = root / SPLITS
    if folder.is_dir():
        path = folder / f"{split}.txt"
        if split == "trainval" and not path.is_file():
            return [*_split_ids(root, "train", ids, fractions, seed), *_split_ids(root, "val", ids, fractions, seed)]
        if not path.is_file():
            raise DataError(f"split file {path} does not exist; list one id per line (or remove {folder} to split "
                            "by split_fractions)")
        listed = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        unknown = [i for i in listed if i not in set(ids)]
        if not listed or unknown:
            what = "is empty" if not listed else f"names ids with no image and mask: {unknown[:5]}"
            raise DataError(f"split file {path} {what}; list ids of files in {root / IMAGES}")
        return listed
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_val, n_test = (round(f * len(order)) for f in fractions[1:])
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    parts["trainval"] = parts["train"] + parts["val"]
    if not parts[split]:
        raise DataError(f"{root}: split_fractions {tuple(fractions)} leave the {split!r} split of {len(order)} "
                        "images empty; raise its fraction, add images, or write splits/<split>.txt")
    return parts[split]


def folder_split(root: str | Path, split: str, fractions: tuple[float, ...] = (0.7, 0.15, 0.15),
                 seed: int = 0) -> SplitFiles:
    """The files of one split of a folder dataset (train, val, trainval or test), all checked to exist."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root} does not exist; {LAYOUT}")
    images, masks = pair_files(root)
    ids = _split_ids(root, split, list(images), fractions, seed)
    return SplitFiles(ids, [str(images[i]) for i in ids], [str(masks[i]) for i in ids])
