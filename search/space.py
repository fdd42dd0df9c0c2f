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
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seg.config import TrainConfig

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
METRICS = ("val_miou", "best_val_miou", "val_pixel_acc")  # what ASHA and Optuna may optimise (mode: max)
# TrainConfig fields that the `data:` section owns; `defaults`, `params` and fixed trials may not set them.
DATA_FIELDS = ("dataset", "year", "data_root", "download", "image_size")
SEARCHABLE_DATA_FIELDS = ("image_size",)  # the one data field a search may vary
RESERVED_TRIAL_NAMES = ("include",)


class SpaceError(ValueError):
    """A space file problem explained for a person: file, key path, bad value, and the fix."""


# ---------------------------------------------------------------------------------------------------------------
# YAML loading: `1e-3` is a float (PyYAML's YAML 1.1 resolver reads it as a string)
# ---------------------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file, or SpaceError naming the file and the line."""
    if not path.is_file():
        raise SpaceError(f"{path}: space file not found (cwd: {Path.cwd()})")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        raise SpaceError(f"{path}: the file is empty; it needs at least `name:` and `defaults:`")
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: expected a mapping (name:, data:, defaults:, params: ...) at the top level, "
                         f"got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------------------------
# The schema (extra keys are rejected at every level)
# ---------------------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DataSpec(_Strict):
    dataset: Literal["voc2007", "synthetic"] = "voc2007"
    root: str = "data"  # folder that holds VOCdevkit/ (synthetic: generated there); relative to the cwd
    image_size: int = Field(224, ge=16, le=1024)  # px, square
    download: bool = False  # torchvision's downloader when VOC is missing (needs network)

    def train_fields(self) -> dict[str, Any]:
        """The TrainConfig fields this section sets."""
        return {"dataset": "voc" if self.dataset == "voc2007" else "synthetic", "year": "2007",
                "data_root": self.root, "image_size": self.image_size, "download": self.download}


class ParamSpec(_Strict):
    """One searched key: exactly one distribution, optionally only `when` other params take given values."""

    loguniform: tuple[float, float] | None = None  # [low, high], low > 0
    uniform: tuple[float, float] | None = None  # [low, high]
    int_: tuple[int, int] | None = Field(None, alias="int")  # [low, high], both inclusive
    choice: list[Any] | None = None  # non-empty list of values
    when: dict[str, Any] | None = None  # {param: value or [values]}: searched only then

    @model_validator(mode="after")
    def _one_distribution(self) -> "ParamSpec":
        given = [d for d in DISTRIBUTIONS if self.bounds(d) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)} (got {given or 'none'}), "
                             f"e.g. {{loguniform: [1.0e-4, 1.0e-2]}} or {{choice: [relu, tanh]}}")
        if self.choice is not None:
            if not self.choice:
                raise ValueError("choice: the list of values is empty; list at least one value")
            if len({json.dumps(v, sort_keys=True) for v in self.choice}) != len(self.choice):
                raise ValueError(f"choice: values repeat ({self.choice}); list each value once")
        else:
            low, high = self.bounds(self.kind)
            if not low < high:
                raise ValueError(f"{self.kind}: low ({low}) must be < high ({high})")
            if self.kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform: low ({low}) must be > 0 (a log scale); use uniform for ranges from 0")
        return self

    def bounds(self, kind: str):
        return {"loguniform": self.loguniform, "uniform": self.uniform, "int": self.int_, "choice": self.choice}[kind]

    @property
    def kind(self) -> str:
        return next(d for d in DISTRIBUTIONS if self.bounds(d) is not None)

    @property
    def values(self) -> list[Any]:
        """The values that must be valid: the choices, or both ends of a range."""
        return list(self.bounds(self.kind))


class BudgetSpec(_Strict):
    num_samples: int = Field(0, ge=0)  # searched trials (fixed trials come on top)
    max_concurrent: int = Field(1, ge=1)  # trials running at once (per pass)
    max_failures: int = Field(1, ge=0)  # retries of a crashed trial, each from its last epoch checkpoint


