"""The dataset registry: `cfg.dataset` -> where a split's files are and what its classes are.

    voc        VOCdevkit/VOC<year> under data_root (2007 or 2012; torchvision's downloader with download: true)
    folder     your own images/ + masks/ + classes.yaml in data_root (seg.data.folder)
    synthetic  generated once into data_root: VOC's layout and classes, or, with synthetic_classes: N, a folder
               dataset with N classes and non-square images (seg.data.synthetic)

A space's `data.dataset` (voc2007, voc2012, folder, synthetic) maps onto these (search.space.schema.DataSpec).
Each entry gives `classes(cfg) -> ClassInfo` and `split_files(cfg, split) -> SplitFiles` (the split's checked file
lists; synthetic data is generated first) plus the file that defines its classes, which errors name. numpy and
PIL, no torch (torchvision only for VOC's reader).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from seg.data.classes import VOC, ClassInfo
from seg.data.folder import CLASSES_FILE, SplitFiles, folder_split, read_classes
from seg.data.synthetic import make_synthetic_folder, make_synthetic_voc
from seg.data.voc import voc_dataset

if TYPE_CHECKING:
    from seg.config import TrainConfig


class DatasetKind(NamedTuple):
    classes: Callable[["TrainConfig"], ClassInfo]
    split_files: Callable[["TrainConfig", str], SplitFiles]
    classes_file: Callable[["TrainConfig"], Path | None]  # named in data errors; None: built in (VOC)
    tag: str  # cache file prefix: what this data is


def _voc_files(cfg: "TrainConfig", split: str) -> SplitFiles:
    ds = voc_dataset(cfg.data_root, cfg.year, split, download=cfg.download)
    return SplitFiles(list(ds.ids), list(ds.images), list(ds.masks))


def _folder_files(cfg: "TrainConfig", split: str) -> SplitFiles:
    read_classes(cfg.data_root)  # a missing or malformed classes.yaml is reported before any file
    return folder_split(cfg.data_root, split, cfg.split_fractions, cfg.split_seed)


def _synthetic_ready(cfg: "TrainConfig") -> None:
    """Generate the synthetic set unless an identical one is there (idempotent, cheap when it is)."""
    if cfg.synthetic_classes is None:
        make_synthetic_voc(cfg.data_root, cfg.synthetic_counts, cfg.synthetic_size, seed=0)
    else:
        make_synthetic_folder(cfg.data_root, cfg.synthetic_classes, cfg.synthetic_counts, cfg.synthetic_size, seed=0)


def _synthetic_files(cfg: "TrainConfig", split: str) -> SplitFiles:
    _synthetic_ready(cfg)
    return _voc_files(cfg, split) if cfg.synthetic_classes is None else _folder_files(cfg, split)


def _synthetic_classes(cfg: "TrainConfig") -> ClassInfo:
    if cfg.synthetic_classes is None:
        return VOC
    _synthetic_ready(cfg)
    return read_classes(cfg.data_root)


def _classes_yaml(cfg: "TrainConfig") -> Path:
    return Path(cfg.data_root).expanduser().resolve() / CLASSES_FILE


DATASETS: dict[str, DatasetKind] = {
    "voc": DatasetKind(lambda cfg: VOC, _voc_files, lambda cfg: None, "voc"),
    "folder": DatasetKind(lambda cfg: read_classes(cfg.data_root), _folder_files, _classes_yaml, "folder"),
    "synthetic": DatasetKind(_synthetic_classes, _synthetic_files,
                             lambda cfg: None if cfg.synthetic_classes is None else _classes_yaml(cfg), "synthetic"),
}


def dataset_kind(cfg: "TrainConfig") -> DatasetKind:
    try:
        return DATASETS[cfg.dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {cfg.dataset!r}; choose one of {sorted(DATASETS)}") from None


def dataset_classes(cfg: "TrainConfig") -> ClassInfo:
    """The classes cfg's data has (VOC's 21, or a folder's classes.yaml)."""
    return dataset_kind(cfg).classes(cfg)


def split_files(cfg: "TrainConfig", split: str) -> SplitFiles:
    """One split's checked file lists (synthetic data generated first)."""
    return dataset_kind(cfg).split_files(cfg, split)
