"""The exported model folder: a trained model's best-val weights with everything needed to use and trust them.

    MODEL_DIR/model.json           format, arch, num_classes, image_size, resize policy, metrics, provenance
    MODEL_DIR/config.yaml          the resolved TrainConfig it was trained with
    MODEL_DIR/weights.safetensors  the best-val-mIoU checkpoint's state_dict (Trainer.best_state)
    MODEL_DIR/classes.yaml         names, palette, ignore index (the folder dataset's format, seg.data.folder)
    MODEL_DIR/MODEL_CARD.md        a short card: metrics, data, training, provenance

`export_state(trainer_state, out)` writes it from a Trainer state dict (what `Trainer.state_dict()` returns and
the search's checkpoints hold as `trainer_state.pt`), so nothing is retrained; `seg.train` writes one per run and
`python -m search.export` one per chosen trial. `load_model(model_dir)` reads it back as a ready model; a folder
that is not a model, lacks its weights, or whose classes do not match its weights raises `ModelFolderError`.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from seg.atomic import atomic_write, atomic_write_text
from seg.config import ConfigError, TrainConfig, make_config
from seg.data.classes import VOC, ClassInfo
from seg.data.folder import read_classes
from seg.data.voc import DataError
from seg.models.registry import build_model
from seg.provenance import git_commit, now_iso, versions

FORMAT = "segtune-model"
FORMAT_VERSION = 1
MODEL_JSON, CONFIG_YAML, WEIGHTS, CLASSES_YAML, CARD = (
    "model.json", "config.yaml", "weights.safetensors", "classes.yaml", "MODEL_CARD.md")
CARD_METRICS = ("best_epoch", "best_val_miou", "best_val_pixel_acc", "test_miou", "test_pixel_acc")


class ModelFolderError(ValueError):
    """A model folder that cannot be used, explained: which folder or file, what is wrong, the fix."""


@dataclass
class ExportedModel:
    """A model folder read back: its config, classes, metadata, and the model (eval mode, on `device`)."""

    path: Path
    cfg: TrainConfig
    classes: ClassInfo
    meta: dict[str, Any]
    model: nn.Module


# ---- writing ---------------------------------------------------------------------------------------------------
def export_state(state: dict[str, Any], out: str | os.PathLike, provenance: dict[str, Any] | None = None) -> Path:
    """Write the model folder for a Trainer state dict (its best_state, config, classes and best metrics)."""
    if state.get("best_state") is None:
        raise ModelFolderError("the checkpoint has no best weights yet (no epoch finished); train at least one epoch")
    cfg = make_config(state["config"], source="checkpoint config")
    classes = ClassInfo(**_classes_fields(state.get("classes"))) if state.get("classes") else VOC
    best = {k: v for k, v in (state.get("best") or {}).items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_weights(out / WEIGHTS, state["best_state"], cfg, classes)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": cfg.arch, "encoder": cfg.encoder,
        "num_classes": classes.num_classes, "image_size": cfg.image_size, "resize": cfg.effective_resize,
        "epochs_trained": int(state.get("epoch", 0)), "metrics": _plain(best),
        "provenance": {"exported_at": now_iso(), "git_commit": git_commit(), "versions": versions(),
                       **(provenance or {})},
    }
    atomic_write_text(out / CONFIG_YAML, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    atomic_write_text(out / CLASSES_YAML, yaml.safe_dump(classes.to_yaml_dict(), sort_keys=False))
    atomic_write_text(out / CARD, model_card(meta, cfg, classes))
    atomic_write_text(out / MODEL_JSON, json.dumps(meta, indent=2))  # last: a folder with it is complete
    return out


def export_checkpoint(data: bytes | str | os.PathLike, out: str | os.PathLike,
                      provenance: dict[str, Any] | None = None) -> Path:
    """`export_state` for a saved Trainer state (`trainer_state.pt`: a path or its bytes)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelFolderError(f"cannot read the trainer checkpoint: {type(e).__name__}: {e}") from None
    return export_state(state, out, provenance)


def _classes_fields(d: dict[str, Any]) -> dict[str, Any]:
    return {"names": tuple(d["names"]), "palette": tuple(tuple(c) for c in d["palette"]),
            "ignore_index": int(d.get("ignore_index", 255))}


