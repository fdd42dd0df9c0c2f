"""What the config needs to know about each architecture, without importing torch: a torch-free spec.

`seg.config` validates `arch` and `image_size` against this table, so validating a search space never imports
torch or builds a model. The builders live beside it in `seg.models.registry`; a test checks that both tables
name the same architectures.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchSpec:
    stride: int  # total stride: image sizes must be a multiple of it, or the decoder no longer lines up
    summary: str  # one line for error messages and docs
    min_size: int = 16  # px: the smallest image the model's layers accept (tests/test_models.py checks it)


ARCHS: dict[str, ArchSpec] = {
    "fcn": ArchSpec(32, "baseline 5+5-layer FCN, paper §3.1 (also 4a-4c); five stride-2 convs"),
    # measured: smaller inputs leave its dilated convolutions a feature map smaller than their kernel
    "fcn_dilated": ArchSpec(8, "dilated FCN, paper model 5a (Table 1); three stride-2 convs", min_size=40),
    "resnet34_fcn": ArchSpec(32, "ResNet-34 trunk + deconv decoder, paper model 5b (Table 2)"),
    "unet": ArchSpec(16, "U-Net, paper model 5c (Table 3); four 2x2 pools"),
}
