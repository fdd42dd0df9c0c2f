"""Mask thumbnails as data URIs: class-id masks in the experiment's palette (PNG), photos and overlays (JPEG).

The palette is (256, 3) uint8: the classes' own colours, void (255) in VOC's cream; VOC's by default.

Thumbnails are at most THUMB_PX on a side; smaller masks are stored as they are and scaled up by CSS
(`image-rendering: pixelated`), so a 32 px mask stays sharp and small.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from seg.data.classes import IGNORE_INDEX
from seg.data.voc import VOC_PALETTE

THUMB_PX = 96  # stored thumbnail edge, px
OVERLAY_ALPHA = 0.55  # weight of the class colour over the image
JPEG_QUALITY = 80


def data_uri(img: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {"optimize": True}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def thumbnail(img: Image.Image, resample: int) -> Image.Image:
    return img if max(img.size) <= THUMB_PX else img.resize((THUMB_PX, THUMB_PX), resample)


def mask_png(mask: np.ndarray, palette: np.ndarray = VOC_PALETTE) -> str:
    """(S,S) uint8 class ids -> base64 PNG in the palette (255, void, in cream)."""
    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(palette.astype(np.uint8).flatten().tolist())
    return data_uri(thumbnail(img, Image.NEAREST), "PNG")


def image_jpeg(image: np.ndarray) -> str:
    """(S,S,3) uint8 RGB -> base64 JPEG."""
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
    return data_uri(thumbnail(img, Image.BILINEAR), "JPEG")


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray = VOC_PALETTE) -> np.ndarray:
    """Blend the palette colour of every non-background, non-void pixel into the image."""
    colour = palette[mask].astype(np.float32)  # (S, S, 3)
    on = ((mask != 0) & (mask != IGNORE_INDEX))[..., None]  # (S, S, 1)
    out = np.where(on, (1 - OVERLAY_ALPHA) * image.astype(np.float32) + OVERLAY_ALPHA * colour, image)
    return out.round().clip(0, 255).astype(np.uint8)
