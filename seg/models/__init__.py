"""segtune's models: a torch-free spec of each architecture (`ARCHS`) and the builders (`MODELS`, `build_model`).

`from seg.models import ARCHS` stays torch-free (the config validates against it); the builders and torch are
imported on first use of `MODELS`, `build_model`, `ACTIVATIONS` or `PretrainedWeightsError` (PEP 562).
"""
from __future__ import annotations

from typing import Any

from seg.models.spec import ARCHS, ArchSpec

__all__ = ["ACTIVATIONS", "ARCHS", "ArchSpec", "MODELS", "PretrainedWeightsError", "build_model"]


def __getattr__(name: str) -> Any:
    if name in ("MODELS", "build_model"):
        from seg.models import registry as home
    elif name == "ACTIVATIONS":
        from seg.models import blocks as home
    elif name == "PretrainedWeightsError":
        from seg.models import weights as home
    else:
        raise AttributeError(f"module 'seg.models' has no attribute {name!r}")
    return getattr(home, name)
