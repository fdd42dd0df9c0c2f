"""What the config needs to know about each architecture, without importing torch: a torch-free spec.

`seg.config` validates `arch`, `encoder` and `image_size` against these tables, so validating a search space never imports
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
    # segmentation_models_pytorch decoders over an ImageNet encoder (cfg.encoder); seg.models.smp
    "smp_unet": ArchSpec(32, "segmentation_models_pytorch Unet on cfg.encoder", min_size=32),
    "smp_fpn": ArchSpec(32, "segmentation_models_pytorch FPN on cfg.encoder", min_size=32),
    "smp_deeplabv3plus": ArchSpec(32, "segmentation_models_pytorch DeepLabV3+ on cfg.encoder", min_size=32),
}
SMP_ARCHS = tuple(a for a in ARCHS if a.startswith("smp_"))
# A model's head size when the caller gives none: 21, the paper's PASCAL VOC classes (20 + background), as
# torchvision's segmentation models default. The data's own count (seg.data.classes) is passed in by the trainer.
DEFAULT_NUM_CLASSES = 21

# Encoders the config accepts by name (tests/test_models.py checks segmentation_models_pytorch knows them all);
# any timm model also works as `tu-<timm name>` (checked when the model is built).
SMP_ENCODERS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2",
    "efficientnet-b0", "efficientnet-b1", "efficientnet-b2", "efficientnet-b3", "efficientnet-b4",
    "mit_b0", "mit_b1",
)  # fmt: skip
