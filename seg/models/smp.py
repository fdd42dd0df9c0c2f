"""segmentation_models_pytorch decoders (Unet, FPN, DeepLabV3+) over an ImageNet encoder, as registry builders.

`cfg.encoder` names the encoder (seg.models.spec.SMP_ENCODERS, or `tu-<timm model>`); `cfg.width` scales the
decoder's channels (1.0 = smp's defaults), the encoder is as published; `cfg.activation` does not apply (the
encoder keeps its own). pretrained=True loads the encoder's ImageNet weights: from `cfg.pretrained_path` (a
safetensors or torch state_dict of the encoder) when set, else from the Hugging Face cache where smp keeps them,
downloaded there when missing and downloads are allowed (seg.models.weights); otherwise PretrainedWeightsError,
in the same words as the ResNet-34 trunk's. Models map (B, 3, H, W), H and W multiples of 32, to
(B, num_classes, H, W) logits; `pretrained_loaded` records whether weights were loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from seg.config import ConfigError, TrainConfig
from seg.models.spec import DEFAULT_NUM_CLASSES
from seg.models.blocks import scaled
from seg.models.weights import PretrainedWeightsError, download_note, offline

WEIGHTS_FILE = "model.safetensors"  # what smp's hub repositories hold for each encoder
UNET_DECODER = (256, 128, 64, 32, 16)
FPN_PYRAMID, FPN_SEGMENTATION = 256, 128
FPN_MIN_SEGMENTATION = 64  # FPN's GroupNorm has 32 groups: at least 2 channels each, or a 1x1 map cannot be normed
DEEPLAB_DECODER = 256


def _smp():
    import segmentation_models_pytorch as smp

    return smp


def _settings(encoder: str) -> dict[str, str] | None:
    """smp's {repo_id, revision} of the encoder's ImageNet weights, or None (tu- encoders: timm's own)."""
    from segmentation_models_pytorch.encoders import encoders

    if encoder.startswith("tu-"):
        return None
    if encoder not in encoders:
        raise ConfigError(f"encoder: unknown encoder {encoder!r} for segmentation_models_pytorch; choose one of "
                          f"{sorted(encoders)} or tu-<timm model name>")
    settings = encoders[encoder]["pretrained_settings"]
    if "imagenet" not in settings:
        raise PretrainedWeightsError(f"encoder {encoder!r} has no ImageNet weights in segmentation_models_pytorch "
                                     f"(it has {sorted(settings)}); set pretrained: false or choose another encoder")
    return settings["imagenet"]


def cached_weights_path(encoder: str) -> Path:
    """Where the Hugging Face cache keeps the encoder's weights (the file may not exist)."""
    from huggingface_hub import constants

    s = _settings(encoder)
    repo = "models--" + s["repo_id"].replace("/", "--")
    return Path(constants.HF_HUB_CACHE) / repo / "snapshots" / s["revision"] / WEIGHTS_FILE


def ensure_encoder_weights(cfg: TrainConfig) -> Path | None:
    """The encoder weights file to load (downloaded when missing and allowed); None for tu- encoders, whose
    weights timm fetches itself. Raises PretrainedWeightsError when there is none."""
    how = (f"put the file there (it is {WEIGHTS_FILE} of the Hugging Face repository "
           f"{{repo}}), or set pretrained_path to a state_dict of the encoder, or set pretrained=false")
    if cfg.pretrained_path is not None:
        path = Path(cfg.pretrained_path).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"{cfg.encoder} ImageNet weights not found in pretrained_path: {path} does "
                                         "not exist; set pretrained_path to a state_dict of the encoder, or set "
                                         "pretrained=false")
        return path
    s = _settings(cfg.encoder)
    if s is None:
        return None
    path = cached_weights_path(cfg.encoder)
    if path.is_file():
        return path
    err = None
    if not offline():
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(s["repo_id"], filename=WEIGHTS_FILE, revision=s["revision"]))
        except Exception as e:  # no network, proxy errors, ...
            err = e
    raise PretrainedWeightsError(f"{cfg.encoder} ImageNet weights not found in the Hugging Face cache: {path} does "
                                 f"not exist and {download_note(err)}; {how.format(repo=s['repo_id'])}")


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    except Exception as err:
        raise PretrainedWeightsError(f"could not read encoder weights from {path}: {err}; replace the file, or "
                                     "set pretrained=false") from err


def _decoder_kwargs(arch: str, width: float) -> dict[str, Any]:
    if arch == "smp_unet":
        return {"decoder_channels": tuple(scaled(c, width) for c in UNET_DECODER)}
    if arch == "smp_fpn":
        return {"decoder_pyramid_channels": scaled(FPN_PYRAMID, width),
                "decoder_segmentation_channels": max(FPN_MIN_SEGMENTATION, scaled(FPN_SEGMENTATION, width))}
    return {"decoder_channels": scaled(DEEPLAB_DECODER, width)}


def build_smp(cfg: TrainConfig, num_classes: int = DEFAULT_NUM_CLASSES) -> nn.Module:
    """The smp model cfg.arch names, with a num_classes head; encoder weights loaded when cfg.pretrained."""
    smp = _smp()
    cls = {"smp_unet": smp.Unet, "smp_fpn": smp.FPN, "smp_deeplabv3plus": smp.DeepLabV3Plus}[cfg.arch]
    tu_pretrained = cfg.pretrained and cfg.encoder.startswith("tu-") and cfg.pretrained_path is None
    path = ensure_encoder_weights(cfg) if cfg.pretrained and not tu_pretrained else None
    try:
        model = cls(encoder_name=cfg.encoder, encoder_weights=True if tu_pretrained else None, classes=num_classes,
                    **_decoder_kwargs(cfg.arch, cfg.width))
    except (KeyError, RuntimeError, ValueError) as e:
        if tu_pretrained and not isinstance(e, KeyError):
            raise PretrainedWeightsError(f"{cfg.encoder}: timm could not load its ImageNet weights ({e}); set "
                                         "pretrained=false") from e
        raise ConfigError(f"encoder: cannot build {cfg.arch} on encoder {cfg.encoder!r}: {e}") from None
    if path is not None:
        try:
            model.encoder.load_state_dict(_load_state(path))
        except RuntimeError as err:
            raise PretrainedWeightsError(f"{path} is not a state_dict of encoder {cfg.encoder}: {err}") from err
    model.pretrained_loaded = bool(cfg.pretrained)
    return model