class SchedulerSpec(_Strict):
    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1)  # epochs before a searched trial can be stopped
    reduction_factor: float = Field(2.0, gt=1)  # keep the top 1/reduction_factor at each rung
    max_epochs: int | None = Field(None, ge=1)  # ASHA's max_t; default: the most epochs a searched trial can get


class SamplerSpec(_Strict):
    type: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(10, ge=0)  # random trials (fixed trials count) before TPE models the space


class ResourcesSpec(_Strict):
    cpus: float = Field(1.0, gt=0)  # per trial
    gpus: float = Field(0.0, ge=0)  # per trial; fractions pack several trials on one GPU

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"gpus above 1 must be a whole number (got {v}); use e.g. 0.25, 0.5, 1 or 2")
        return v


class SeedsSpec(_Strict):
    """Seed-robust ranking: after the search, rerun the best configurations with other seeds (pass 3)."""

    top_k: int = Field(0, ge=0)  # the best completed searched trials (by best_val_miou) to rerun
    seeds: list[int] = Field(min_length=1)  # TrainConfig.seed of each rerun; the original run keeps its own
    include_fixed: bool = False  # also rerun every completed fixed trial

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat ({v}); list each seed once")
        return v

    @model_validator(mode="after")
    def _something(self) -> "SeedsSpec":
        if self.top_k == 0 and not self.include_fixed:
            raise ValueError("nothing would be rerun: set top_k >= 1 and/or include_fixed: true "
                             "(or leave the seeds section out)")
        return self


class SpaceFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # the experiment folder results/<name>/
    description: str | None = None
    data: DataSpec = DataSpec()
    defaults: dict[str, Any] = {}  # TrainConfig fields; the rest keep TrainConfig's defaults
    params: dict[str, ParamSpec] = {}
    fixed_trials: dict[str, Any] = {}  # name -> {TrainConfig field: value}; `include: file.yaml` (or a list)
    metric: Literal["val_miou", "best_val_miou", "val_pixel_acc"] = "val_miou"  # maximised
    budget: BudgetSpec = BudgetSpec()
    scheduler: SchedulerSpec | None = SchedulerSpec()  # `scheduler: none`: searched trials run all epochs
    sampler: SamplerSpec = SamplerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    storage: str = "results"  # local folder, or a URI (s3://bucket/path, gs://...) for a cluster
    seed: int = 0  # of the Optuna sampler; each trial's own seed is the TrainConfig field `seed`
    seeds: SeedsSpec | None = None  # seed reruns of the best trials (pass 3); `seeds: none` or absent: off

    @field_validator("scheduler", "seeds", mode="before")
    @classmethod
    def _none_word(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("none", "off", "null") else v

    @field_validator("fixed_trials", mode="before")
    @classmethod
    def _names_as_strings(cls, v: Any) -> Any:  # `5: {...}` in YAML is an int key
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v


# ---------------------------------------------------------------------------------------------------------------
# The validated space
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # loguniform | uniform | int | choice
    values: tuple  # (low, high) or the choices, as TrainConfig coerced them
    when: tuple[tuple[str, tuple], ...] = ()  # ((param, allowed values), ...)

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(k in chosen and chosen[k] in allowed for k, allowed in self.when)

    def contains(self, v: Any) -> bool:
        """Whether a (fixed trial's) value lies in this param's distribution."""
        if self.kind == "choice":
            return any(v == c and isinstance(v, bool) == isinstance(c, bool) for c in self.values)  # True != 1
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.kind == "int" and v != int(v):
            return False
        return self.values[0] <= v <= self.values[1]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values), "when": {k: list(v) for k, v in self.when}}


