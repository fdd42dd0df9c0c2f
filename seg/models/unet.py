"""Model 5c (paper §3.3, Table 3): U-Net (Ronneberger et al. 2015) with widths 64-128-256-512-1024.

Encoder  five levels of two 3x3 ConvAct layers (64, 128, 256, 512, 1024 ch), a 2x2 max-pool between levels.
Decoder  four levels: a 2x2 stride-2 up-conv that halves the channels, concatenation with the encoder feature
         of the same level, two 3x3 ConvAct layers.
Head     1x1 conv 64 -> 21.
`width` scales every width (1.0 = the paper's 64 first; 0.25 for quick CPU runs).

Table 3 contradicts itself; how each point is resolved:
* Input channels: "21/64" on the first layer is a typo; the network sees RGB, so 3 -> 64.
* Decoder widths: the table's up-convs keep their width (1024 -> 1024, ...) and the next conv reads
  1024 -> 512, which ignores the concatenated skip (1024 + 512 would be 1536). Following Ronneberger, each
  up-conv halves the channels (1024 -> 512) and the skip adds 512 back; then the table's own conv widths
  (1024 -> 512 -> 512, 512 -> 256 -> 256, 256 -> 128 -> 128, 128 -> 64 -> 64) are exactly right. Only the
  up-conv output widths differ from the table.
* Padding: the table mixes unpadded encoder convs (p=0) with p=2 decoder convs and one output_padding=1
  up-conv; taken literally, a 224 input gives 160x160 logits (and the concatenations would not fit). Two
  consistent modes instead:
  - padding="same" (default): every 3x3 conv has p=1, skips need no crop, logits are H x W for H, W divisible
    by 16 (other sizes work too: the upsampled map is zero-padded to the skip's size).
  - padding="valid": unpadded 3x3 convs and centre-cropped skips, as in Ronneberger. Each valid conv eats a
    pixel per side, so a bare 224 input shrinks to 36x36 logits covering only the image centre: resizing
    those to 224 would misalign every label. So, as in Ronneberger's overlap-tile strategy, the input is
    first mirror-padded by the margin the network eats (94 px per side for sizes divisible by 16, see
    `valid_unet_padding`) and the logits are centre-cropped to H x W, pixel-aligned with the labels. A
    bilinear resize to the input size remains only as a fallback should the crop not fit. Cost: about 1.7x
    the FLOPs of "same" at 224 px.
* Activation/BN: Table 3 lists "ReLU/batchNorm" on every row; it follows every conv and up-conv (max-pools
  have no parameters and get nothing). Layer order as in blocks.py: conv -> activation -> BN.
`cfg.skips` does not apply (U-Net always has its skips).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from seg.config import TrainConfig
from seg.models.spec import DEFAULT_NUM_CLASSES
from seg.models.blocks import ConvAct, DeconvAct, SegmentationHead, scaled, xavier_init

WIDTHS = (64, 128, 256, 512, 1024)  # per level; len - 1 = number of 2x2 max-pools
DEPTH = len(WIDTHS) - 1
VALID_SHRINK = 4  # pixels a pair of unpadded 3x3 convs removes from a side length


def valid_unet_out(n: int, depth: int = DEPTH) -> int | None:
    """Output side length of the valid-padded U-Net for input length n; None if some stage would be empty or a
    max-pool would see an odd length (which breaks the pixel alignment of the skip crops)."""
    skips = []
    for _ in range(depth):
        n -= VALID_SHRINK
        if n <= 0 or n % 2:
            return None
        skips.append(n)
        n //= 2
    n -= VALID_SHRINK  # bottleneck
    for skip in reversed(skips):
        n = 2 * n - VALID_SHRINK  # up-conv, then the two convs after the concatenation
        if n <= 0 or n + VALID_SHRINK > skip:
            return None
    return n


@lru_cache(maxsize=None)  # called on every forward; the answer depends on the input size only
def valid_unet_padding(n: int, depth: int = DEPTH) -> int:
    """Smallest per-side mirror padding m such that the valid U-Net maps n + 2m to >= n pixels, centred.

    For n divisible by 16 this is m = 94: (n + 188) -> (n + 4) logits, 2 cropped per side.
    """
    m = 0
    while True:
        out = valid_unet_out(n + 2 * m, depth)
        if out is not None and out >= n and (out - n) % 2 == 0:
            return m
        m += 1


def mirror_pad(x: torch.Tensor, m: int) -> torch.Tensor:
    """Reflect-pad H and W by m per side; in steps, because one reflect pad must be smaller than the side."""
    while m > 0:
        step = min(m, x.shape[-1] - 1, x.shape[-2] - 1)
        x = F.pad(x, (step, step, step, step), mode="reflect")
        m -= step
    return x


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, padding: int, activation: str):
        super().__init__(ConvAct(cin, cout, 3, 1, padding, 1, activation),
                         ConvAct(cout, cout, 3, 1, padding, 1, activation))


class UNetEncoder(nn.Module):
    """Returns the output of every level: widths[i] channels at stride 2**i."""

    def __init__(self, widths: tuple[int, ...], padding: int, activation: str, in_channels: int = 3):
        super().__init__()
        cins = (in_channels, *widths[:-1])
        self.levels = nn.ModuleList(DoubleConv(ci, co, padding, activation) for ci, co in zip(cins, widths))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.levels[0](x)]  # (B, 64w, H, W)
        for level in self.levels[1:]:
            feats.append(level(self.pool(feats[-1])))  # (B, 64w * 2**i, H / 2**i, W / 2**i)
        return feats


class UNetDecoder(nn.Module):
    """Up-conv (halves channels) -> concat with the level's skip -> DoubleConv, from the bottleneck up."""

    def __init__(self, widths: tuple[int, ...], padding: int, activation: str):
        super().__init__()
        lower = list(reversed(widths[:-1]))  # 512, 256, 128, 64 (x width)
        upper = list(reversed(widths[1:]))  # 1024, 512, 256, 128
        self.ups = nn.ModuleList(DeconvAct(ci, co, 2, 2, 0, 1, 0, activation) for ci, co in zip(upper, lower))
        self.convs = nn.ModuleList(DoubleConv(2 * c, c, padding, activation) for c in lower)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]  # (B, 1024w, H/16, W/16)
        for up, conv, skip in zip(self.ups, self.convs, reversed(feats[:-1])):
            x = up(x)  # (B, C, 2h, 2w): doubles the size, halves the channels
            x, skip = _match(x, skip)
            x = conv(torch.cat([skip, x], dim=1))  # (B, 2C, ...) -> (B, C, ...)
        return x  # (B, 64w, H, W) same; smaller for valid


