"""A small synthetic dataset in the VOCdevkit layout, so the whole pipeline runs offline in minutes.

Each of the 20 object classes is a fixed (shape, texture, hue) combination drawn over a noisy, smoothly
coloured background, with about 70% background pixels and a void (255) band along every outline, as in VOC.
Pairs of classes share hue and shape and differ only in texture, so a model must look at more than colour.
The set is written once, atomically, and is read back through the same VOC reader as the real data.
`make_synthetic_folder` writes the same kind of images with N classes (2..21) as a folder dataset
(seg.data.folder) instead, wider than high (`aspect`), for the own-data path and its tests.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from seg.data.classes import ClassInfo, default_palette
from seg.data.voc import NUM_CLASSES, VOC_PALETTE, DataError, voc_dir

FORMAT_VERSION = 1  # bump when the generator changes, so old sets are regenerated
MARKER = ".segtune-synthetic.json"  # written last: a set without it is unfinished (or not ours)
SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "cross")
TEXTURES = ("plain", "stripes", "checker", "dots")
HUES = tuple(colorsys.hsv_to_rgb(h / 10, 0.8, 0.9) for h in range(10))  # 10 saturated colours, RGB in [0, 1]
OBJECTS_PER_IMAGE = ((1, 2, 3), (0.3, 0.45, 0.25))  # values, probabilities
OBJECT_RADIUS = (0.22, 0.4)  # half-extent as a fraction of the shorter image side
SIZE_JITTER = 0.25  # image sides vary by +-25% around `size`, so resizing is exercised
NOISE_STD = 8.0  # per-pixel Gaussian noise, in 0..255 units
JPEG_QUALITY = 90


def class_style(c: int) -> tuple[str, str, tuple[float, float, float]]:
    """(shape, texture, RGB hue) of class c in 1..20; (k % 5, k % 4) is unique for k = c - 1 in 0..19."""
    k = c - 1
    return SHAPES[k % 5], TEXTURES[k % 4], HUES[k % 10]


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance (px, negative inside) to the outline, in the object's rotated frame."""
    if shape == "ellipse":
        return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * min(a, b)
    if shape == "rectangle":
        return np.maximum(np.abs(u) - a, np.abs(v) - b)
    if shape == "diamond":
        return (np.abs(u) / a + np.abs(v) / b - 1) * (a * b / np.hypot(a, b))
    if shape == "triangle":  # three half-planes around an inscribed circle of radius a/2
        v = v * (a / b)
        sd = [
            np.cos(p) * u + np.sin(p) * v
            for p in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)
        ]
        return np.maximum.reduce(sd) - a / 2
    if shape == "cross":
        t = 0.38 * a  # arm half-width
        return np.minimum(np.maximum(np.abs(u) - a, np.abs(v) - t), np.maximum(np.abs(u) - t, np.abs(v) - a))
    raise ValueError(shape)


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """0/1 pattern in the object frame; 1 darkens the object colour."""
    if texture == "plain":
        return np.zeros_like(u)
    if texture == "stripes":
        return (np.sin(2 * np.pi * u / period) > 0).astype(u.dtype)
    if texture == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(u.dtype)
    if texture == "dots":
        du, dv = np.mod(u, period) - period / 2, np.mod(v, period) - period / 2
        return (du**2 + dv**2 < (0.32 * period) ** 2).astype(u.dtype)
    raise ValueError(texture)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth low-saturation colour field plus mid-frequency clutter: (H, W, 3) float in 0..255."""
    hsv = np.stack([rng.random((4, 4)), rng.uniform(0, 0.35, (4, 4)), rng.uniform(0.3, 0.9, (4, 4))], -1)
    low = np.array([colorsys.hsv_to_rgb(*p) for p in hsv.reshape(-1, 3)], dtype=np.float32).reshape(4, 4, 3)
    field = np.asarray(
        Image.fromarray((low * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32
    )
    clutter = rng.normal(0, 18, (max(2, h // 8), max(2, w // 8))).astype(np.float32)
    clutter = np.asarray(Image.fromarray(clutter).resize((w, h), Image.BILINEAR))
    return field + clutter[..., None]


def _render(rng: np.random.Generator, classes: list[int], size: int,
            aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 (H, W, 3), mask uint8 (H, W)) with the given object classes; W is about aspect x H."""
    h, w = (int(round(size * rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER))) for _ in range(2))
    w = int(round(w * aspect))
    image = _background(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    void = max(1.0, size / 64)  # half-width of the void band (px), ~4 px total at 128 px
    radii = np.sort(rng.uniform(*OBJECT_RADIUS, len(classes)))[::-1] * min(h, w)  # big first, small on top
    for c, a in zip(classes, radii, strict=True):
        shape, texture, hue = class_style(c)
        b = a * rng.uniform(0.65, 1.0)
        cx, cy = rng.uniform(0.6 * a, w - 0.6 * a), rng.uniform(0.6 * a, h - 0.6 * a)
        th = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)  # (H, W) object frame
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        sd = _signed_distance(shape, u, v, a, b)
        colour = np.clip(np.array(hue) * rng.uniform(0.75, 1.15) + rng.normal(0, 0.04, 3), 0, 1) * 255
        pattern = _texture(texture, u, v, period=size / 16 * rng.uniform(0.8, 1.25))
        obj = colour * (1 - 0.5 * pattern[..., None])  # (H, W, 3)
        alpha = np.clip(0.5 - sd, 0, 1)[..., None]  # 1-px anti-aliased edge
        image = image * (1 - alpha) + obj * alpha
        mask[np.abs(sd) <= void] = 255  # VOC-style void band straddling the outline
        mask[sd < -void] = c
    image += rng.normal(0, NOISE_STD, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _class_stream(rng: np.random.Generator, num_classes: int = NUM_CLASSES):
    """Endless shuffled rounds of 1..num_classes-1, so every class appears once a split has that many objects."""
    while True:
        yield from (rng.permutation(num_classes - 1) + 1).tolist()


def _write_split(base: Path, rng: np.random.Generator, ids: list[str], size: int) -> None:
    classes = _class_stream(rng)
    palette = VOC_PALETTE.reshape(-1).tolist()
    for i in ids:
        n = int(rng.choice(OBJECTS_PER_IMAGE[0], p=OBJECTS_PER_IMAGE[1]))
        image, mask = _render(rng, [next(classes) for _ in range(n)], size)
        Image.fromarray(image).save(base / "JPEGImages" / f"{i}.jpg", quality=JPEG_QUALITY)
        png = Image.fromarray(mask)
        png.putpalette(palette)  # "L" -> "P": class indices with the VOC colours, like the devkit masks
        png.save(base / "SegmentationClass" / f"{i}.png")


def _params(counts, size, seed) -> dict:
    return {
        "format": FORMAT_VERSION,
        "counts": [int(c) for c in counts],
        "size": int(size),
        "seed": int(seed),
    }


def _is_current(base: Path, params: dict) -> bool:
    try:
        return json.loads((base / MARKER).read_text()) == params
    except (OSError, ValueError):
        return False


def _build(tmp: Path, params: dict) -> None:
    """Write the whole set into `tmp`; the marker goes last."""
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (tmp / d).mkdir(parents=True)
    splits, start = {}, 0
    for k, (name, n) in enumerate(zip(("train", "val", "test"), params["counts"], strict=True)):
        splits[name] = [f"{start + j:06d}" for j in range(n)]
        start += n
        _write_split(tmp, np.random.default_rng([params["seed"], k]), splits[name], params["size"])
    splits["trainval"] = splits["train"] + splits["val"]
    for name, ids in splits.items():
        (tmp / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(i + "\n" for i in ids))
    (tmp / MARKER).write_text(json.dumps(params))


def make_synthetic_voc(root: str | Path, counts=(100, 50, 50), size: int = 128, seed: int = 0) -> Path:
    """Write `root/VOCdevkit/VOC2007/` (train/val/test counts, ~`size` px) unless an identical set is there.

    Returns `root`, the folder to use as `data_root`. Built in a temporary folder and renamed into place, so a
    crash never leaves a half-written set that looks finished; concurrent callers both end up with one copy.
    """
    if any(c < 1 for c in counts) or len(counts) != 3:
        raise ValueError(f"counts must be three positive image counts (train, val, test), got {counts}")
    root = Path(root).expanduser().resolve()
    base, params = voc_dir(root, "2007"), _params(counts, size, seed)
    if _is_current(base, params):
        return root
    if base.exists() and not (base / MARKER).is_file():
        raise DataError(
            f"{base} exists but is not a segtune synthetic set (no {MARKER}); refusing to overwrite it. "
            "Point data_root at an empty folder for dataset: synthetic."
        )
    base.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(base.parent)
    tmp = base.parent / f".{base.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        _build(tmp, params)
        _publish(tmp, base, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _publish(tmp: Path, base: Path, params: dict) -> None:
    """Swap the finished folder into place (old set, if any, moved aside and deleted)."""
    old = None
    if base.exists():
        old = base.parent / f".{base.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(base, old)
        except FileNotFoundError:  # another process moved it first
            old = None
    try:
        os.rename(tmp, base)
    except OSError:  # another process published first (target not empty): keep theirs if it matches
        if not _is_current(base, params):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale(parent: Path, max_age_s: float = 3600) -> None:
    """Delete temporary folders left by crashed writers (old enough that nobody is still writing them)."""
    for p in parent.glob(".VOC*.tmp-*"):
        if time.time() - p.stat().st_mtime > max_age_s:
            shutil.rmtree(p, ignore_errors=True)


# ---- the same images as a folder dataset with N classes --------------------------------------------------------
FOLDER_ASPECT = 1.5  # width / height of the folder set's images: non-square on purpose


def synthetic_classes(num_classes: int) -> ClassInfo:
    """background, then '<shape> <texture>' for classes 1..N-1 (names with a space, to exercise column names)."""
    if not 2 <= num_classes <= NUM_CLASSES:
        raise ValueError(f"synthetic_classes must be 2..{NUM_CLASSES} (got {num_classes})")
    names = ("background", *(" ".join(class_style(c)[:2]) for c in range(1, num_classes)))
    return ClassInfo(names, default_palette(num_classes))


def make_synthetic_folder(root: str | Path, num_classes: int = 5, counts=(100, 50, 50), size: int = 128,
                          seed: int = 0, aspect: float = FOLDER_ASPECT) -> Path:
    """Write a folder dataset (images/*.jpg, masks/*.png, classes.yaml, splits/) into `root` unless an identical
    one is there; returns `root`. Refuses a folder holding other data (no marker)."""
    import yaml

    classes = synthetic_classes(num_classes)
    root = Path(root).expanduser().resolve()
    params = {**_params(counts, size, seed), "layout": "folder", "classes": num_classes, "aspect": aspect}
    if _is_current(root, params):
        return root
    if (root / "images").exists() and not (root / MARKER).is_file():
        raise DataError(f"{root} holds images/ but is not a segtune synthetic set (no {MARKER}); refusing to "
                        "overwrite it. Point data_root at an empty folder for dataset: synthetic.")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).unlink(missing_ok=True)
    for d in ("images", "masks", "splits"):
        shutil.rmtree(root / d, ignore_errors=True)
        (root / d).mkdir()
    palette = [v for rgb in classes.palette_256() for v in rgb]
    start = 0
    for k, (split, n) in enumerate(zip(("train", "val", "test"), counts, strict=True)):
        rng, ids = np.random.default_rng([seed, k]), [f"{start + j:06d}" for j in range(n)]
        start += n
        stream = _class_stream(rng, num_classes)
        for i in ids:
            objects = int(rng.choice(OBJECTS_PER_IMAGE[0], p=OBJECTS_PER_IMAGE[1]))
            image, mask = _render(rng, [next(stream) for _ in range(objects)], size, aspect)
            Image.fromarray(image).save(root / "images" / f"{i}.jpg", quality=JPEG_QUALITY)
            png = Image.fromarray(mask)
            png.putpalette(palette)
            png.save(root / "masks" / f"{i}.png")
        (root / "splits" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    (root / "classes.yaml").write_text(yaml.safe_dump(classes.to_yaml_dict(), sort_keys=False))
    (root / MARKER).write_text(json.dumps(params))
    return root
