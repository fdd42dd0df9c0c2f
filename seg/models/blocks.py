"""Building blocks shared by every segtune model: the activation registry, conv/deconv units and Xavier init.

Layer order. The paper (§1, §3.1 and the "Activation/batchNorm" column of Tables 1-3) applies batch
normalisation *after* the activation ("after each layer we apply batch normalization again to ensure there are
negative numbers in features"), so every unit here is conv -> activation -> BatchNorm. Because the activation
sits between conv and BN, the conv bias is not redundant and is kept (initialised to zero).
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

# name -> factory; a factory (not an instance) so that each layer owns its module.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module; unknown names raise KeyError listing the valid ones."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise KeyError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def scaled(channels: int, width: float) -> int:
    """Channel count `channels * width`, rounded, at least 1."""
    return max(1, int(round(channels * width)))


class ConvAct(nn.Sequential):
    """Conv2d -> activation -> BatchNorm2d (see the module docstring for why BN comes last)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, activation: str = "relu"):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation),
            make_activation(activation),
            nn.BatchNorm2d(cout),
        )


class DeconvAct(nn.Sequential):
    """ConvTranspose2d -> activation -> BatchNorm2d."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 2, padding: int = 1,
                 dilation: int = 1, output_padding: int = 1, activation: str = "relu"):
        super().__init__(
            nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation,
                               output_padding=output_padding),
            make_activation(activation),
            nn.BatchNorm2d(cout),
        )


def xavier_init(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases on every conv / deconv under `module`; BN gets weight 1, bias 0.

    Modules flagged with `zero_init = True` (skip laterals, see fcn.py) are zeroed instead.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if getattr(m, "zero_init", False):
                nn.init.zeros_(m.weight)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def lateral(cin: int, cout: int) -> nn.Conv2d:
    """A 1x1 skip projection, zero-initialised as in FCN (Long et al. 2015): a skip model starts out computing
    exactly what its skip-less twin computes, and the skip learns only what it adds."""
    conv = nn.Conv2d(cin, cout, kernel_size=1)
    conv.zero_init = True  # read by xavier_init
    return conv


class SegmentationHead(nn.Conv2d):
    """The 1x1 classifier: features -> per-class logits (no activation, no BN)."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__(cin, num_classes, kernel_size=1)
