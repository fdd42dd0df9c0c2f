"""Checks that run before Ray starts, so a search that cannot work stops at once with one clear message.

`check_pretrained_weights`: a local search whose pretrained trials would all fail for lack of the ImageNet file.
`prepare_data`: every split decoded (or generated) once in the driver: data errors are reported here, naming the
file, and trials start from the cache instead of racing to build it. Both raise SpaceError. Ray-free; torch is
imported only when data is actually prepared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from search.space import Space, SpaceError


def check_pretrained_weights(space: Space, allow_missing: bool, joining_cluster: bool) -> None:
    """Refuse a local search whose pretrained trials would all fail for lack of the ImageNet weights file.
    (Joining a cluster, the weights live on the worker nodes: a trial without them is recorded as failed.)"""
    if joining_cluster or allow_missing:
        return
    from seg.models.resnet_fcn import hub_weights_path  # torch: only when a space can ask for weights

    needs: dict[str, str] = {}  # trial -> the weights file it would load
    configs = {f"fixed_trials.{n}": c for n, c in space.fixed.items()}
    if space.budget.num_samples:
        params = {p.name: p for p in space.params}
        d = space.defaults
        can_pretrain = d.pretrained or ("pretrained" in params and True in params["pretrained"].values)
        can_resnet = d.arch == "resnet34_fcn" or ("arch" in params and "resnet34_fcn" in params["arch"].values)
        if can_pretrain and can_resnet:
            configs["defaults (searched trials)"] = d.model_copy(update={"pretrained": True, "arch": "resnet34_fcn"})
    for where, cfg in configs.items():
        if cfg.pretrained and cfg.arch == "resnet34_fcn":
            path = Path(cfg.resolved().pretrained_path) if cfg.pretrained_path else hub_weights_path()
            if not path.is_file():
                needs[where] = str(path)
    if needs:
        lines = "\n  ".join(f"{w}: pretrained: true, but {p} does not exist" for w, p in needs.items())
        raise SpaceError(
            f"{space.source}: ImageNet weights for resnet34_fcn are missing:\n  {lines}\n"
            f"Put torchvision's resnet34-b627a593.pth at {hub_weights_path()} (or set pretrained_path), set "
            f"pretrained: false, or pass --allow-missing-weights to run the rest and record these trials as failed")


def prepare_data(space: Space, joining_cluster: bool) -> dict[str, Any]:
    """Decode / generate every split the space's trials use, once, before Ray starts. Returns facts about the
    defaults' data for experiment.json: `split_sizes` and `floor` (the scores of "background everywhere", see
    `floor_scores`). Joining a cluster, the nodes prepare their own copy (the driver may not see the data)."""
    if joining_cluster:
        return {}
    from seg.data.cache import load_split  # torch: only when there is data to prepare

    configs = {_data_key(c): c for c in (space.defaults, *space.fixed.values())}
    sizes: dict[str, int] = {}
    floor: dict[str, float] = {}
    for i, cfg in enumerate(configs.values()):
        cfg = cfg.resolved()
        for split in (cfg.train_split, cfg.val_split, cfg.test_split):
            if split:
                try:
                    data = load_split(cfg, split, "cpu")
                except (OSError, ValueError, RuntimeError) as e:
                    raise SpaceError(f"{space.source}: data: cannot load the {split!r} split from {cfg.data_root}: "
                                     f"{e}") from None
                if i == 0:
                    sizes[split] = len(data)
                    floor.update(floor_scores(cfg, split, data.masks))
    print(f"data: {space.defaults.dataset} at {space.defaults.resolved().data_root}, "
          f"{space.defaults.image_size}px, splits {sizes}")
    return {"split_sizes": sizes, "floor": floor}


def floor_scores(cfg, split: str, masks) -> dict[str, float]:
    """What predicting background everywhere scores on `split`, under the leaderboard's column names (the val
    split's as best_val_*, the test split's as test_*), dataset-level and paper-style: the floor in Table 4."""
    from seg.metrics import constant_prediction_scores

    prefix = {cfg.val_split: "best_val_", cfg.test_split: "test_"}.get(split)
    if prefix is None:
        return {}
    scores = constant_prediction_scores(masks, paper_batch=cfg.paper_metric_batch)
    return {prefix + k: v for k, v in scores.items()}


def _data_key(cfg) -> tuple:
    """Everything that decides which decoded data a config trains on (configs with the same key share it)."""
    return (cfg.dataset, cfg.data_root, cfg.image_size, tuple(cfg.synthetic_counts), cfg.synthetic_size,
            cfg.train_split, cfg.val_split, cfg.test_split, cfg.cache_dir)
