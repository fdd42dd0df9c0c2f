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

from seg.models.spec import ARCHS, SMP_ENCODERS

ACTIVATIONS = ("relu", "tanh", "gelu", "leaky_relu", "silu")
WEIGHTINGS = ("none", "inverse_frequency", "background")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "poly")
DEFAULT_DATA_ROOT = "data"  # relative paths are resolved against the current directory by `resolved()`


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    # ---- data -------------------------------------------------------------------------------------------------
    # voc: VOCdevkit/VOC<year> under data_root; folder: your own images/ + masks/ + classes.yaml in data_root
    # (seg.data.folder); synthetic: generated once into data_root (seg.data.synthetic). See seg.data.registry.
    dataset: Literal["voc", "folder", "synthetic"] = "voc"
    year: Literal["2007", "2012"] = "2007"
    data_root: str = DEFAULT_DATA_ROOT  # folder that holds VOCdevkit/ (voc) or images/ + masks/ (folder)
    download: bool = False  # use torchvision's downloader when the data is missing (needs network)
    image_size: int = Field(224, ge=16, le=1024)  # px, square; images antialiased, masks NEAREST
    # how images become image_size x image_size (seg.data.resize): squash both sides, or pad = keep the aspect
    # ratio, long side to image_size, pad the rest (void in the mask). auto: squash for VOC, pad for folders.
    resize: Literal["auto", "squash", "pad"] = "auto"
    # folder datasets without splits/: (train, val, test) fractions of the ids, shuffled with split_seed
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    train_split: Literal["train", "trainval"] = "train"
    val_split: Literal["val", "train", "trainval", "test"] = "val"
    test_split: Literal["test", "val"] | None = "test"  # None: skip test evaluation
    cache_dir: str | None = None  # decoded-split cache; None: <data_root>/.segtune-cache
    # synthetic data only: image counts per split and source image size (px)
    synthetic_counts: tuple[int, int, int] = (100, 50, 50)
    synthetic_size: int = Field(128, ge=32, le=512)
    # None: VOC's layout and 21 classes; N: a folder dataset with N classes (2..21) and non-square images
    synthetic_classes: int | None = Field(None, ge=2, le=21)

    # ---- model ------------------------------------------------------------------------------------------------
    arch: str = "fcn"  # one of seg.models.spec.ARCHS
    encoder: str = "resnet18"  # smp_* archs only: one of seg.models.spec.SMP_ENCODERS, or tu-<timm model name>
    activation: Literal["relu", "tanh", "gelu", "leaky_relu", "silu"] = "relu"
    width: float = Field(1.0, gt=0, le=4)  # channel multiplier (1.0 = the paper's widths)
    padding: Literal["same", "valid"] = "same"  # unet only
    skips: bool = False  # FCN-8s-style skip connections for fcn / resnet34_fcn
    # ImageNet weights: resnet34_fcn's trunk, an smp_* arch's encoder (from the cache, pretrained_path, or a
    # download when the network is there; offline and missing: the trial fails saying how to provide them)
    pretrained: bool = False
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
    fused_optimizer: Literal["auto", "on", "off"] = "auto"  # auto: on for adam/adamw (CUDA and CPU)
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

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        if v not in SMP_ENCODERS and not (v.startswith("tu-") and len(v) > 3):
            hint = difflib.get_close_matches(v, SMP_ENCODERS, n=1)
            raise ValueError(f"unknown encoder {v!r}; choose one of {list(SMP_ENCODERS)} or tu-<timm model name>"
                             + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return v

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1) > 1e-6:
            raise ValueError(f"split_fractions (train, val, test) must be >= 0 and sum to 1 (got {v})")
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
    def effective_resize(self) -> str:
        """The resize policy in force: `auto` is squash for VOC (the paper's), pad (letterbox) for folders."""
        if self.resize != "auto":
            return self.resize
        folder = self.dataset == "folder" or (self.dataset == "synthetic" and self.synthetic_classes is not None)
        return "pad" if folder else "squash"

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


# Fields about where and how a run executes, not what it learns (paths, device, speed levers, kept masks): a
# resumed run may change them.
RUN_FIELDS = frozenset({"data_root", "cache_dir", "download", "device", "num_masks", "pretrained_path", "amp",
                        "channels_last", "compile", "fused_optimizer"})
# Not hyperparameters either: the plumbing, the seed (seed reruns vary it) and the generated data's size.
NON_HYPERPARAMETERS = RUN_FIELDS | {"seed", "synthetic_counts", "synthetic_size"}


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


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set lr=5e-4")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_config_file(path: str | None, overrides: dict[str, Any]) -> TrainConfig:
    import yaml

    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of TrainConfig fields at the top level")
    return make_config({**data, **overrides}, source=path or "--set")
