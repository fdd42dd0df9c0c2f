"""TrainConfig: everything one training run needs, typed, defaulted, with units. Unknown keys are rejected.

The config is deliberately flat: every field is a hyperparameter the search can set by name, and every field
becomes one leaderboard column. Defaults reproduce the paper's baseline (§3.1): `fcn`, ReLU, unweighted
cross-entropy, Adam at a constant 1e-3, batch 16, 20 epochs, 224x224 images, no augmentation.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seg.models.spec import ARCHS

ACTIVATIONS = ("relu", "tanh", "gelu", "leaky_relu", "silu")
WEIGHTINGS = ("none", "inverse_frequency", "background")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "poly")
DEFAULT_DATA_ROOT = "data"  # relative paths are resolved against the current directory by `resolved()`


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    # ---- data -------------------------------------------------------------------------------------------------
    dataset: Literal["voc", "synthetic"] = "voc"  # synthetic: generated once into data_root, read as VOC
    year: Literal["2007", "2012"] = "2007"
    data_root: str = DEFAULT_DATA_ROOT  # folder that holds VOCdevkit/
    download: bool = False  # use torchvision's downloader when the data is missing (needs network)
    image_size: int = Field(224, ge=16, le=1024)  # px, square; images antialiased, masks NEAREST
    train_split: Literal["train", "trainval"] = "train"
    val_split: Literal["val", "train", "trainval", "test"] = "val"
    test_split: Literal["test", "val"] | None = "test"  # None: skip test evaluation
    cache_dir: str | None = None  # decoded-split cache; None: <data_root>/.segtune-cache
    # synthetic data only: image counts per split and source image size (px)
    synthetic_counts: tuple[int, int, int] = (100, 50, 50)
    synthetic_size: int = Field(128, ge=32, le=512)

    # ---- model ------------------------------------------------------------------------------------------------
    arch: str = "fcn"  # one of seg.models.spec.ARCHS
    activation: Literal["relu", "tanh", "gelu", "leaky_relu", "silu"] = "relu"
    width: float = Field(1.0, gt=0, le=4)  # channel multiplier (1.0 = the paper's widths)
    padding: Literal["same", "valid"] = "same"  # unet only
    skips: bool = False  # FCN-8s-style skip connections for fcn / resnet34_fcn
    pretrained: bool = False  # resnet34_fcn: ImageNet weights from the torch cache or pretrained_path
    pretrained_path: str | None = None

    # ---- loss -------------------------------------------------------------------------------------------------
    class_weights: Literal["none", "inverse_frequency", "background"] = "none"
    bg_weight: float | None = Field(None, ge=0, le=10)  # None: 0.15 for inverse_frequency, 0.1 for background
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    dice_weight: float = Field(0.0, ge=0, le=10)  # adds dice_weight * soft Dice loss to the CE

    # ---- optimisation -----------------------------------------------------------------------------------------
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10)  # peak learning rate
    weight_decay: float = Field(0.0, ge=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    scheduler: Literal["none", "cosine", "poly"] = "none"  # stepped per iteration
    min_lr: float = Field(0.0, ge=0)  # floor of cosine / poly
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up from lr/100, in epochs (fractions allowed)
    epochs: int = Field(20, ge=1, le=10000)
    batch_size: int = Field(16, ge=2, le=1024)  # the last partial batch is dropped (BatchNorm on 1 image)

    # ---- augmentation (applied on the training device, image and mask together) ---------------------------------
    flip: bool = False  # random horizontal flip, p=0.5
    scale_min: float = Field(1.0, gt=0, le=4)  # random zoom range; 1.0/1.0 disables scale+crop
    scale_max: float = Field(1.0, gt=0, le=4)
    color_jitter: float = Field(0.0, ge=0, le=1)  # brightness/contrast/saturation strength

    # ---- run ----------------------------------------------------------------------------------------------------
    seed: int = 0  # fixes init, data order and augmentation
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 on CUDA, and on CPUs with native bf16
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on
    compile: Literal["off", "default", "reduce-overhead"] = "off"  # torch.compile; reduce-overhead = CUDA graphs
    fused_optimizer: Literal["auto", "on", "off"] = "auto"  # auto: on for CUDA
    num_masks: int = Field(4, ge=0, le=64)  # val images whose predicted masks are kept at the best epoch
    # images per batch of the paper-style `*_paper` scores (seg.metrics.BatchMeanScores): the paper's batch, 16
    paper_metric_batch: int = Field(16, ge=1, le=1024)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        if v not in ARCHS:
            hint = difflib.get_close_matches(v, ARCHS, n=1)
            raise ValueError(
                f"unknown arch {v!r}; choose one of {sorted(ARCHS)}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min ({self.scale_min}) must be <= scale_max ({self.scale_max})")
        spec = ARCHS[self.arch]
        if self.image_size < spec.min_size:
            raise ValueError(f"image_size {self.image_size} is below {spec.min_size}, the smallest {self.arch!r} "
                             f"accepts; use image_size >= {spec.min_size}")
        step = spec.stride
        if self.image_size % step:
            lo, hi = self.image_size // step * step, (self.image_size // step + 1) * step
            raise ValueError(f"image_size {self.image_size} is not a multiple of {step}, which {self.arch!r} needs "
                             f"(its total stride); use {lo or hi} or {hi}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be <= lr ({self.lr})")
        self._no_test_leak()
        return self

    def _no_test_leak(self) -> None:
        """Refuse choosing the best epoch (val_split) or training on the split that reports the test score."""
        test = self.test_split
        if self.val_split == "test":
            raise ValueError("val_split 'test' selects the best epoch on the test split, the data that reports "
                             "test_miou; use val_split: val")
        if test and self.val_split == test:
            raise ValueError(f"val_split and test_split are both {test!r}: the best epoch would be chosen on the data "
                             f"that reports test_miou; use test_split: test, or null to skip the test score")
        if test == "val" and "trainval" in (self.val_split, self.train_split):
            raise ValueError("test_split 'val' is inside trainval, which train_split/val_split uses: the test score "
                             "would be measured on seen data; use test_split: test or train_split: train")

    # ---- helpers ------------------------------------------------------------------------------------------------
    @property
    def effective_bg_weight(self) -> float:
        if self.bg_weight is not None:
            return self.bg_weight
        return 0.15 if self.class_weights == "inverse_frequency" else 0.1

    def resolved(self) -> "TrainConfig":
        """A copy whose paths are absolute (Ray Tune changes a trial's working directory)."""
        upd: dict[str, Any] = {"data_root": str(Path(self.data_root).expanduser().resolve())}
        if self.cache_dir is not None:
            upd["cache_dir"] = str(Path(self.cache_dir).expanduser().resolve())
        if self.pretrained_path is not None:
            upd["pretrained_path"] = str(Path(self.pretrained_path).expanduser().resolve())
        return self.model_copy(update=upd)


class ConfigError(ValueError):
    """A config problem explained for a person: where, what, and how to fix it."""


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    """One line per problem: `source: key.path: message (got VALUE)`, with a close-match hint for unknown keys."""
    lines = []
    fields = list(TrainConfig.model_fields)
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            hint = difflib.get_close_matches(key, fields, n=1)
            msg = f"unknown key {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        else:
            msg = e["msg"]
            if "input" in e and e["type"] != "missing":
                msg += f" (got {e['input']!r})"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def make_config(overrides: dict[str, Any] | None = None, source: str = "config", **kw: Any) -> TrainConfig:
    """Build a TrainConfig from a dict (and keyword overrides), raising ConfigError with readable messages."""
    data = {**(overrides or {}), **kw}
    try:
        return TrainConfig(**data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
