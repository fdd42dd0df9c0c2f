"""The paper's baseline FCN (§3.1): five stride-2 3x3 convs down, five stride-2 3x3 deconvs up, a 1x1 head.

Encoder  3 -> 32 -> 64 -> 128 -> 256 -> 512, each Conv2d(k3, s2, p1): the size halves per stage (H/32 last).
Decoder  512 -> 512 -> 256 -> 128 -> 64 -> 32, each ConvTranspose2d(k3, s2, p1, output_padding=1): it doubles.
Head     1x1 conv 32 -> 21.
`width` multiplies every channel count (1.0 = the paper). Works for any H, W divisible by 32.

skips=True adds FCN-8s-style skips (Long et al. 2015): 1x1 lateral convs from the encoder outputs at stride 16
(stage 4, 256 ch) and stride 8 (stage 3, 128 ch) are summed into the decoder outputs of the same stride
(decoder stage 1, 512 ch at H/16, and decoder stage 2, 256 ch at H/8). As in FCN, the laterals start at zero.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from seg.config import TrainConfig
from seg.models.spec import DEFAULT_NUM_CLASSES
from seg.models.blocks import ConvAct, DeconvAct, SegmentationHead, lateral, scaled, xavier_init

ENCODER_CHANNELS = (32, 64, 128, 256, 512)  # stage i outputs stride 2**(i+1)
DECODER_CHANNELS = (512, 256, 128, 64, 32)  # stage j outputs stride 2**(4-j)
SKIP_STAGES = ((3, 0), (2, 1))  # (encoder stage, decoder stage) pairs at stride 16 and 8: FCN-8s


class FCNEncoder(nn.Module):
    """Five stride-2 ConvAct stages; returns every stage's output (strides 2, 4, 8, 16, 32)."""

    def __init__(self, channels: tuple[int, ...], activation: str, in_channels: int = 3):
        super().__init__()
        cins = (in_channels, *channels[:-1])
        self.stages = nn.ModuleList(
            ConvAct(ci, co, kernel=3, stride=2, padding=1, activation=activation)
            for ci, co in zip(cins, channels)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)  # (B, C_i, H / 2**(i+1), W / 2**(i+1))
            feats.append(x)
        return feats


class FCNDecoder(nn.Module):
    """Five stride-2 DeconvAct stages from the deepest feature; optional lateral skips summed after a stage.

    `skips` maps decoder stage -> (encoder stage, encoder channels).
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], activation: str,
                 skips: dict[int, tuple[int, int]] | None = None):
        super().__init__()
        cins = (in_channels, *channels[:-1])
        self.stages = nn.ModuleList(
            DeconvAct(ci, co, kernel=3, stride=2, padding=1, output_padding=1, activation=activation)
            for ci, co in zip(cins, channels)
        )
        skips = skips or {}
        self.skip_src = {j: e for j, (e, _) in skips.items()}
        self.laterals = nn.ModuleDict({str(j): lateral(c, channels[j]) for j, (_, c) in skips.items()})

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]  # (B, C_enc, H/32, W/32)
        for j, stage in enumerate(self.stages):
            x = stage(x)  # (B, C_j, H / 2**(4-j), W / 2**(4-j))
            if j in self.skip_src:
                x = x + self.laterals[str(j)](feats[self.skip_src[j]])
        return x  # (B, C_last, H, W)


class FCN(nn.Module):
    """Baseline FCN: encoder -> decoder -> 1x1 head. Input (B, 3, H, W) -> logits (B, num_classes, H, W)."""

    def __init__(self, num_classes: int = DEFAULT_NUM_CLASSES, activation: str = "relu", width: float = 1.0,
                 skips: bool = False):
        super().__init__()
        enc = tuple(scaled(c, width) for c in ENCODER_CHANNELS)
        dec = tuple(scaled(c, width) for c in DECODER_CHANNELS)
        skip_map = {j: (e, enc[e]) for e, j in SKIP_STAGES} if skips else None
        self.encoder = FCNEncoder(enc, activation)
        self.decoder = FCNDecoder(enc[-1], dec, activation, skip_map)
        self.head = SegmentationHead(dec[-1], num_classes)
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))  # (B, 21, H, W)


def build_fcn(cfg: TrainConfig, num_classes: int = DEFAULT_NUM_CLASSES) -> FCN:
    return FCN(num_classes=num_classes, activation=cfg.activation, width=cfg.width, skips=cfg.skips)
