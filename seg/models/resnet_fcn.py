"""Model 5b (paper §3.3, Table 2): torchvision's ResNet-34 trunk as encoder + the baseline's deconv decoder.

Encoder  resnet34 stem + layer1..layer4 (avgpool and fc dropped): (B, 3, H, W) -> (B, 512, H/32, W/32).
Decoder  five ConvTranspose2d(k3, s2, p1, output_padding=1) 512 -> 512 -> 256 -> 128 -> 64 -> 32, each
         followed by the activation and BatchNorm (Table 2), back to (B, 32, H, W).
Head     1x1 conv 32 -> 21.
`width` scales the decoder only (the trunk is ResNet-34 as published).

skips=True adds FCN-8s-style 1x1 laterals (zero-initialised, as in FCN) from layer3 (256 ch, H/16), layer2
(128 ch, H/8) and layer1 (64 ch, H/4) into the decoder outputs of the same stride (decoder stages 1, 2, 3).

Weights. pretrained=True loads ImageNet weights (`ResNet34_Weights.IMAGENET1K_V1`): from `cfg.pretrained_path`
when set, else from torchvision's file in the torch hub cache (`<torch.hub.get_dir()>/checkpoints/
resnet34-b627a593.pth`), downloaded there through torchvision's weights API when it is missing and downloads are
allowed (seg.models.weights). Missing or unusable weights raise `PretrainedWeightsError`, which says where it
looked and how to provide the file. pretrained=False keeps
torchvision's own (Kaiming) trunk init; the decoder and head always get Xavier init. The model records what
happened in `pretrained_loaded`. Inputs are expected normalised with the ImageNet mean/std (seg.data.augment).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models import ResNet34_Weights, resnet34

from seg.config import TrainConfig
from seg.models.spec import DEFAULT_NUM_CLASSES
from seg.models.blocks import SegmentationHead, scaled, xavier_init
from seg.models.fcn import DECODER_CHANNELS, FCNDecoder
from seg.models.weights import PretrainedWeightsError, download_note, offline

__all__ = ["PretrainedWeightsError", "ResNet34FCN", "build_resnet34_fcn", "ensure_trunk_weights", "hub_weights_path"]

WEIGHTS = ResNet34_Weights.IMAGENET1K_V1
TRUNK_CHANNELS = (64, 128, 256, 512)  # layer1..layer4, strides 4, 8, 16, 32
# (trunk layer index, decoder stage): layer3 -> dec1 (H/16), layer2 -> dec2 (H/8), layer1 -> dec3 (H/4)
SKIP_STAGES = ((2, 0), (1, 1), (0, 2))


def hub_weights_path() -> Path:
    """Where torchvision keeps the downloaded ImageNet ResNet-34 file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(WEIGHTS.url)


def ensure_trunk_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights file to load: `path`, else the hub cache's file, downloaded through torchvision's weights API
    when it is missing and downloads are allowed. Raises PretrainedWeightsError when there is none."""
    source = Path(path).expanduser() if path is not None else hub_weights_path()
    how = (f"put torchvision's {os.path.basename(WEIGHTS.url)} (from {WEIGHTS.url}) at {hub_weights_path()}, "
           f"or set pretrained_path to a resnet34 state_dict file, or set pretrained=false")
    if source.is_file():
        return source
    if path is not None:
        raise PretrainedWeightsError(
            f"ResNet-34 ImageNet weights not found in pretrained_path: {source} does not exist; {how}")
    err = None
    if not offline():
        try:
            WEIGHTS.get_state_dict(progress=False)  # torchvision downloads into the hub cache (hash checked)
        except Exception as e:  # URLError, socket timeouts, hash mismatch...
            err = e
        if source.is_file():
            return source
    raise PretrainedWeightsError(f"ResNet-34 ImageNet weights not found in the torch hub cache: {source} does not "
                                 f"exist and {download_note(err)}; {how}")


def load_trunk_state_dict(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The resnet34 state_dict from `path`, or from the hub cache (downloaded when allowed) when `path` is None."""
    source = ensure_trunk_weights(path)
    how = "replace the file, set pretrained_path to a resnet34 state_dict file, or set pretrained=false"
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, pickle of something else, ...
        raise PretrainedWeightsError(f"could not read ResNet-34 weights from {source}: {err}; {how}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    return state


class ResNet34Encoder(nn.Module):
    """ResNet-34 without avgpool/fc; returns layer1..layer4 outputs (strides 4, 8, 16, 32)."""

    def __init__(self):
        super().__init__()
        net = resnet34(weights=None)  # torchvision's default init; pretrained weights are loaded separately
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])

    def load_torchvision_state_dict(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a full torchvision resnet34 state_dict (fc.* entries are ignored)."""
        names = {"conv1": "stem.0", "bn1": "stem.1", **{f"layer{i + 1}": f"layers.{i}" for i in range(4)}}
        mapped = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in names:
                mapped[f"{names[head]}.{rest}"] = value
        try:
            self.load_state_dict(mapped, strict=True)
        except RuntimeError as err:
            raise PretrainedWeightsError(f"{source} is not a torchvision resnet34 state_dict: {err}") from err

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)  # (B, 64, H/4, W/4)
        feats = []
        for layer in self.layers:
            x = layer(x)  # (B, 64 * 2**i, H / 2**(i+2), W / 2**(i+2))
            feats.append(x)
        return feats


class ResNet34FCN(nn.Module):
    """Model 5b. Input (B, 3, H, W), H and W divisible by 32 -> logits (B, num_classes, H, W)."""

    def __init__(self, num_classes: int = DEFAULT_NUM_CLASSES, activation: str = "relu", width: float = 1.0,
                 skips: bool = False, pretrained: bool = False, pretrained_path: str | None = None):
        super().__init__()
        dec = tuple(scaled(c, width) for c in DECODER_CHANNELS)
        skip_map = {j: (e, TRUNK_CHANNELS[e]) for e, j in SKIP_STAGES} if skips else None
        self.encoder = ResNet34Encoder()
        self.decoder = xavier_init(FCNDecoder(TRUNK_CHANNELS[-1], dec, activation, skip_map))
        self.head = xavier_init(SegmentationHead(dec[-1], num_classes))
        self.pretrained_loaded = False
        if pretrained:
            source = pretrained_path if pretrained_path is not None else hub_weights_path()
            self.encoder.load_torchvision_state_dict(load_trunk_state_dict(pretrained_path), str(source))
            self.pretrained_loaded = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))  # (B, 21, H, W)


def build_resnet34_fcn(cfg: TrainConfig, num_classes: int = DEFAULT_NUM_CLASSES) -> ResNet34FCN:
    return ResNet34FCN(num_classes=num_classes, activation=cfg.activation, width=cfg.width, skips=cfg.skips,
                       pretrained=cfg.pretrained, pretrained_path=cfg.pretrained_path)
