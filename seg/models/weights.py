"""Pretrained (ImageNet) weights: the one error type, and the rule for when segtune may download them.

A weights file is used from the cache (torch hub for torchvision's ResNet-34, the Hugging Face cache for
segmentation_models_pytorch encoders) or from `pretrained_path`. When it is missing, segtune downloads it through
the library's own API (torchvision's weights API, huggingface_hub), unless `SEGTUNE_OFFLINE` or `HF_HUB_OFFLINE`
is set (the tests set it: they never need the network). A failed download, or an offline machine without the
file, raises `PretrainedWeightsError` saying where the file was looked for and how to provide it.
"""
from __future__ import annotations

import os

OFFLINE_ENV = ("SEGTUNE_OFFLINE", "HF_HUB_OFFLINE")


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were requested but could not be loaded (not cached, no network, unreadable file)."""


def offline() -> bool:
    """True when downloads are switched off (SEGTUNE_OFFLINE / HF_HUB_OFFLINE set to anything but 0/false)."""
    return any(os.environ.get(k, "").strip().lower() not in ("", "0", "false", "no") for k in OFFLINE_ENV)


def download_note(err: BaseException | None) -> str:
    """What happened to the download, for the error message."""
    if err is None:
        return f"no download tried ({'/'.join(OFFLINE_ENV)} is set)"
    return f"downloading it failed ({type(err).__name__}: {str(err)[:200]}); the network may be unreachable"
