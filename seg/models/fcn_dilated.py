"""Model 5a (paper §3.3, Table 1): the baseline FCN deepened to six conv + six deconv layers, with dilation.

Table 1, layer by layer (kernel/stride/padding/dilation[/output_padding]):

    enc1   3 ->  32  3/1/1/1      dec1  512 -> 512  5/2/1/2/0
    enc2  32 ->  32  3/1/1/1      dec2  512 -> 256  5/2/1/2/0
    enc3  32 ->  64  3/1/1/1      dec3  256 -> 128  3/2/1/2/1
    enc4  64 -> 128  3/2/1/2      dec4  128 ->  64  3/1/1/1/0
    enc5 128 -> 256  5/2/1/2      dec5   64 ->  32  3/1/1/1/0
    enc6 256 -> 512  5/2/1/2      dec6   32 ->  32  3/1/1/1/0     head 32 -> 21, 1x1

The table's first layer reads "21/32"; that is a typo: the network sees RGB images, so enc1 takes 3 channels.
"Decoder 1" has no layer type in the table; like the other decoder rows it is a ConvTranspose2d.

Size arithmetic (see `dilated_fcn_sizes`): enc4-6 map H -> H/2 - 1 -> H/4 - 3 -> H/8 - 2 and dec1-3 invert
that exactly whenever H is divisible by 8, so the table's numbers give 224 -> 111 -> 53 -> 24 -> 53 -> 111 ->
224 with no correction. For other sizes the logits are bilinearly resized to the input size (a no-op at
multiples of 8). Inputs need H, W >= 40 (enc6 would be empty below that). The paper uses tanh (the 5a YAML
sets it); the builder takes cfg.activation. `width` multiplies the channel counts; `skips` does not apply to
this model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from seg.config import TrainConfig
from seg.models.spec import DEFAULT_NUM_CLASSES
from seg.models.blocks import ConvAct, DeconvAct, SegmentationHead, scaled, xavier_init

# (cout, kernel, stride, padding, dilation); input channels chain from the previous row.
ENCODER_SPEC = ((32, 3, 1, 1, 1), (32, 3, 1, 1, 1), (64, 3, 1, 1, 1),
                (128, 3, 2, 1, 2), (256, 5, 2, 1, 2), (512, 5, 2, 1, 2))
# (cout, kernel, stride, padding, dilation, output_padding)
DECODER_SPEC = ((512, 5, 2, 1, 2, 0), (256, 5, 2, 1, 2, 0), (128, 3, 2, 1, 2, 1),
                (64, 3, 1, 1, 1, 0), (32, 3, 1, 1, 1, 0), (32, 3, 1, 1, 1, 0))


def conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    """Conv2d output length (PyTorch's formula)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def deconv_out(n: int, k: int, s: int, p: int, d: int, op: int) -> int:
    """ConvTranspose2d output length (PyTorch's formula)."""
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def dilated_fcn_sizes(n: int) -> list[int]:
    """Spatial length after every layer of Table 1 for input length n: 6 encoder then 6 decoder sizes."""
    sizes = []
    for _, *geom in ENCODER_SPEC:
        n = conv_out(n, *geom)
        sizes.append(n)
    for _, *geom in DECODER_SPEC:
        n = deconv_out(n, *geom)
        sizes.append(n)
    return sizes


class DilatedFCN(nn.Module):
    """Model 5a. Input (B, 3, H, W) -> logits (B, num_classes, H, W)."""

    def __init__(self, num_classes: int = DEFAULT_NUM_CLASSES, activation: str = "tanh", width: float = 1.0,
                 in_channels: int = 3):
        super().__init__()
        layers, cin = [], in_channels
        for cout, k, s, p, d in ENCODER_SPEC:
            layers.append(ConvAct(cin, scaled(cout, width), k, s, p, d, activation))
            cin = scaled(cout, width)
        self.encoder = nn.Sequential(*layers)  # (B, 512w, H/8 - 2, W/8 - 2) for H, W divisible by 8
        layers = []
        for cout, k, s, p, d, op in DECODER_SPEC:
            layers.append(DeconvAct(cin, scaled(cout, width), k, s, p, d, op, activation))
            cin = scaled(cout, width)
        self.decoder = nn.Sequential(*layers)  # (B, 32w, H, W) for H, W divisible by 8
        self.head = SegmentationHead(cin, num_classes)
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        logits = self.head(self.decoder(self.encoder(x)))
        if logits.shape[-2:] != size:  # only when H or W is not a multiple of 8
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits  # (B, 21, H, W)


def build_fcn_dilated(cfg: TrainConfig, num_classes: int = DEFAULT_NUM_CLASSES) -> DilatedFCN:
    return DilatedFCN(num_classes=num_classes, activation=cfg.activation, width=cfg.width)