@dataclass(frozen=True)
class OptunaSpace:
    """Optuna define-by-run space (picklable: Tune checkpoints the searcher). Parents come before children."""

    params: tuple[Param, ...]

    def __call__(self, trial) -> None:
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.active(chosen):
                chosen[p.name] = _suggest(trial, p)
        return None  # OptunaSearch records every suggest_* call as the trial's config

    def point(self, config: dict[str, Any]) -> dict[str, Any]:
        """The searched values of a complete config, for seeding the sampler with a fixed trial's result: keys
        outside the searched params, values outside their ranges and params whose condition fails are left out."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.active(chosen) and p.name in config and p.contains(config[p.name]):
                chosen[p.name] = config[p.name]
        return chosen

    def distributions(self, point: dict[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the params present in `point`."""
        return {p.name: _distribution(p) for p in self.params if p.name in point}


def _distribution(p: Param):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.kind == "choice":
        return CategoricalDistribution(list(p.values))
    if p.kind == "int":
        return IntDistribution(int(p.values[0]), int(p.values[1]))
    return FloatDistribution(float(p.values[0]), float(p.values[1]), log=p.kind == "loguniform")


def _suggest(trial, p: Param) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.values))
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.values[0]), int(p.values[1]))
    return trial.suggest_float(p.name, float(p.values[0]), float(p.values[1]), log=p.kind == "loguniform")


@dataclass
class Space:
    """A validated space: complete configs for the defaults and every fixed trial, plus the searched params."""

    name: str
    source: Path
    description: str | None
    data: DataSpec
    defaults: TrainConfig  # data section applied
    params: tuple[Param, ...]
    fixed: dict[str, TrainConfig]  # name -> complete config, in file order (includes first)
    fixed_sources: dict[str, str]  # name -> file that defined it
    metric: str
    budget: BudgetSpec
    scheduler: SchedulerSpec | None
    sampler: SamplerSpec
    resources: ResourcesSpec
    storage: str
    seed: int
    includes: tuple[str, ...] = field(default=())
    seeds: SeedsSpec | None = None

    @property
    def optuna_space(self) -> OptunaSpace:
        return OptunaSpace(self.params)

    @property
    def searched_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def max_epochs(self) -> int:
        """ASHA's max_t: configured, or the most epochs a searched trial can be given."""
        if self.scheduler and self.scheduler.max_epochs:
            return self.scheduler.max_epochs
        return _most_epochs(self.params, self.defaults)

    def to_json(self) -> dict[str, Any]:
        """The resolved space: what an experiment was started with (stored in experiment.json, hashed)."""
        return {
            "name": self.name, "data": self.data.model_dump(), "defaults": self.defaults.model_dump(mode="json"),
            "params": {p.name: p.to_json() for p in self.params},
            "fixed_trials": {n: c.model_dump(mode="json") for n, c in self.fixed.items()},
            "metric": self.metric, "budget": self.budget.model_dump(),
            "scheduler": self.scheduler.model_dump() if self.scheduler else None,
            "sampler": self.sampler.model_dump(), "seed": self.seed,
            # only when set: experiments started before the seeds section existed keep their hash
            **({"seeds": self.seeds.model_dump()} if self.seeds else {}),
        }  # resources and storage are left out: they say where trials run, not what they compute

    @property
    def hash(self) -> str:
        return space_hash(self.to_json())


