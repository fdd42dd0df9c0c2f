"""Search spaces as data: a YAML file -> a validated `Space` -> fixed-trial configs and an Optuna search space.

A space file names the experiment, its data, the complete default training config, the searched parameters
(with conditions such as "`width` only for `unet`"), named fixed trials (overrides of the defaults, possibly
`include`d from another file), the budget, the ASHA scheduler, per-trial resources, storage and a seed:

    name: quick
    data: {dataset: synthetic, root: data/synthetic, image_size: 48}
    defaults: {arch: fcn, epochs: 6, batch_size: 8}
    params:
      lr: {loguniform: [1.0e-4, 3.0e-3]}
      arch: {choice: [fcn, unet]}
      width: {uniform: [0.125, 0.5], when: {arch: unet}}
    fixed_trials:
      include: paper.yaml          # that file's fixed trials, path relative to this file
      small-lr: {lr: 1.0e-4}
    budget: {num_samples: 8, max_concurrent: 2}
    scheduler: {grace_period: 1, reduction_factor: 2}   # or: scheduler: none
    resources: {cpus: 1, gpus: 0.25}
    seeds: {top_k: 2, seeds: [1, 2], include_fixed: true}   # optional pass 3: reruns with other seeds

Every problem raises `SpaceError` whose message names the file, the key path, the bad value and what is
allowed, e.g. `spaces/x.yaml: params.lr.loguniform: low (0.1) must be < high (0.01)`.
Every value a trial can receive is checked by `TrainConfig` itself, so an unknown architecture in a `choice`
fails here, not an hour into the search.

The package, in the order data flows: `schema` (the file's pydantic models), `load` (YAML -> validated `Space`),
`model` (`Space`, `Param`, the Optuna space), `errors` (`SpaceError` and readable messages). Torch- and Ray-free.
"""
from __future__ import annotations

from search.space.errors import SpaceError
from search.space.load import load_space, read_yaml
from search.space.model import OptunaSpace, Param, Space, changed_keys, space_hash
from search.space.schema import DataSpec, ResourcesSpec, SeedsSpec, SpaceFile

__all__ = ["DataSpec", "OptunaSpace", "Param", "ResourcesSpec", "SeedsSpec", "Space", "SpaceError", "SpaceFile",
           "changed_keys", "load_space", "read_yaml", "space_hash"]