def _match(up: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make `up` and `skip` the same size: crop the skip (valid) or zero-pad `up` (odd sizes under same)."""
    h, w = up.shape[-2:]
    if skip.shape[-2] >= h and skip.shape[-1] >= w:
        skip = center_crop(skip, h, w)
    dh, dw = skip.shape[-2] - up.shape[-2], skip.shape[-1] - up.shape[-1]
    if dh or dw:
        up = F.pad(up, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    return up, skip


class UNet(nn.Module):
    """Model 5c. Input (B, 3, H, W) -> logits (B, num_classes, H, W) for either padding mode."""

    def __init__(self, num_classes: int = DEFAULT_NUM_CLASSES, activation: str = "relu", width: float = 1.0,
                 padding: str = "same"):
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"unet padding must be 'same' or 'valid', got {padding!r}")
        self.padding = padding
        widths = tuple(scaled(c, width) for c in WIDTHS)
        pad = 1 if padding == "same" else 0
        self.encoder = UNetEncoder(widths, pad, activation)
        self.decoder = UNetDecoder(widths, pad, activation)
        self.head = SegmentationHead(widths[0], num_classes)
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.padding == "valid":  # overlap-tile: give the valid convs the border they will eat
            x = mirror_pad(x, max(valid_unet_padding(h), valid_unet_padding(w)))
        logits = self.head(self.decoder(self.encoder(x)))  # (B, 21, h', w')
        if self.padding == "valid":
            logits = center_crop(logits, h, w)
        if logits.shape[-2:] != (h, w):  # fallback only; never taken for sizes divisible by 16
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits  # (B, 21, H, W)


def build_unet(cfg: TrainConfig, num_classes: int = DEFAULT_NUM_CLASSES) -> UNet:
    return UNet(num_classes=num_classes, activation=cfg.activation, width=cfg.width, padding=cfg.padding)
