"""The model registry: architecture name -> builder(TrainConfig) -> nn.Module.

Every model maps (B, 3, H, W) images to (B, 21, H, W) logits. Register a new architecture by adding its builder
here and its spec in `seg.models.spec`; the tests in tests/test_models.py then cover it automatically.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch.nn as nn

from seg.models.fcn import build_fcn
from seg.models.fcn_dilated import build_fcn_dilated
from seg.models.resnet_fcn import build_resnet34_fcn
from seg.models.spec import ARCHS
from seg.models.unet import build_unet

if TYPE_CHECKING:
    from seg.config import TrainConfig

MODELS: dict[str, Callable[["TrainConfig"], nn.Module]] = {
    "fcn": build_fcn,  # baseline, §3.1 (also 4a-4c)
    "fcn_dilated": build_fcn_dilated,  # model 5a, Table 1
    "resnet34_fcn": build_resnet34_fcn,  # model 5b, Table 2
    "unet": build_unet,  # model 5c, Table 3
}


def build_model(cfg: "TrainConfig") -> nn.Module:
    """The model named by cfg.arch; an unknown name raises KeyError listing the valid ones."""
    try:
        builder = MODELS[cfg.arch]
    except KeyError:
        raise KeyError(f"unknown arch {cfg.arch!r}; choose one of {sorted(MODELS)}") from None
    return builder(cfg)


assert set(MODELS) == set(ARCHS), "seg.models.spec.ARCHS and MODELS must name the same architectures"
