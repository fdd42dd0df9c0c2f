"""The model registry: architecture name -> builder(TrainConfig, num_classes) -> nn.Module.

Every model maps (B, 3, H, W) images to (B, num_classes, H, W) logits (21 for VOC; a folder dataset's own count).
Register a new architecture by adding its builder here and its spec in `seg.models.spec`; the tests in
tests/test_models.py then cover it automatically. `ensure_pretrained_weights(cfg)` makes the weights file a
pretrained config needs present (downloading when allowed) before anything trains: the search's preflight.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch.nn as nn

from seg.models.spec import DEFAULT_NUM_CLASSES
from seg.models.fcn import build_fcn
from seg.models.fcn_dilated import build_fcn_dilated
from seg.models.resnet_fcn import build_resnet34_fcn, ensure_trunk_weights
from seg.models.smp import build_smp, ensure_encoder_weights
from seg.models.spec import ARCHS, SMP_ARCHS
from seg.models.unet import build_unet

if TYPE_CHECKING:
    from seg.config import TrainConfig

MODELS: dict[str, Callable[["TrainConfig", int], nn.Module]] = {
    "fcn": build_fcn,  # baseline, §3.1 (also 4a-4c)
    "fcn_dilated": build_fcn_dilated,  # model 5a, Table 1
    "resnet34_fcn": build_resnet34_fcn,  # model 5b, Table 2
    "unet": build_unet,  # model 5c, Table 3
    **{arch: build_smp for arch in SMP_ARCHS},  # segmentation_models_pytorch Unet, FPN, DeepLabV3+
}
# archs whose `pretrained` means something: the weights file each needs (downloaded when missing and allowed)
PRETRAINED_WEIGHTS: dict[str, Callable[["TrainConfig"], Path | None]] = {
    "resnet34_fcn": lambda cfg: ensure_trunk_weights(cfg.pretrained_path),
    **{arch: ensure_encoder_weights for arch in SMP_ARCHS},
}


def build_model(cfg: "TrainConfig", num_classes: int = DEFAULT_NUM_CLASSES) -> nn.Module:
    """The model named by cfg.arch with a num_classes head; an unknown name raises KeyError listing the valid ones."""
    try:
        builder = MODELS[cfg.arch]
    except KeyError:
        raise KeyError(f"unknown arch {cfg.arch!r}; choose one of {sorted(MODELS)}") from None
    return builder(cfg, num_classes)


def ensure_pretrained_weights(cfg: "TrainConfig") -> Path | None:
    """The weights file cfg (pretrained: true) loads, present after this call; None where the arch has none to
    load (pretrained means nothing for it) or timm fetches its own. Raises PretrainedWeightsError."""
    fetch = PRETRAINED_WEIGHTS.get(cfg.arch)
    return fetch(cfg) if cfg.pretrained and fetch is not None else None


assert set(MODELS) == set(ARCHS), "seg.models.spec.ARCHS and MODELS must name the same architectures"
