"""Checks that run before Ray starts, so a search that cannot work stops at once with one clear message.

`check_pretrained_weights`: a local search whose pretrained trials would all fail for lack of the ImageNet file.
`data_classes`: the data's class names and palette, for experiment.json.
`prepare_data`: every split decoded (or generated) once in the driver: data errors are reported here, naming the
file, and trials start from the cache instead of racing to build it. Both raise SpaceError. Ray-free; torch is
imported only when data is actually prepared.
"""
from __future__ import annotations

from typing import Any

from search.space import Space, SpaceError


def check_pretrained_weights(space: Space, allow_missing: bool, joining_cluster: bool) -> None:
    """Refuse a local search whose pretrained trials would fail for lack of ImageNet weights. A missing file is
    downloaded here, once, when the network allows (seg.models.weights), so the trials find it in the cache.
    (Joining a cluster, the weights live on the worker nodes: a trial without them is recorded as failed.)"""
    if joining_cluster or allow_missing:
        return
    configs = _pretrained_configs(space)
    if not configs:
        return
    from seg.models.registry import ensure_pretrained_weights  # torch: only when a space can ask for weights
    from seg.models.weights import PretrainedWeightsError

    problems: dict[str, str] = {}  # trial -> what is missing
    for where, cfg in configs.items():
        try:
            ensure_pretrained_weights(cfg.resolved())
        except PretrainedWeightsError as e:
            problems[where] = f"{cfg.arch}" + (f" ({cfg.encoder})" if cfg.arch.startswith("smp_") else "") + f": {e}"
    if not problems:
        return
    archs = sorted({c.arch for w, c in configs.items() if w in problems})
    lines = "\n  ".join(f"{w}: pretrained: true, but {p}" for w, p in problems.items())
    put = ""
    if "resnet34_fcn" in archs:
        from seg.models.resnet_fcn import hub_weights_path

        put = f"Put torchvision's resnet34-b627a593.pth at {hub_weights_path()} (or set pretrained_path), "
    raise SpaceError(
        f"{space.source}: ImageNet weights for {', '.join(archs)} are missing:\n  {lines}\n"
        f"{put or 'Put the weights file where the message says (or set pretrained_path), '}set pretrained: false, or "
        f"pass --allow-missing-weights to run the rest and record these trials as failed")


def _pretrained_configs(space: Space) -> dict:
    """Where in the space -> a config that loads ImageNet weights: the fixed trials with pretrained: true, and for
    the searched trials one config per (arch, encoder) they can draw with pretrained: true."""
    from seg.models.spec import SMP_ARCHS

    weighted = ("resnet34_fcn", *SMP_ARCHS)
    configs = {f"fixed_trials.{n}": c for n, c in space.fixed.items() if c.pretrained and c.arch in weighted}
    if not space.budget.num_samples:
        return configs
    params, d = {p.name: p for p in space.params}, space.defaults
    if not (d.pretrained or ("pretrained" in params and True in params["pretrained"].values)):
        return configs
    archs = params["arch"].values if "arch" in params else [d.arch]
    encoders = params["encoder"].values if "encoder" in params else [d.encoder]
    for arch in (a for a in archs if a in weighted):
        for enc in (encoders if arch in SMP_ARCHS else [d.encoder]):
            label = f"defaults (searched trials, arch {arch}" + (f", encoder {enc})" if arch in SMP_ARCHS else ")")
            configs[label] = d.model_copy(update={"pretrained": True, "arch": arch, "encoder": enc})
    return configs


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
    from seg.data.registry import dataset_classes

    scores = constant_prediction_scores(masks, num_classes=dataset_classes(cfg).num_classes,
                                        paper_batch=cfg.paper_metric_batch)
    return {prefix + k: v for k, v in scores.items()}


def data_classes(space: Space, joining_cluster: bool) -> dict | None:
    """The classes of the defaults' data as plain data (names, palette, ignore_index) for experiment.json, which
    the tables and the report read; None where the driver cannot tell (joining a cluster with synthetic data)."""
    cfg = space.defaults.resolved()
    if joining_cluster and cfg.dataset == "synthetic":
        return None
    from seg.data.registry import dataset_classes

    try:
        return dataset_classes(cfg).to_yaml_dict()
    except (OSError, ValueError):  # joining a cluster whose data this machine does not see
        return None


def _data_key(cfg) -> tuple:
    """Everything that decides which decoded data a config trains on (configs with the same key share it)."""
    return (cfg.dataset, cfg.year, cfg.data_root, cfg.image_size, cfg.resize, tuple(cfg.synthetic_counts),
            cfg.synthetic_size, cfg.synthetic_classes, tuple(cfg.split_fractions), cfg.split_seed,
            cfg.train_split, cfg.val_split, cfg.test_split, cfg.cache_dir)