def space_hash(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths whose values differ between two resolved spaces, as `path: old -> new` lines."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{k}"
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------------------------
def load_space(path: str | Path, _stack: tuple[Path, ...] = ()) -> Space:
    """Read and validate a space file (and the files it includes). Raises SpaceError."""
    path = Path(path).expanduser()
    where = _shown(path)
    raw = read_yaml(path)
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as err:
        raise SpaceError(format_space_errors(err, where)) from None

    data_fields = spec.data.train_fields()
    defaults = _train_config({**_without_data_fields(spec.defaults, where, "defaults"), **data_fields},
                             where, "defaults")
    params = _validate_params(spec.params, defaults, where)
    fixed, sources, includes = _resolve_fixed_trials(spec, defaults, data_fields, path, (*_stack, path.resolve()))
    space = Space(
        name=spec.name, source=path, description=spec.description, data=spec.data, defaults=defaults,
        params=params, fixed=fixed, fixed_sources=sources, metric=spec.metric, budget=spec.budget,
        scheduler=spec.scheduler, sampler=spec.sampler, resources=spec.resources, storage=spec.storage,
        seed=spec.seed, includes=includes, seeds=spec.seeds,
    )
    _check_scheduler(space, where)
    _check_seeds(space, where)
    if not space.fixed and space.budget.num_samples == 0:
        raise SpaceError(f"{where}: budget.num_samples is 0 and there are no fixed_trials: nothing would run; "
                         f"add fixed_trials or set budget.num_samples")
    if space.budget.num_samples and not space.params:
        raise SpaceError(f"{where}: budget.num_samples is {space.budget.num_samples} but params is empty: "
                         f"add searched params or set budget.num_samples: 0")
    return space


def _shown(path: Path) -> str:
    """The path as the user would recognise it: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _without_data_fields(d: dict[str, Any], where: str, section: str) -> dict[str, Any]:
    for k in d:
        if k in DATA_FIELDS:
            target = {"dataset": "data.dataset", "year": "data.dataset (voc2007)", "data_root": "data.root",
                      "download": "data.download", "image_size": "data.image_size"}[k]
            raise SpaceError(f"{where}: {section}.{k}: the data section sets this for the whole experiment; "
                             f"set {target} instead")
    return d


def _train_config(d: dict[str, Any], where: str, section: str) -> TrainConfig:
    try:
        return TrainConfig(**d)
    except ValidationError as err:
        raise SpaceError(format_train_errors(err, where, section)) from None


def _validate_params(params: dict[str, ParamSpec], defaults: TrainConfig, where: str) -> tuple[Param, ...]:
    fields = TrainConfig.model_fields
    out: dict[str, Param] = {}
    for name, spec in params.items():
        key = f"params.{name}"
        if name not in fields:
            raise SpaceError(f"{where}: {key}: unknown parameter {name!r}; params are TrainConfig fields"
                             + _did_you_mean(name, fields))
        if name in DATA_FIELDS and name not in SEARCHABLE_DATA_FIELDS:
            raise SpaceError(f"{where}: {key}: {name} belongs to the data section and cannot be searched")
        _check_kind_fits_field(name, spec.kind, fields[name].annotation, where, key)
        base = defaults.model_dump()
        coerced = []
        for i, v in enumerate(spec.values):
            loc = f"{key}.{spec.kind}" + (f"[{i}]" if spec.kind == "choice" else f" ({'low' if i == 0 else 'high'})")
            cfg = _train_config({**base, name: v}, where, loc)
            coerced.append(_plain(getattr(cfg, name)))
        out[name] = Param(name, spec.kind, tuple(coerced))
    # conditions refer to searched choices; order parents before children for define-by-run sampling
    for name, spec in params.items():
        when = []
        for parent, allowed in (spec.when or {}).items():
            loc = f"params.{name}.when.{parent}"
            if parent not in out:
                raise SpaceError(f"{where}: {loc}: conditions may only refer to searched params "
                                 f"({sorted(out) or 'none'})" + _did_you_mean(parent, out))
            allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            pv = out[parent]
            for a in allowed:
                ok = a in pv.values if pv.kind == "choice" else (
                    isinstance(a, (int, float)) and pv.values[0] <= a <= pv.values[1])
                if not ok:
                    raise SpaceError(f"{where}: {loc}: {a!r} is not a value {parent} can take; "
                                     f"allowed: {list(pv.values)}")
            when.append((parent, allowed))
        out[name] = Param(name, out[name].kind, out[name].values, tuple(when))
    return _parents_first(out, where)


def _check_kind_fits_field(name: str, kind: str, annotation: Any, where: str, key: str) -> None:
    types_ = {a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)}
    if kind == "choice":
        return
    if types_ <= {int}:
        if kind != "int":
            raise SpaceError(f"{where}: {key}: {name} is an integer field; use int: [low, high] or choice: [...]"
                             f" instead of {kind}")
    elif not types_ <= {float, int}:
        raise SpaceError(f"{where}: {key}: {name} is not numeric ({_type_name(annotation)}); use choice: [...]")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _parents_first(params: dict[str, Param], where: str) -> tuple[Param, ...]:
    ordered: list[Param] = []
    done: set[str] = set()

    def visit(p: Param, chain: tuple[str, ...]) -> None:
        if p.name in done:
            return
        if p.name in chain:
            raise SpaceError(f"{where}: params.{p.name}.when: conditions form a cycle: {' -> '.join((*chain, p.name))}")
        for parent, _ in p.when:
            visit(params[parent], (*chain, p.name))
        done.add(p.name)
        ordered.append(p)

    for p in params.values():
        visit(p, ())
    return tuple(ordered)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _most_epochs(params: tuple[Param, ...], defaults: TrainConfig) -> int:
    for p in params:
        if p.name == "epochs":
            return int(max(p.values))
    return defaults.epochs


def _check_scheduler(space: Space, where: str) -> None:
    if not space.scheduler or not space.scheduler.max_epochs:
        return
    most = _most_epochs(space.params, space.defaults)
    if space.scheduler.max_epochs < most:
        raise SpaceError(f"{where}: scheduler.max_epochs ({space.scheduler.max_epochs}) is below the {most} epochs a "
                         f"searched trial can get: ASHA would stop every such trial there; raise max_epochs or "
                         f"leave it out")
    if space.scheduler.grace_period > space.scheduler.max_epochs:
        raise SpaceError(f"{where}: scheduler.grace_period ({space.scheduler.grace_period}) must be <= max_epochs "
                         f"({space.scheduler.max_epochs})")


def _check_seeds(space: Space, where: str) -> None:
    s = space.seeds
    if s is None:
        return
    if s.top_k > space.budget.num_samples:
        raise SpaceError(f"{where}: seeds.top_k: {s.top_k} searched trials cannot be rerun when budget.num_samples "
                         f"is {space.budget.num_samples}; lower top_k to at most {space.budget.num_samples}")
    if s.include_fixed and not space.fixed:
        raise SpaceError(f"{where}: seeds.include_fixed: true, but there are no fixed_trials; "
                         f"set include_fixed: false or add fixed trials")
    if space.defaults.seed in s.seeds:  # (a fixed trial with its own seed just skips that rerun)
        raise SpaceError(f"{where}: seeds.seeds: {space.defaults.seed} is the defaults' seed, which the searched "
                         f"trials already ran with: a rerun with it would repeat the original run; choose other "
                         f"seeds (e.g. {[v for v in range(1, len(s.seeds) + 2) if v != space.defaults.seed][:len(s.seeds)]})")


# ---------------------------------------------------------------------------------------------------------------
# Fixed trials and includes
# ---------------------------------------------------------------------------------------------------------------
def _resolve_fixed_trials(spec: SpaceFile, defaults: TrainConfig, data_fields: dict[str, Any], path: Path,
                          stack: tuple[Path, ...]) -> tuple[dict[str, TrainConfig], dict[str, str], tuple[str, ...]]:
    """name -> complete config. Included trials keep their meaning: each is resolved against the included
    file's defaults (so `4a` is the paper's 4a wherever it is included); this file's data section then applies."""
    where = _shown(path)
    fixed: dict[str, TrainConfig] = {}
    sources: dict[str, str] = {}
    includes: list[str] = []
    for name, overrides in spec.fixed_trials.items():
        if name == "include":
            for inc in _include_list(overrides, where):
                inc_path = (path.parent / inc).resolve()
                if inc_path in stack:
                    chain = " -> ".join(_shown(p) for p in (*stack, inc_path))
                    raise SpaceError(f"{where}: fixed_trials.include: include cycle: {chain}")
                if not inc_path.is_file():
                    raise SpaceError(f"{where}: fixed_trials.include: {inc!r} not found (looked for {inc_path}; "
                                     f"include paths are relative to {path.parent})")
                included = load_space(inc_path, stack)
                includes.append(str(inc))
                for n, cfg in included.fixed.items():
                    _add_trial(fixed, sources, n, cfg.model_copy(update=data_fields), included.fixed_sources[n], where)
            continue
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
            raise SpaceError(f"{where}: fixed_trials.{name}: trial names use letters, digits, '.', '_' and '-'")
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise SpaceError(f"{where}: fixed_trials.{name}: expected a mapping of TrainConfig fields to override "
                             f"(e.g. {{lr: 5.0e-4, epochs: 30}}, or {{}} for the defaults), got {overrides!r}")
        section = f"fixed_trials.{name}"
        cfg = _train_config({**defaults.model_dump(), **_without_data_fields(overrides, where, section)},
                            where, section)
        _add_trial(fixed, sources, name, cfg, where, where)
    return fixed, sources, tuple(includes)


