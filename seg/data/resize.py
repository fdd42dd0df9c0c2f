"""The resize policy: how an image of any size becomes the square `image_size` tensor a model trains on.

* `squash`: both sides resized to image_size (aspect ratio not kept). VOC's default, as in the paper.
* `pad` (letterbox): the image is resized, aspect ratio kept, so its longer side is image_size; the shorter side is
  then padded (bottom / right) up to image_size. Padded image pixels get the ImageNet mean colour (normalised,
  they are ~0), padded mask pixels are void (255): never trained on, never scored. The whole image is seen and
  scored, nothing is cropped away. Folder datasets default to it.
image_size is already a multiple of the model's total stride (seg.config checks it), so either result fits.
Images are resampled bilinearly with PIL's antialiasing, masks with nearest neighbour (labels are never
blended). `seg.predict` uses the same functions, then maps the logits of the valid region back to each image's
own size (`valid_size`). Plain numpy + PIL.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from seg.data.classes import IGNORE_INDEX

RESIZE_POLICIES = ("squash", "pad")
PAD_RGB = (124, 116, 104)  # ImageNet mean (0.485, 0.456, 0.406) x 255


def valid_size(width: int, height: int, size: int, policy: str) -> tuple[int, int]:
    """(w, h) of the resized image inside the size x size result (the rest is padding)."""
    if policy == "squash":
        return size, size
    if policy == "pad":
        scale = size / max(width, height)
        return max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale)))
    raise ValueError(f"unknown resize policy {policy!r}; choose one of {RESIZE_POLICIES}")


def fit_image(image: Image.Image, size: int, policy: str) -> np.ndarray:
    """RGB image -> (size, size, 3) uint8 under the policy."""
    w, h = valid_size(*image.size, size, policy)
    resized = image.resize((w, h), Image.BILINEAR)
    if (w, h) == (size, size):
        return np.asarray(resized)
    canvas = Image.new("RGB", (size, size), PAD_RGB)
    canvas.paste(resized, (0, 0))
    return np.asarray(canvas)


def fit_mask(mask: Image.Image, size: int, policy: str) -> np.ndarray:
    """Class-index mask -> (size, size) uint8 under the policy; padding is void (255)."""
    w, h = valid_size(*mask.size, size, policy)
    resized = np.asarray(mask.resize((w, h), Image.NEAREST))
    if (w, h) == (size, size):
        return resized
    out = np.full((size, size), IGNORE_INDEX, np.uint8)
    out[:h, :w] = resized
    return out