def _write_weights(path: Path, state: dict[str, torch.Tensor], cfg: TrainConfig, classes: ClassInfo) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"arch": cfg.arch, "num_classes": str(classes.num_classes)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: floats (NaN as null), ints, bools, strings."""
    out = {}
    for k, v in d.items():
        v = v.item() if hasattr(v, "item") else v
        out[k] = None if isinstance(v, float) and v != v else v
    return out


def model_card(meta: dict[str, Any], cfg: TrainConfig, classes: ClassInfo) -> str:
    """A short Markdown card: what the model is, how well it did, on what data, and where it came from."""
    m, p = meta["metrics"], meta["provenance"]
    arch = cfg.arch + (f" (encoder {cfg.encoder}, {'ImageNet' if cfg.pretrained else 'random'} init)"
                       if cfg.arch.startswith("smp_") else "")
    rows = "\n".join(f"| {k} | {_fmt(m.get(k))} |" for k in CARD_METRICS)
    ious = ", ".join(f"{n} {_fmt(m.get('iou_' + c))}" for n, c in zip(classes.names, classes.columns))
    where = p.get("trial") and f"trial {p.get('trial')} of experiment {p.get('experiment')}"
    return (
        f"# segtune model: {arch}\n\n"
        f"Semantic segmentation into {classes.num_classes} classes ({', '.join(classes.names)}), "
        f"{meta['epochs_trained']} epochs; weights of the best validation-mIoU epoch.\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\nTest IoU per class: {ious}.\n\n"
        f"## Data\n{cfg.dataset} at {cfg.data_root} (splits {cfg.train_split} / {cfg.val_split} / "
        f"{cfg.test_split}); images {cfg.image_size}x{cfg.image_size} px, resize policy `{meta['resize']}` "
        f"(seg.data.resize).\n\n"
        f"## Training\nlr {cfg.lr:g}, {cfg.optimizer}, batch {cfg.batch_size}, class weights {cfg.class_weights}, "
        f"seed {cfg.seed}; the full config is config.yaml.\n\n"
        f"## Provenance\nexported {p.get('exported_at')}{' from ' + where if where else ''}; git commit "
        f"{p.get('git_commit')}; torch {p.get('versions', {}).get('torch')}.\n\n"
        f"Use it: `python -m seg.predict <this folder> IMAGES... --out DIR`.\n"
    )


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


# ---- reading ---------------------------------------------------------------------------------------------------
def read_model_folder(path: str | os.PathLike) -> tuple[dict[str, Any], TrainConfig, ClassInfo]:
    """(model.json, config, classes) of a model folder, every file checked; raises ModelFolderError."""
    path = Path(path)
    if not (path / MODEL_JSON).is_file():
        what = "does not exist" if not path.exists() else "is not a segtune model folder (no model.json)"
        raise ModelFolderError(f"{path} {what}; export one with `python -m search.export RESULTS_DIR --out DIR` "
                               "or train one with `python -m seg.train` (it writes <out>/model)")
    try:
        meta = json.loads((path / MODEL_JSON).read_text())
        cfg = make_config(yaml.safe_load((path / CONFIG_YAML).read_text()), source=str(path / CONFIG_YAML))
        classes = read_classes(path)
    except (OSError, ValueError, yaml.YAMLError, ConfigError, DataError) as e:
        raise ModelFolderError(f"{path}: {e}; re-export the model folder") from None
    if meta.get("format") != FORMAT:
        raise ModelFolderError(f"{path / MODEL_JSON}: format is {meta.get('format')!r}, not {FORMAT!r}")
    if not (path / WEIGHTS).is_file():
        raise ModelFolderError(f"{path} has no {WEIGHTS}: the folder is incomplete; re-export it with "
                               "`python -m search.export` (the weights come from the trial's checkpoint)")
    if meta.get("num_classes") not in (None, classes.num_classes):
        raise ModelFolderError(
            f"{path / CLASSES_YAML} lists {classes.num_classes} classes but the model was trained for "
            f"{meta['num_classes']} ({path / MODEL_JSON}); restore the model's own classes.yaml")
    return meta, cfg, classes


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> ExportedModel:
    """The model folder's model, built for its classes with its weights, in eval mode on `device`."""
    from safetensors.torch import load_file

    path = Path(path)
    meta, cfg, classes = read_model_folder(path)
    try:
        state = load_file(str(path / WEIGHTS), device="cpu")
    except Exception as e:
        raise ModelFolderError(f"cannot read {path / WEIGHTS}: {e}; re-export the model folder") from None
    model = build_model(cfg.model_copy(update={"pretrained": False}), classes.num_classes)  # weights come next
    _check_shapes(path, model, state, classes)
    model.load_state_dict(state, strict=True)
    return ExportedModel(path, cfg, classes, meta, model.to(device).eval())


def _check_shapes(path: Path, model: nn.Module, state: dict[str, torch.Tensor], classes: ClassInfo) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ModelFolderError(f"{path / WEIGHTS} lacks {missing[:3]} of a {meta_arch(model)} model; re-export it")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if not wrong:
        return
    head = next((k for k in reversed(list(own)) if k in wrong), wrong[0])  # the head is last: the class count
    trained = state[head].shape[0] if state[head].ndim else "?"
    raise ModelFolderError(
        f"{path}: the weights were trained for {trained} classes ({head} has shape {tuple(state[head].shape)}) but "
        f"{path / CLASSES_YAML} lists {classes.num_classes}; use the classes.yaml the model was exported with, "
        "or a model trained for these classes")


def meta_arch(model: nn.Module) -> str:
    return type(model).__name__