def _include_list(v: Any, where: str) -> list[str]:
    items = v if isinstance(v, list) else [v]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise SpaceError(f"{where}: fixed_trials.include: expected a file name or a list of file names "
                         f"(relative to this file), got {v!r}")
    return items


def _add_trial(fixed: dict, sources: dict, name: str, cfg: TrainConfig, source: str, where: str) -> None:
    if name in fixed:
        raise SpaceError(f"{where}: fixed_trials.{name}: defined twice (in {sources[name]} and {source}); "
                         f"rename one of them")
    fixed[name], sources[name] = cfg, source


# ---------------------------------------------------------------------------------------------------------------
# Readable pydantic errors
# ---------------------------------------------------------------------------------------------------------------
def format_space_errors(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(e["loc"][:-1])
            msg = f"unknown key {loc[-1]!r}" + _did_you_mean(loc[-1], allowed)
            if allowed:
                msg += f"; allowed here: {', '.join(allowed)}"
        elif e["type"] == "model_type" and len(loc) == 2 and loc[0] == "params":
            msg = f"expected a mapping such as {{loguniform: [1.0e-4, 1.0e-2]}} (got {e['input']!r})"
        else:
            msg = _value_message(e)
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def format_train_errors(err: ValidationError, where: str, section: str) -> str:
    lines = []
    for e in err.errors():
        sub = ".".join(str(p) for p in e["loc"])
        key = f"{section}.{sub}" if sub and not section.startswith("params.") else section
        if e["type"] == "extra_forbidden":
            name = str(e["loc"][-1])
            msg = f"unknown TrainConfig field {name!r}" + _did_you_mean(name, TrainConfig.model_fields)
        else:
            msg = _value_message(e)
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def _value_message(e: dict) -> str:
    """pydantic's message without its 'Value error, ' prefix, plus the offending value when it is a scalar."""
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] != "missing" and "input" in e and not isinstance(e["input"], dict):
        msg += f" (got {e['input']!r})"
    return msg


def _did_you_mean(word: str, options) -> str:
    hint = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def _fields_at(loc: tuple) -> list[str]:
    """Field names (as written in YAML) of the schema model that sits at `loc` inside a SpaceFile."""
    model: Any = SpaceFile
    pending_dict = False
    for part in loc:
        if pending_dict:  # a free-form key of dict[str, Model]
            pending_dict = False
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        f = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if f is None:
            return []
        model, pending_dict = _inner_model(f.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for a in typing.get_args(annotation):
            m, d = _inner_model(a)
            if m is not None:
                return m, d
        return None, False
    if origin is dict:
        return _inner_model(typing.get_args(annotation)[1])[0], True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False
