"""Batched augmentation on the training device: the split is already a uint8 tensor there (see cache.py).

One call transforms a whole batch with tensor ops (no per-sample Python work): horizontal flip, random
scale + crop (one affine grid per sample, shared by image and mask), and colour jitter on the image only.
Geometry follows `torchvision.transforms.v2` for joint image/mask inputs: images are resampled bilinearly and
filled with 0, masks are resampled with nearest neighbour and filled with 255 (void, ignored by the loss).
All randomness comes from the caller's `torch.Generator`, so a seed fixes every batch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from seg.config import TrainConfig
from seg.data.voc import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLIP_P = 0.5
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def batch_indices(
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[torch.Tensor]:
    """Index tensors (on the generator's device) covering range(n); a seeded generator fixes the order."""
    device = generator.device if generator is not None else "cpu"
    order = (
        torch.randperm(n, generator=generator, device=device) if shuffle else torch.arange(n, device=device)
    )
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


@functools.cache
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std, luma weights), each (1, 3, 1, 1), made once per device: no host copy per batch."""
    return tuple(
        torch.tensor(c, device=device).view(1, 3, 1, 1) for c in (IMAGENET_MEAN, IMAGENET_STD, GRAY_WEIGHTS)
    )


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> ImageNet-normalised."""
    mean, std, _ = _constants(x.device)
    return (x - mean) / std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 (B, 3, H, W) with ImageNet mean/std (what pretrained encoders expect)."""
    return _standardize(images.float() / 255)


def _uniform(
    generator: torch.Generator, n: int, low: float, high: float, device: torch.device
) -> torch.Tensor:
    """n draws in [low, high) from the generator (on its own device), moved to where the batch lives."""
    u = torch.rand(n, generator=generator, device=generator.device)
    return (low + (high - low) * u).to(device)


def _color_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation factors uniform in [1 - s, 1 + s] per sample; x float (B, 3, H, W)."""
    b = x.shape[0]
    bright, contrast, sat = (_uniform(generator, b, 1 - strength, 1 + strength, x.device).view(b, 1, 1, 1)
                             for _ in range(3))  # fmt: skip
    w = _constants(x.device)[2]
    x = (x * bright).clamp(0, 1)
    mean = (x * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)  # (B, 1, 1, 1) mean luminance
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    gray = (x * w).sum(1, keepdim=True)  # (B, 1, H, W)
    return ((x - gray) * sat + gray).clamp(0, 1)


def _affine_grid(cfg: TrainConfig, flip: torch.Tensor, b: int, size, generator, device) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) for zoom z, a random shift and an optional mirror, per sample.

    Output coordinate u (normalised to [-1, 1]) reads the source at u / z + t: z > 1 crops a window of 1/z of
    the side, z < 1 shrinks the image and pads. t is uniform in +-|1 - 1/z|, so the window stays inside the
    source (z > 1) or the source stays inside the output (z < 1), like RandomResizedCrop / RandomZoomOut.
    """
    zoom = _uniform(generator, b, cfg.scale_min, cfg.scale_max, device)
    reach = (1 - 1 / zoom).abs()
    tx, ty = (reach * _uniform(generator, b, -1, 1, device) for _ in range(2))
    sx = torch.where(flip, -1.0, 1.0) / zoom  # mirroring = negating the x scale
    zero = torch.zeros_like(zoom)
    theta = torch.stack(
        [torch.stack([sx, zero, tx], 1), torch.stack([zero, 1 / zoom, ty], 1)], 1
    )  # (B, 2, 3)
    return F.affine_grid(theta, [b, 1, *size], align_corners=False)


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor, cfg: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (B, 3, H, W) and masks (B, H, W) -> normalised float32 images and long masks, per cfg.

    With flip, scale and jitter all off this is exactly `normalize(images), masks.long()`.
    """
    b, device = images.shape[0], images.device
    scale = cfg.scale_min != 1.0 or cfg.scale_max != 1.0
    if not (cfg.flip or scale or cfg.color_jitter > 0):
        return normalize(images), masks.long()
    x = images.float() / 255  # (B, 3, H, W) in [0, 1]
    flip = (
        _uniform(generator, b, 0, 1, device) < FLIP_P
        if cfg.flip
        else torch.zeros(b, dtype=torch.bool, device=device)
    )
    if cfg.color_jitter > 0:
        x = _color_jitter(x, cfg.color_jitter, generator)
    if scale:
        grid = _affine_grid(cfg, flip, b, x.shape[-2:], generator, device)  # (B, H, W, 2)
        # Shift labels by one so the zero padding marks "outside the source"; exact in float for 0..256.
        m = F.grid_sample(
            masks[:, None].float() + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        outside = m == 0  # (B, 1, H, W)
        y = torch.where(outside[:, 0], IGNORE_INDEX, m[:, 0].long() - 1)  # (B, H, W)
        # "border" keeps edge pixels from blending with the padding; outside the source, fill 0 as in v2.
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = x.masked_fill(outside, 0.0)
    else:  # flip only: an exact mirror, no resampling
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        y = torch.where(flip.view(b, 1, 1), masks.flip(-1), masks).long()
    return _standardize(x), y
