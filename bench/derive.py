"""Derived space files: a copy of a space YAML with the benchmark's changes (epochs scaled, image size, data,
budget, resources, scheduler, storage), which bench.search and bench.gpu_check run through search.run."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from seg.atomic import atomic_write_text


def scale_epochs(epochs: int, scale: float) -> int:
    """Epochs times `scale`, rounded half up, at least 1."""
    return max(1, math.floor(epochs * scale + 0.5))


def derive_space(src: str | Path, dst: str | Path, *, name: str, epochs_scale: float = 1.0,
                 image_size: int | None = None, data: dict[str, Any] | None = None,
                 defaults: dict[str, Any] | None = None, budget: dict[str, Any] | None = None,
                 resources: dict[str, Any] | None = None, storage: str | None = None,
                 by: str = "bench.search") -> Path:
    """Write a copy of the space file `src` to `dst` with the given changes; returns `dst`.

    Every epoch count (defaults, each fixed trial, a searched `epochs` range, `scheduler.max_epochs`) is scaled by
    `epochs_scale`; `data` updates the data section, `defaults` the defaults, `budget` and `resources` theirs;
    `storage` replaces the results root; `by` names the tool in the header.
    Included files' fixed trials are not copied (their includes keep pointing at the original files)."""
    from search.space import read_yaml
    from seg.config import TrainConfig

    src, dst = Path(src), Path(dst)
    raw = read_yaml(src)
    raw["name"] = name
    raw["data"] = {**(raw.get("data") or {}), **(data or {}), **({"image_size": image_size} if image_size else {})}
    raw["defaults"] = {**(raw.get("defaults") or {}), **(defaults or {})}
    if budget:
        raw["budget"] = {**(raw.get("budget") or {}), **budget}
    if resources:
        raw["resources"] = {**(raw.get("resources") or {}), **resources}
    if storage is not None:
        raw["storage"] = storage
    if epochs_scale != 1.0:
        d = raw["defaults"]
        d["epochs"] = scale_epochs(d.get("epochs", TrainConfig.model_fields["epochs"].default), epochs_scale)
        for trial in (raw.get("fixed_trials") or {}).values():
            if isinstance(trial, dict) and "epochs" in trial:
                trial["epochs"] = scale_epochs(trial["epochs"], epochs_scale)
        spec = (raw.get("params") or {}).get("epochs") or {}
        for kind in ("int", "choice"):
            if kind in spec:
                spec[kind] = sorted({scale_epochs(e, epochs_scale) for e in spec[kind]})
        if spec.get("int") and len(spec["int"]) == 1:  # both ends scaled to one value
            spec["choice"] = spec.pop("int")
        if isinstance(raw.get("scheduler"), dict) and raw["scheduler"].get("max_epochs"):
            raw["scheduler"]["max_epochs"] = scale_epochs(raw["scheduler"]["max_epochs"], epochs_scale)
    fixed = raw.get("fixed_trials") or {}
    if "include" in fixed:  # include paths are relative to the including file, which moves
        inc = fixed["include"]
        fixed["include"] = [str((src.parent / i).resolve()) for i in (inc if isinstance(inc, list) else [inc])]
    note = (f"# Derived from {src} by {by} (epochs x{epochs_scale:g}"
            f"{f', {image_size} px' if image_size else ''}); regenerated on every run, do not edit.\n")
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dst, note + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return dst
